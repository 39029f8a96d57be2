"""Start the desktop app: `python -m desktop` (what `make run` does)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from desktop.main_window import MainWindow
from desktop.settings import load_settings, save_settings_later


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memex", description="Memex desktop app")
    parser.add_argument("--db", help="memory file to open (default: the saved setting)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not _display_available():
        print(
            "memex: no display found (DISPLAY / WAYLAND_DISPLAY are not set). Run it on a "
            "desktop, use `make chat` for the terminal chat, or set QT_QPA_PLATFORM=offscreen.",
            file=sys.stderr,
        )
        return 2
    app = QApplication(sys.argv[:1])
    app.setApplicationName("Memex")
    saved = load_settings()
    settings, save = saved, save_settings_later
    if args.db:  # for this run only: the saved memory file stays the default
        settings = dataclasses.replace(saved, db_path=args.db)

        def save(new):  # noqa: ANN001, ANN202
            kept = saved.db_path if new.db_path == args.db else new.db_path
            return save_settings_later(dataclasses.replace(new, db_path=kept))

    window = MainWindow(settings, save=save)
    window.show()
    _close_on_signals(window)
    return app.exec()


def _close_on_signals(window: MainWindow) -> None:
    """Ctrl+C or a kill in the terminal closes the window the normal way (the running step
    stops, the file closes). Python only sees a signal when it runs, hence the idle timer."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: window.close())
    wake = QTimer(window)
    wake.timeout.connect(lambda: None)
    wake.start(250)


def _display_available() -> bool:
    """Qt on Linux aborts the process without a display; say so plainly instead."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
