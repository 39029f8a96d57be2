"""Start the desktop app: `python -m desktop` (what `make run` does)."""

from __future__ import annotations

import argparse
import dataclasses
import locale
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from desktop.settings import Settings, load_settings, save_settings_later

if TYPE_CHECKING:
    from desktop.main_window import MainWindow

logger = logging.getLogger("memex")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memex", description="Memex desktop app")
    parser.add_argument("--db", metavar="PATH", help="memory file to open, for this run only")
    parser.add_argument(
        "--model",
        metavar="PATH|URL",
        help='chat model for this run only: a GGUF file, "chat" / "fast" / "small" (the shipped models), '
        "or the URL of an OpenAI-compatible server (its options: Settings)",
    )
    parser.add_argument(
        "--selftest",
        action="store_true",
        help="check this copy works (no display needed): load the models, run one step, search; "
        "print PASS or FAIL",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    parser.add_argument("--version", action="version", version=f"memex {_version()}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    saved = load_settings()
    # --db relative to where the command ran, as a user typing it means
    db = str(Path(args.db).expanduser().absolute()) if args.db else None
    overrides = {"db_path": db, "chat_model": args.model}
    overrides = {k: v for k, v in overrides.items() if v}
    settings = dataclasses.replace(saved, **overrides)
    if args.selftest:
        from desktop.selftest import run_selftest

        # What this copy ships (the default models, unless --model), not what the user saved:
        # a since-moved model file of theirs is not a broken install. A temp file unless --db.
        return run_selftest(dataclasses.replace(Settings(), **overrides), db_path=db)
    if not _display_available():
        print(
            "memex: no display found (DISPLAY / WAYLAND_DISPLAY are not set). Run it on a "
            "desktop; `memex --selftest` checks this copy works without one.",
            file=sys.stderr,
        )
        return 2
    return _run_window(settings, _saver(saved, overrides))


def _saver(saved: Settings, overrides: dict[str, str]) -> Callable[[Settings], object]:
    """Save settings changed in the window, but keep what --db / --model set for this run out
    of the saved file (unless the user changed that setting in the window)."""

    def save(new: Settings) -> object:
        kept = {k: getattr(saved, k) for k, v in overrides.items() if getattr(new, k) == v}
        return save_settings_later(dataclasses.replace(new, **kept))

    return save


def _run_window(settings: Settings, save: Callable[[Settings], object]) -> int:
    _use_utf8_locale()
    from PySide6.QtWidgets import QApplication  # not needed by --selftest / --help

    from desktop.main_window import MainWindow

    start = time.perf_counter()
    app = QApplication(sys.argv[:1])
    app.setApplicationName("Memex")
    window = MainWindow(settings, save=save)

    def log_ready() -> None:  # once: the start-up time (later loads emit ready too)
        window.ready.disconnect(log_ready)
        logger.info("ready in %.1fs: %s", time.perf_counter() - start, window.status.text())

    window.ready.connect(log_ready)
    window.show()
    _close_on_signals(window)
    code = app.exec()
    logger.info("closed")
    return code


def _close_on_signals(window: MainWindow) -> None:
    """Ctrl+C or a kill in the terminal closes the window the normal way (the running step
    stops, the file closes). Python only sees a signal when it runs, hence the idle timer."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    def close(*_: object) -> None:
        window.ask_before_discarding = False  # a logout or a kill does not wait for an answer
        window.close()
        QApplication.quit()  # ends any dialog's own event loop too (an error box, a question)

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, close)
    wake = QTimer(window)
    wake.timeout.connect(lambda: None)
    wake.start(250)


def _use_utf8_locale() -> None:
    """PEP 538 for the built app. `python` turns a bare "C" locale into C.UTF-8 as it starts; a
    PyInstaller binary embeds Python and skips that, and Qt (which needs UTF-8) then does the
    same with a warning on stderr. A launcher or a service may start Memex with no locale set."""
    if (
        sys.platform.startswith("linux")
        and not os.environ.get("LC_ALL")
        and locale.setlocale(locale.LC_CTYPE) in ("C", "POSIX")
    ):
        os.environ["LC_CTYPE"] = "C.UTF-8"


def _display_available() -> bool:
    """Qt on Linux aborts the process without a display; say so plainly instead."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _version() -> str:
    from engine import __version__

    return __version__
