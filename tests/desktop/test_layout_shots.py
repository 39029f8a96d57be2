"""The layout pictures: every window, at both sizes, in both schemes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QImage, QPalette
from PySide6.QtWidgets import QApplication

from desktop import layout_shots


def test_each_window_is_drawn_at_each_size_light_and_dark(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEMEX_CONFIG_DIR", str(tmp_path / "config"))  # main() sets its own
    assert layout_shots.main(["--out", str(tmp_path / "shots")]) == 0
    for window in ("main", "settings", "memory"):
        for scheme in ("light", "dark"):
            for width, height in layout_shots.SIZES:
                image = QImage(str(tmp_path / "shots" / f"{window}-{scheme}-{width}x{height}.png"))
                assert not image.isNull()
                if window == "main":
                    assert (image.width(), image.height()) == (width, height)
                corner = image.pixelColor(image.width() - 3, image.height() - 3).lightness()
                assert corner < 90 if scheme == "dark" else corner > 160
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    window_colour = app.palette().color(QPalette.ColorRole.Window)
    assert window_colour.lightness() > 150  # the app's colours as they were
