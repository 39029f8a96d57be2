"""Light and dark: the app follows the system's colour scheme (Qt's style hints) unless the user
picks one in the View menu; the chat's own colours (bubbles, dividers, muted text) come from
here, never from a colour written into a widget.

Text size: the system's font, times the user's zoom (View > Zoom, Ctrl++ / Ctrl+- / Ctrl+0).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from desktop.settings import MAX_SCALE, MIN_SCALE

SCALE_STEP = 0.1


@dataclass(frozen=True)
class Colours:
    """The chat's colours in one scheme."""

    dark: bool
    user_bubble: str
    assistant_bubble: str
    failed_bubble: str
    muted: str  # bubble headers, memory-operation lines
    detail: str  # an expanded row's detail
    error: str  # a failed memory operation
    divider: str  # page-out and reflection dividers
    rule: str
    link: str
    code_background: str
    flash: str  # the border of a message jumped to from Recall


LIGHT = Colours(
    dark=False,
    user_bubble="#dbeafe",
    assistant_bubble="#f3f4f6",
    failed_bubble="#fee2e2",
    muted="#6b7280",
    detail="#374151",
    error="#b91c1c",
    divider="#7c3aed",
    rule="#c4b5fd",
    link="#1d4ed8",
    code_background="#e5e7eb",
    flash="#f59e0b",
)
DARK = Colours(
    dark=True,
    user_bubble="#1e3a5f",
    assistant_bubble="#2b2f36",
    failed_bubble="#5b2121",
    muted="#9ca3af",
    detail="#d1d5db",
    error="#f87171",
    divider="#a78bfa",
    rule="#5b21b6",
    link="#93c5fd",
    code_background="#1f2328",
    flash="#fbbf24",
)


def system_is_dark() -> bool:
    """Whether the system asks for dark colours (Qt's style hints; light where it cannot say)."""
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


def colours_for(scheme: str) -> Colours:
    """The chat's colours for a setting of "system", "light" or "dark"."""
    if scheme == "dark" or (scheme == "system" and system_is_dark()):
        return DARK
    return LIGHT


_native_style: dict[int, str] = {}  # the app's own style, to go back to from "light"/"dark"


def apply_scheme(app: QApplication, scheme: str) -> Colours:
    """Colour the whole app for `scheme` ("system" follows the system, as it changes too) and
    return the chat's colours. A chosen scheme asks the platform for it (Qt 6.8's
    setColorScheme) and sets the Fusion palette of it as well, since not every platform theme
    can switch."""
    hints = app.styleHints()
    native = _native_style.setdefault(id(app), app.style().name())
    if scheme == "system":
        hints.unsetColorScheme()
        if app.style().name() != native:
            app.setStyle(native)
        app.setPalette(app.style().standardPalette())  # the platform's own, light or dark
        return colours_for(scheme)
    hints.setColorScheme(Qt.ColorScheme.Dark if scheme == "dark" else Qt.ColorScheme.Light)
    if app.style().name().lower() != "fusion":
        app.setStyle("Fusion")  # draws from the palette on every platform
    app.setPalette(dark_palette() if scheme == "dark" else app.style().standardPalette())
    return colours_for(scheme)


def dark_palette() -> QPalette:
    """A dark palette for the Fusion style."""
    palette = QPalette()
    role = QPalette.ColorRole
    for which, colour in (
        (role.Window, "#202124"),
        (role.WindowText, "#e8eaed"),
        (role.Base, "#17181a"),
        (role.AlternateBase, "#26282b"),
        (role.ToolTipBase, "#2b2f36"),
        (role.ToolTipText, "#e8eaed"),
        (role.PlaceholderText, "#9ca3af"),
        (role.Text, "#e8eaed"),
        (role.Button, "#2b2d31"),
        (role.ButtonText, "#e8eaed"),
        (role.BrightText, "#ffffff"),
        (role.Highlight, "#3b82f6"),
        (role.HighlightedText, "#ffffff"),
        (role.Link, DARK.link),
        (role.Mid, "#80868b"),  # also muted text (palette(mid) in style sheets)
        (role.Dark, "#111214"),
        (role.Light, "#4b4f55"),
        (role.Midlight, "#3a3d42"),
        (role.Shadow, "#000000"),
    ):
        palette.setColor(which, QColor(colour))
    disabled = QPalette.ColorGroup.Disabled
    for which in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(disabled, which, QColor("#6b7280"))
    return palette


def clamp_scale(scale: float) -> float:
    return round(min(MAX_SCALE, max(MIN_SCALE, scale)), 2)


def scaled_font(base: QFont, scale: float, relative: float = 1.0) -> QFont:
    """`base` (the system's font) at the user's zoom, times `relative` (0.85 for a header)."""
    font = QFont(base)
    size = base.pointSizeF() if base.pointSizeF() > 0 else 10.0
    font.setPointSizeF(max(6.0, size * scale * relative))
    return font
