"""The context-window viewer: the prompt as a stacked bar by section, with the warning and
page-out lines, in exact tokens (the model's own tokenizer, counted by the engine)."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from engine.types import ContextUsage

SECTIONS = (
    ("system", "System", "#64748b"),
    ("core_memory", "Core memory", "#2563eb"),
    ("summary", "Summary", "#7c3aed"),
    ("messages", "Messages", "#059669"),
    ("reply_reserve", "Reply reserve", "#f59e0b"),
    ("free", "Free", "#e5e7eb"),
)
FREE_DARK = "#3c4043"  # the free share on a dark window
PRESSURE_WORDS = {
    "ok": "room to spare",
    "warning": "filling up: the model was told to save what matters",
    "flush": "full: the oldest messages page out at the next call",
}


class StackedBar(QWidget):
    """The bar itself; a section's share of the width is its share of the window."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: ContextUsage | None = None
        self.colours = {key: colour for key, _name, colour in SECTIONS}
        self.setMinimumHeight(28)
        self.setObjectName("context-bar")

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(320, 32)

    def show_usage(self, usage: ContextUsage) -> None:
        self.usage = usage
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        width, height = self.width() - 2, self.height() - 8
        usage = self.usage
        if usage is None or usage.context_window <= 0:
            painter.fillRect(1, 4, width, height, QColor(self.colours["free"]))
            return
        x = 1.0
        for key, _name, _colour in SECTIONS:
            span = width * usage.sections.get(key, 0) / usage.context_window
            painter.fillRect(QRectF(x, 4, span, height), QColor(self.colours[key]))
            x += span
        for tokens, colour in ((usage.warn_at, "#d97706"), (usage.flush_at, "#dc2626")):
            if tokens:
                at = 1 + width * tokens / usage.context_window
                painter.setPen(QPen(QColor(colour), 2, Qt.PenStyle.DashLine))
                painter.drawLine(int(at), 0, int(at), self.height())


class ContextPanel(QScrollArea):
    """The bar, a legend with each section's tokens and share, and the pressure state. It
    scrolls in a short dock rather than squeezing its rows over each other (a headline wrapped
    to two lines made the legend's rows overlap)."""

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.bar = StackedBar()
        self.headline = QLabel("No model loaded")
        self.headline.setObjectName("context-headline")
        self.headline.setWordWrap(True)
        legend = QGridLayout()
        self.values: dict[str, QLabel] = {}
        self.swatches: dict[str, QLabel] = {}
        for row, (key, name, colour) in enumerate(SECTIONS):
            swatch = QLabel()
            swatch.setFixedSize(12, 12)
            swatch.setStyleSheet(f"background:{colour}; border:1px solid #9ca3af;")
            self.swatches[key] = swatch
            value = QLabel("–")
            value.setObjectName(f"context-{key}")
            value.setAlignment(Qt.AlignmentFlag.AlignRight)
            legend.addWidget(swatch, row, 0)
            legend.addWidget(QLabel(name), row, 1)
            legend.addWidget(value, row, 2)
            self.values[key] = value
        self.lines = QLabel()
        self.lines.setObjectName("context-lines")
        self.lines.setWordWrap(True)
        self.lines.setStyleSheet("color:#6b7280;")
        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addWidget(self.headline)
        layout.addWidget(self.bar)
        layout.addLayout(legend)
        layout.addWidget(self.lines)
        layout.addStretch(1)
        self.setWidget(inner)

    def set_dark(self, dark: bool) -> None:
        """The free share drawn to stand out from a light or a dark window."""
        free = FREE_DARK if dark else dict((k, c) for k, _n, c in SECTIONS)["free"]
        self.bar.colours["free"] = free
        self.swatches["free"].setStyleSheet(f"background:{free}; border:1px solid #9ca3af;")
        self.lines.setStyleSheet(f"color:{'#9ca3af' if dark else '#6b7280'};")
        self.bar.update()

    def show_usage(self, usage: ContextUsage) -> None:
        self.bar.show_usage(usage)
        window = max(1, usage.context_window)  # 0 only before a model is loaded
        self.headline.setText(
            f"Prompt {usage.prompt_tokens:,} of {window:,} tokens "
            f"({100 * usage.fraction:.0f}%): {PRESSURE_WORDS[usage.pressure]}"
        )
        for key, label in self.values.items():
            tokens = usage.sections.get(key, 0)
            label.setText(f"{tokens:,} tokens · {100 * tokens / window:.1f}%")
        self.lines.setText(
            f"Warning at {usage.warn_at:,} tokens (orange), page-out above {usage.flush_at:,} "
            f"(red) down to {usage.target_at:,}; a prompt may take at most "
            f"{usage.prompt_budget:,}."
        )
