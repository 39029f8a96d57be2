"""The memory panels (core, archival, recall) and what they share: local times, inline status
labels, and engine jobs whose answers are dropped if their widget is gone."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from desktop.session import NotLoaded
from desktop.worker import EngineWorker, Job
from engine.errors import MemexError
from engine.memory.core import CoreMemoryError

logger = logging.getLogger(__name__)

ERROR_STYLE = "color: #c62828;"
WARNING_STYLE = "color: #b26a00;"
WAITING_FOR_MODELS = "Waiting for the models to load…"


def local_time(value: dt.datetime | str) -> str:
    """A stored time (UTC, ISO text or datetime) as the user's local wall-clock time."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:  # the engine stores UTC; a naive value is UTC too
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


def error_message(exc: BaseException) -> str:
    """What to tell the user about a failed job: the engine's own words where it wrote some."""
    if isinstance(exc, MemexError | CoreMemoryError):
        return str(exc)
    if isinstance(exc, KeyError):
        return "not found: it may have been deleted meanwhile; search again"
    logger.warning("engine job failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def count_of(count: int, noun: str, plural: str = "") -> str:
    """ "1 passage", "2 passages" (`plural` where it is not `noun` + "s")."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def first_line(text: str, width: int = 120) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


class StatusLabel(QLabel):
    """One line under a panel: progress in grey, done in the normal colour, errors in red.
    The `error` property tells tests (and style sheets) which it is."""

    def __init__(self, parent: QWidget | None = None, keep_room: bool = False) -> None:
        """`keep_room`: a line is kept for it while empty, so the widgets below do not move
        when it appears (the user would type into the wrong field)."""
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)  # engine messages quote user text verbatim
        self.setWordWrap(True)
        self.setProperty("error", False)
        self._keep_room = keep_room
        if keep_room:
            self.setMinimumHeight(self.fontMetrics().lineSpacing())

    def info(self, text: str) -> None:
        self._show(text, "", error=False)

    def busy(self, text: str) -> None:
        self._show(text, "color: palette(mid);", error=False)

    def warning(self, text: str) -> None:
        self._show(text, WARNING_STYLE, error=False)

    def error(self, text: str) -> None:
        self._show(text, ERROR_STYLE, error=True)

    def failed(self, exc: BaseException) -> None:
        """A job's failure; asked before the models loaded, a wait, not an error (the panel
        is drawn again once they have)."""
        if isinstance(exc, NotLoaded):
            self.busy(WAITING_FOR_MODELS)
        else:
            self.error(error_message(exc))

    def _show(self, text: str, style: str, error: bool) -> None:
        self.setText(text)
        self.setStyleSheet(style)
        self.setProperty("error", error)
        self.setVisible(bool(text) or self._keep_room)


def submit(
    widget: QWidget,
    worker: EngineWorker,
    job: Job,
    on_done: Callable[[Any], None],
    on_error: Callable[[BaseException], None],
) -> int:
    """worker.submit, but the callbacks are skipped once `widget` is deleted (a panel or dialog
    closed while its job ran), instead of failing on a dead C++ object."""

    def done(result: Any) -> None:
        if shiboken6.isValid(widget):
            on_done(result)

    def failed(exc: BaseException) -> None:
        if shiboken6.isValid(widget):
            on_error(exc)

    return worker.submit(job, on_done=done, on_error=failed)
