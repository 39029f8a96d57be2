"""Start the desktop app: `python -m desktop` (what `make run` does)."""

from __future__ import annotations

import argparse
import logging
import sys

from PySide6.QtWidgets import QApplication

from desktop.main_window import MainWindow
from desktop.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memex", description="Memex desktop app")
    parser.add_argument("--db", help="memory file to open (default: the saved setting)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    app = QApplication(sys.argv[:1])
    app.setApplicationName("Memex")
    settings = load_settings()
    if args.db:
        import dataclasses

        settings = dataclasses.replace(settings, db_path=args.db)
    window = MainWindow(settings)
    window.show()
    return app.exec()
