"""The conversation pane: message bubbles, inline memory operations, page-out dividers, input.

Widgets only: what to show comes from engine.transcript entries (history) and step events (live),
translated by the main window.
"""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.panels import first_line
from engine.transcript import TranscriptEntry

# Longer messages show their start: laying out a 200k-character label freezes the UI for a
# second; the whole text is in recall (and searchable) anyway.
SHOWN_CHARS = 20_000
USER_STYLE = "background:#dbeafe; border-radius:8px;"
ASSISTANT_STYLE = "background:#f3f4f6; border-radius:8px;"
FAILED_STYLE = "background:#fee2e2; border-radius:8px;"


def stamp(at: dt.datetime) -> str:
    """A time as the user reads it: local time, with the day when it is not today."""
    local = at.astimezone()
    if local.date() == dt.datetime.now().astimezone().date():
        return local.strftime("%H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def _text_label(text: str, object_name: str = "") -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)  # never render the model's text as HTML
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if object_name:
        label.setObjectName(object_name)
    return label


class MessageBubble(QFrame):
    """One message from the user or the assistant; the assistant's grows as it streams."""

    def __init__(self, role: str, text: str, at: dt.datetime, speaker: str) -> None:
        super().__init__()
        self.role = role
        self.setObjectName(f"bubble-{role}")
        self.setStyleSheet(
            f"#bubble-{role} {{{USER_STYLE if role == 'user' else ASSISTANT_STYLE}}}"
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 8)
        self.header = QLabel()
        self.header.setTextFormat(Qt.TextFormat.PlainText)  # agent names are not markup
        self.header.setStyleSheet("color:#6b7280; font-size:11px;")
        self._speaker, self._at = speaker, at
        self._tag = ""
        self._update_header()
        self._full = text
        self.body = _text_label(_shown(text), "bubble-text")
        layout.addWidget(self.header)
        layout.addWidget(self.body)

    @property
    def text(self) -> str:
        return self._full

    def append(self, piece: str) -> None:
        self.set_text(self._full + piece)

    def set_text(self, text: str) -> None:
        self._full = text
        self.body.setText(_shown(text))

    def set_tag(self, tag: str) -> None:
        """A word after the time: "queued", "stopped", "not sent"."""
        self._tag = tag
        self._update_header()

    def mark_failed(self, why: str) -> None:
        self.setStyleSheet(f"#bubble-{self.role} {{{FAILED_STYLE}}}")
        self.set_tag(why)

    def _update_header(self) -> None:
        tag = f" · {self._tag}" if self._tag else ""
        self.header.setText(f"{self._speaker} · {stamp(self._at)}{tag}")


class ExpandableRow(QWidget):
    """A one-line summary with a detail shown on click: memory operations and page-outs."""

    def __init__(self, kind: str, summary: str, detail: str, ok: bool = True) -> None:
        super().__init__()
        self.kind = kind
        self.setObjectName(f"row-{kind}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        line = QHBoxLayout()
        self.toggle = QToolButton()
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.setEnabled(bool(detail))
        self.toggle.clicked.connect(self._flip)
        self.summary = _text_label(summary, "row-summary")
        colour = "#6b7280" if ok else "#b91c1c"
        self.summary.setStyleSheet(f"color:{colour}; font-size:12px;")
        line.addWidget(self.toggle)
        line.addWidget(self.summary, 1)
        layout.addLayout(line)
        self.detail = _text_label(detail, "row-detail")
        self.detail.setStyleSheet("color:#374151; font-size:12px; margin-left:24px;")
        self.detail.setVisible(False)
        layout.addWidget(self.detail)
        self.ok = ok

    @property
    def expanded(self) -> bool:
        return self.detail.isVisibleTo(self)

    def _flip(self) -> None:
        show = not self.expanded
        self.detail.setVisible(show)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if show else Qt.ArrowType.RightArrow)


class Divider(ExpandableRow):
    """A rule across the chat: a page-out (with its summary) or an idle reflection turn."""

    def __init__(self, kind: str, summary: str, detail: str = "") -> None:
        super().__init__(kind, summary, detail)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.summary.setStyleSheet("color:#7c3aed; font-size:12px;")
        rule = QFrame()
        rule.setFrameShape(QFrame.Shape.HLine)
        rule.setStyleSheet("color:#c4b5fd;")
        self.layout().insertWidget(0, rule)


class ChatView(QScrollArea):
    """The scrolling list of entries; keeps to the bottom while the user is there."""

    load_earlier = Signal()

    def __init__(self, speaker: str = "Memex") -> None:
        super().__init__()
        self.speaker = speaker
        self.setWidgetResizable(True)
        self.setObjectName("chat")
        inner = QWidget()
        self._layout = QVBoxLayout(inner)
        self._layout.setSpacing(6)
        self.earlier = QPushButton("Load earlier messages")
        self.earlier.setObjectName("load-earlier")
        self.earlier.clicked.connect(self.load_earlier.emit)
        self.earlier.setVisible(False)
        self._layout.addWidget(self.earlier)
        self._layout.addStretch(1)
        self.setWidget(inner)
        self._stick = True
        self.verticalScrollBar().rangeChanged.connect(self._keep_bottom)
        self.verticalScrollBar().valueChanged.connect(self._track_bottom)

    # -- content ------------------------------------------------------------------------
    def clear(self) -> None:
        while self._layout.count() > 2:  # keep the "load earlier" button and the stretch
            item = self._layout.takeAt(1)
            if item.widget() is not None:
                item.widget().deleteLater()

    def entries(self) -> list[QWidget]:
        return [
            self._layout.itemAt(i).widget()
            for i in range(1, self._layout.count() - 1)
            if self._layout.itemAt(i).widget() is not None
        ]

    def add(self, widget: QWidget, at_top: bool = False) -> QWidget:
        index = 1 if at_top else self._layout.count() - 1
        self._layout.insertWidget(index, widget)
        return widget

    def add_entry(self, entry: TranscriptEntry, at_top: bool = False) -> QWidget:
        widget = self.add(self.widget_for(entry), at_top)
        widget.setProperty("message_id", entry.message_id)
        return widget

    def show_message(self, message_id: int) -> bool:
        """Scroll to the entry of a stored message and flash it; False if it is not loaded."""
        for widget in self.entries():
            if widget.property("message_id") == message_id:
                self._stick = False
                self.ensureWidgetVisible(widget, 0, 40)
                widget.setStyleSheet(widget.styleSheet() + "border:2px solid #f59e0b;")
                return True
        return False

    def widget_for(self, entry: TranscriptEntry) -> QWidget:
        if entry.kind in ("user", "assistant"):
            speaker = "You" if entry.kind == "user" else self.speaker
            return MessageBubble(entry.kind, entry.text, entry.created_at, speaker)
        if entry.kind == "pageout":
            return Divider("pageout", entry.text, entry.detail)
        if entry.kind == "heartbeat":
            return Divider("heartbeat", f"{self.speaker} reflects (no user message)", entry.text)
        if entry.kind == "note":
            return ExpandableRow("note", first_line(entry.text), entry.text)
        return ExpandableRow("operation", entry.text, entry.detail, entry.ok)

    def bubble(self, role: str, text: str, at: dt.datetime | None = None) -> MessageBubble:
        speaker = "You" if role == "user" else self.speaker
        widget = MessageBubble(role, text, at or dt.datetime.now(dt.UTC), speaker)
        self.add(widget)
        return widget

    def scroll_to_end(self) -> None:
        self._stick = True
        QTimer.singleShot(0, lambda: self._keep_bottom(0, self.verticalScrollBar().maximum()))

    # -- scrolling ----------------------------------------------------------------------
    def _keep_bottom(self, _min: int, maximum: int) -> None:
        if self._stick:
            self.verticalScrollBar().setValue(maximum)

    def _track_bottom(self, value: int) -> None:
        self._stick = value >= self.verticalScrollBar().maximum() - 4


def _shown(text: str) -> str:
    if len(text) <= SHOWN_CHARS:
        return text
    hidden = len(text) - SHOWN_CHARS
    return f"{text[:SHOWN_CHARS]}\n… {hidden:,} more characters (all kept in memory)"


class InputBox(QPlainTextEdit):
    """Enter sends, Shift+Enter is a new line; Up and Down walk through what was sent before
    (from the first and last line, so moving inside a long draft still works)."""

    submitted = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("input")
        self.setPlaceholderText("Message Memex… (Enter sends, Shift+Enter new line, ↑ history)")
        self.setMaximumHeight(110)
        self.history: list[str] = []
        self._index = 0  # == len(history): the draft
        self._draft = ""

    def remember(self, text: str) -> None:
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._index = len(self.history)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        key, mods = event.key(), event.modifiers()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            mods & Qt.KeyboardModifier.ShiftModifier
        ):
            self._send()
            return
        cursor = self.textCursor()
        if key == Qt.Key.Key_Up and cursor.blockNumber() == 0 and self.history:
            self._walk(-1)
            return
        last_line = cursor.blockNumber() == self.blockCount() - 1
        if key == Qt.Key.Key_Down and last_line and self._index < len(self.history):
            self._walk(+1)
            return
        super().keyPressEvent(event)

    def _send(self) -> None:
        text = self.toPlainText()
        if not text.strip():
            return
        self.remember(text)
        self._draft = ""
        self.clear()
        self.submitted.emit(text)

    def _walk(self, direction: int) -> None:
        if self._index == len(self.history):
            self._draft = self.toPlainText()
        self._index = max(0, min(len(self.history), self._index + direction))
        text = self._draft if self._index == len(self.history) else self.history[self._index]
        self.setPlainText(text)
        self.moveCursor(self.textCursor().MoveOperation.End)
