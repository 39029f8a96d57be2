"""The engine (and the desktop's session and settings) never import Qt: the GUI is one client of
the engine, and the terminal chat and scripts run without a display."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_without_qt():
    code = (
        "import sys, pkgutil, importlib, engine\n"
        "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
        "    m.name.endswith('__main__') or importlib.import_module(m.name)\n"
        "import desktop.session, desktop.settings, desktop.screenshot\n"
        "qt = sorted(m for m in sys.modules if m.startswith(('PySide6', 'shiboken6')))\n"
        "assert not qt, qt\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
