"""Helpers for window tests: find chat entries, send and wait, run a job on the engine thread."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from desktop.chat_view import ExpandableRow, MessageBubble
from desktop.main_window import MainWindow
from desktop.settings import Settings
from desktop.settings_dialog import SettingsDialog
from desktop.worker import EngineWorker

TIMEOUT = 20_000  # ms; scripted steps take well under a second


def bubbles(window: MainWindow, role: str) -> list[MessageBubble]:
    return [w for w in window.chat.entries() if isinstance(w, MessageBubble) and w.role == role]


def rows(window: MainWindow, kind: str) -> list[ExpandableRow]:
    return [w for w in window.chat.entries() if isinstance(w, ExpandableRow) and w.kind == kind]


def idle(window: MainWindow) -> bool:
    return not window.stepping and not window.worker.busy and window.loaded


def send_and_wait(qtbot, window: MainWindow, text: str) -> None:  # noqa: ANN001
    """Type `text`, press Enter, wait until the step (and every job) is done."""
    window.input.setPlainText(text)
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: idle(window), timeout=TIMEOUT)


def run(qtbot, worker: EngineWorker, job, timeout: int = TIMEOUT) -> Any:  # noqa: ANN001
    """Run `job(session)` on the engine thread (as the window and panels do); its result."""
    answer: dict[str, Any] = {}
    worker.submit(
        job,
        on_done=lambda r: answer.setdefault("result", r),
        on_error=lambda e: answer.setdefault("error", e),
    )
    qtbot.waitUntil(lambda: bool(answer), timeout=timeout)
    if "error" in answer:
        raise answer["error"]
    return answer["result"]


def open_dialog(qtbot, worker: EngineWorker, settings: Settings) -> SettingsDialog:  # noqa: ANN001
    """The Settings dialog on `settings`, shown."""
    dlg = SettingsDialog(worker, settings)
    qtbot.addWidget(dlg)
    dlg.show()
    return dlg


def press_ok(qtbot, dlg: SettingsDialog) -> None:  # noqa: ANN001
    ok = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
