"""Render the windows at the sizes and in the colours people use, to look at their layout:

    python -m desktop.layout_shots --out docs/shots      (xvfb-run -a python -m ... for a display)

The main window (after a short conversation with a reply in Markdown and code), the Settings
dialog and the Memory view, at 1280x800 and 1920x1080, light and dark: main-light-1280x800.png
and so on. The
conversation is scripted (engine.llm.scripted: the same parsing, tools and memory as the real
model, in a second instead of minutes), so the pictures show the layout, not a model's words;
`python -m desktop.screenshot` shows a real conversation. A temporary memory file and settings
folder are used: the user's own are never touched.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from desktop.screenshot import idle, scratch_folder, settled, wait_until

if TYPE_CHECKING:
    from desktop.memory_view import MemoryView
    from desktop.settings_dialog import SettingsDialog

SIZES = ((1280, 800), (1920, 1080))
SCHEMES = ("light", "dark")
CONVERSATION = (
    "Hi! I'm Dana. I live in Oslo and I keep bees.",
    "How do I read a file in Python?",
)
REPLY = (
    "Here is how to read a file with `pathlib`, Dana:\n\n"
    "```python\nfrom pathlib import Path\n\n"
    "text = Path('hives.txt').read_text(encoding='utf-8')\n"
    "print(text.splitlines()[0])\n```\n\n"
    "- It closes the file for you.\n- It reads *text*, not bytes.\n\n"
    "See [the pathlib docs](https://docs.python.org/3/library/pathlib.html)."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/shots", help="folder for the PNG files")
    args = parser.parse_args(argv)
    scratch = scratch_folder("memex-layout-")

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.mkdir(exist_ok=True)
    try:
        written = [path for scheme in SCHEMES for path in _shots(app, scratch, scheme, out)]
    finally:
        from desktop.theme import apply_scheme

        apply_scheme(app, "system")  # as it was
    for path in written:
        print(f"wrote {path}")
    return 0


def _shots(app: object, scratch: Path, scheme: str, out: Path) -> list[Path]:
    from PySide6.QtWidgets import QApplication

    from desktop.main_window import MainWindow
    from desktop.session import EngineSession, embedder_for
    from desktop.settings import Settings
    from desktop.settings_dialog import SettingsDialog
    from engine.llm.scripted import ScriptedClient, call

    assert isinstance(app, QApplication)
    settings = Settings(db_path=str(scratch / f"{scheme}.db"), scheme=scheme, agent="Memex")
    client = ScriptedClient(n_ctx=settings.n_ctx)
    client.enqueue(
        [
            call("core_memory_append", True, section="human", content="Name: Dana. Oslo; bees."),
            call("graph_insert", True, subject="Dana", relation="lives_in", object="Oslo"),
            call("archival_memory_insert", True, content="Dana keeps two hives on her roof."),
            call("send_message", message="Nice to meet you, Dana! Bees in Oslo: lovely."),
            call("send_message", message=REPLY),
        ]
    )
    embedder = embedder_for(settings)

    def session(s: Settings) -> EngineSession:
        return EngineSession(
            s, client_factory=lambda _: client, embedder_factory=lambda _: embedder
        )

    window = MainWindow(settings, session)
    window.show()
    wait_until(app, partial(settled, window))
    for text in CONVERSATION:
        window.send(text)
        wait_until(app, partial(idle, window))
    written = []
    for width, height in SIZES:
        window.resize(width, height)
        _settle(app)
        written.append(_save(window.grab(), out / f"main-{scheme}-{width}x{height}.png"))
        dialog = SettingsDialog(window.worker, window.settings, window)
        dialog.show()
        wait_until(app, partial(_checked, dialog))
        _settle(app)
        written.append(_save(dialog.grab(), out / f"settings-{scheme}-{width}x{height}.png"))
        dialog.close()
        view = window.open_memory_view()
        assert view is not None
        view.resize(min(900, width - 200), min(640, height - 160))
        wait_until(app, partial(_listed, view))
        _settle(app)
        written.append(_save(view.grab(), out / f"memory-{scheme}-{width}x{height}.png"))
        view.close()
    window.close()
    return written


def _checked(dialog: SettingsDialog) -> bool:
    return not dialog.chat.info.text().startswith("Reading")


def _listed(view: MemoryView) -> bool:
    return bool(view._items)


def _settle(app: object) -> None:
    from PySide6.QtWidgets import QApplication

    assert isinstance(app, QApplication)
    for _ in range(30):
        app.processEvents()
        time.sleep(0.01)


def _save(picture: object, path: Path) -> Path:
    from PySide6.QtGui import QPixmap

    assert isinstance(picture, QPixmap)
    if not picture.save(str(path)):
        raise OSError(f"could not write {path}")
    return path


if __name__ == "__main__":
    sys.exit(main())
