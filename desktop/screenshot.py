"""Render the main window to a PNG after a short real conversation with the default model.

    python -m desktop.screenshot --out docs/screenshot.png

Two sessions on one memory file, as a user has them: in the first the user says who they
are; the window closes, a new one opens on the same file (a new session: the first one's
messages are history now), and the user asks what the assistant remembers. The picture is the
second window.

Runs offscreen unless a display is set (Xvfb or a desktop); uses a temporary memory file and
settings folder, so the user's own are never touched. It takes two or three minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from desktop.main_window import MainWindow

SESSIONS = (
    ("Hi! I'm Dana. I live in Oslo and I keep bees.",),
    ("Hello again! Where do I live, and what do I keep?",),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshot.png")
    parser.add_argument("--model", default="chat", help='"chat", "fast", "small" or a GGUF path')
    args = parser.parse_args(argv)
    scratch = scratch_folder("memex-shot-")

    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    from desktop.chat_view import ExpandableRow
    from desktop.main_window import MainWindow
    from desktop.settings import Settings

    app = QApplication(sys.argv[:1])
    settings = Settings(chat_model=args.model, db_path=str(scratch / "memex.db"), agent="Memex")

    def wait(done: Callable[[], bool]) -> None:
        wait_until(app, done, timeout=600.0)

    window: MainWindow | None = None
    for number, session in enumerate(SESSIONS):
        if window is not None:
            window.close()  # the session ends; the next window starts a new one
        window = opened = MainWindow(settings)
        opened.resize(1280, 800)
        opened.show()
        wait(partial(settled, opened))
        if not opened.loaded:
            print(opened.error_box.text() if opened.error_box else "not loaded", file=sys.stderr)
            return 1
        for text in session:
            opened.send(text)
            wait(partial(idle, opened))
        print(f"session {number + 1}: done", file=sys.stderr)
    assert window is not None
    for row in window.chat.entries():
        if isinstance(row, ExpandableRow) and row.kind == "operation":
            row.toggle.click()  # show one operation expanded
            break
    window.chat.scroll_to_end()
    for _ in range(20):
        QCoreApplication.processEvents()
        time.sleep(0.02)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(out)):
        print(f"could not write {out}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    window.close()
    return 0


def settled(window: MainWindow) -> bool:
    """The window has loaded its models, or says why it could not."""
    return window.loaded or window.error_box is not None


def idle(window: MainWindow) -> bool:
    """The window's step and every engine job are done."""
    return not window.stepping and not window.worker.busy


def scratch_folder(prefix: str) -> Path:
    """A temporary folder for a picture's memory file and settings (the user's own are never
    touched); offscreen unless a display is set (Xvfb or a desktop)."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["MEMEX_CONFIG_DIR"] = str(scratch / "config")
    return scratch


def wait_until(app: object, done: Callable[[], bool], timeout: float = 120.0) -> None:
    """Runs `app`'s events until `done()`; TimeoutError after `timeout` seconds."""
    from PySide6.QtCore import QCoreApplication

    assert isinstance(app, QCoreApplication)
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(0.01)


if __name__ == "__main__":
    sys.exit(main())
