"""The conversation pane: message bubbles, inline memory operations, page-out dividers, input.

Widgets only: what to show comes from engine.transcript entries (history) and step events (live),
translated by the main window.
"""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import QElapsedTimer, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFont, QGuiApplication, QKeyEvent, QMouseEvent
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.panels import first_line
from desktop.rendering import Block, markdown_html, split_blocks
from desktop.theme import LIGHT, Colours, scaled_font
from engine.transcript import TranscriptEntry
from engine.types import Message, Remembered

# Longer messages show their start: laying out a 200k-character label freezes the UI for a
# second; the whole text is in recall (and searchable) anyway.
SHOWN_CHARS = 20_000
HEADER_SIZE = 0.85  # headers and memory-operation lines, relative to the chat's text
LINK_SCHEMES = ("http", "https", "mailto")  # what a link in a reply may open


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


def copy_to_clipboard(text: str) -> None:
    QGuiApplication.clipboard().setText(text)


def open_link(address: str) -> bool:
    """Opens a reply's link in the browser: web and mail addresses only (a reply is the model's
    text: it does not get to open files or run programs). Whether it was opened."""
    url = QUrl(address)
    if url.scheme().lower() not in LINK_SCHEMES:
        return False
    return QDesktopServices.openUrl(url)


class Styled:
    """An entry of the chat that draws itself in the chat's colours and text size."""

    def restyle(self, colours: Colours, font: QFont) -> None:
        raise NotImplementedError


class CodeBlock(QFrame):
    """A fenced code block of a reply: monospaced, scrolled sideways rather than wrapped, with
    the language it names and a Copy button for its code alone."""

    def __init__(self, block: Block) -> None:
        super().__init__()
        self.setObjectName("code-block")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 6)
        layout.setSpacing(2)
        top = QHBoxLayout()
        self.language = QLabel()
        self.language.setObjectName("code-language")
        self.copy_button = QToolButton()
        self.copy_button.setText("Copy")
        self.copy_button.setObjectName("copy-code")
        self.copy_button.setAccessibleName("Copy code")
        self.copy_button.setAutoRaise(True)
        self.copy_button.clicked.connect(self.copy)
        top.addWidget(self.language, 1)
        top.addWidget(self.copy_button)
        layout.addLayout(top)
        self.code = QLabel()
        self.code.setObjectName("code-text")
        self.code.setTextFormat(Qt.TextFormat.PlainText)
        self.code.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.code.setFont(QFont("monospace"))
        self.code.font().setStyleHint(QFont.StyleHint.Monospace)
        self.scroller = QScrollArea()
        self.scroller.setWidget(self.code)
        self.scroller.setWidgetResizable(True)
        self.scroller.setFrameShape(QFrame.Shape.NoFrame)
        self.scroller.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout.addWidget(self.scroller)
        self.set_block(block)

    def set_block(self, block: Block) -> None:
        self.block = block
        self.language.setText(block.language or "code")
        self.code.setText(block.text)
        self._fit_height()

    def copy(self) -> None:
        copy_to_clipboard(self.block.text)

    def restyle(self, colours: Colours, font: QFont) -> None:
        self.setStyleSheet(
            f"#code-block {{background:{colours.code_background}; border-radius:6px;}}"
        )
        mono = QFont(font)
        mono.setFamily("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.code.setFont(mono)
        self.language.setFont(scaled_font(font, 1.0, HEADER_SIZE))
        self.language.setStyleSheet(f"color:{colours.muted};")
        self._fit_height()

    def _fit_height(self) -> None:
        """As tall as its lines (the chat scrolls, not the block), plus the sideways bar."""
        bar = self.scroller.horizontalScrollBar().sizeHint().height()
        self.scroller.setFixedHeight(self.code.sizeHint().height() + bar + 2)


class MessageBody(QWidget):
    """A reply rendered: its prose as Markdown, its code blocks as CodeBlocks. Redrawn as the
    reply streams, keeping the widgets of the blocks that are still there."""

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.setObjectName("bubble-body")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self._parts: list[QWidget] = []
        self._colours = LIGHT
        self._font: QFont | None = None
        self.set_text(text)

    @property
    def parts(self) -> list[QWidget]:
        return list(self._parts)

    def code_blocks(self) -> list[CodeBlock]:
        return [part for part in self._parts if isinstance(part, CodeBlock)]

    def set_text(self, text: str) -> None:
        blocks = split_blocks(text) or [Block("text", "")]
        for index, block in enumerate(blocks):
            part = self._parts[index] if index < len(self._parts) else None
            if part is not None and _kind_of(part) == block.kind:
                self._fill(part, block)
                continue
            for old in self._parts[index:]:
                old.deleteLater()
            del self._parts[index:]
            self._parts.append(self._new_part(block))
            self._layout.addWidget(self._parts[-1])
        for old in self._parts[len(blocks) :]:
            old.deleteLater()
        del self._parts[len(blocks) :]

    def restyle(self, colours: Colours, font: QFont) -> None:
        self._colours, self._font = colours, font
        for part in self._parts:
            self._style(part)
            if isinstance(part, QLabel):
                part.setText(markdown_html(part.property("markdown") or "", colours.link))

    def _new_part(self, block: Block) -> QWidget:
        part: QWidget
        if block.kind == "code":
            part = CodeBlock(block)
        else:
            label = QLabel()
            label.setObjectName("bubble-text")
            label.setTextFormat(Qt.TextFormat.RichText)  # Markdown made safe by markdown_html
            label.setWordWrap(True)
            label.setTextInteractionFlags(
                Qt.TextInteractionFlag.TextSelectableByMouse
                | Qt.TextInteractionFlag.LinksAccessibleByMouse
            )
            label.setOpenExternalLinks(False)
            label.linkActivated.connect(open_link)
            part = label
            self._fill(part, block)
        self._style(part)
        return part

    def _fill(self, part: QWidget, block: Block) -> None:
        if isinstance(part, CodeBlock):
            if part.block != block:
                part.set_block(block)
            return
        assert isinstance(part, QLabel)
        if part.property("markdown") != block.text:
            part.setProperty("markdown", block.text)
            part.setText(markdown_html(block.text, self._colours.link))

    def _style(self, part: QWidget) -> None:
        if self._font is None:
            return
        if isinstance(part, CodeBlock):
            part.restyle(self._colours, self._font)
        else:
            part.setFont(self._font)


def _kind_of(part: QWidget) -> str:
    return "code" if isinstance(part, CodeBlock) else "text"


class MessageBubble(QFrame, Styled):
    """One message from the user or the assistant; the assistant's grows as it streams, and
    is shown rendered (Markdown, code blocks); the user's is shown as typed."""

    def __init__(self, role: str, text: str, at: dt.datetime, speaker: str) -> None:
        super().__init__()
        self.role = role
        self.setObjectName(f"bubble-{role}")
        self._failed = False
        self._colours = LIGHT
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 8)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        self.header = QLabel()
        self.header.setTextFormat(Qt.TextFormat.PlainText)  # agent names are not markup
        self.copy_button = QToolButton()
        self.copy_button.setText("Copy")
        self.copy_button.setObjectName("copy-message")
        self.copy_button.setAccessibleName("Copy message")
        self.copy_button.setToolTip("Copy this message")
        self.copy_button.setAutoRaise(True)
        self._full: str = text
        self.copy_button.clicked.connect(lambda: copy_to_clipboard(self._full))
        top.addWidget(self.header, 1)
        top.addWidget(self.copy_button)
        self._speaker, self._at = speaker, at
        self._tag = ""
        self._update_header()
        self.body: MessageBody | QLabel
        if role == "assistant":
            self.body = MessageBody(_shown(text))
        else:
            self.body = _text_label(_shown(text), "bubble-text")
        layout.addLayout(top)
        layout.addWidget(self.body)
        self._paint()

    @property
    def text(self) -> str:
        return self._full

    def append(self, piece: str) -> None:
        self.set_text(self._full + piece)

    def set_text(self, text: str) -> None:
        self._full = text
        if isinstance(self.body, MessageBody):
            self.body.set_text(_shown(text))
        else:
            assert isinstance(self.body, QLabel)
            self.body.setText(_shown(text))

    def set_time(self, at: dt.datetime) -> None:
        """The time the message was stored (shown as it was typed or first streamed, it would
        read differently after a restart)."""
        self._at = at
        self._update_header()

    def set_tag(self, tag: str) -> None:
        """A word after the time: "queued", "stopped", "not sent"."""
        self._tag = tag
        self._update_header()

    def mark_failed(self, why: str) -> None:
        self._failed = True
        self._paint()
        self.set_tag(why)

    def flash(self) -> None:
        """Marks the bubble jumped to (from Recall)."""
        self.setStyleSheet(self.styleSheet() + f"border:2px solid {self._colours.flash};")

    def restyle(self, colours: Colours, font: QFont) -> None:
        self._colours = colours
        self._paint()
        self.header.setFont(scaled_font(font, 1.0, HEADER_SIZE))
        self.header.setStyleSheet(f"color:{colours.muted};")
        if isinstance(self.body, MessageBody):
            self.body.restyle(colours, font)
        else:
            self.body.setFont(font)

    def _paint(self) -> None:
        colours = self._colours
        background = (
            colours.failed_bubble
            if self._failed
            else colours.user_bubble
            if self.role == "user"
            else colours.assistant_bubble
        )
        self.setStyleSheet(f"#bubble-{self.role} {{background:{background}; border-radius:8px;}}")

    def _update_header(self) -> None:
        tag = f" · {self._tag}" if self._tag else ""
        self.header.setText(f"{self._speaker} · {stamp(self._at)}{tag}")


class _Summary(QLabel):
    """A row's summary line: a click on it opens or closes the row, as its arrow does."""

    clicked = Signal()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt's name)
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mousePressEvent(event)


class ExpandableRow(QWidget, Styled):
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
        self.toggle.setAccessibleName("Show details")
        self.toggle.clicked.connect(self._flip)
        self.summary = _Summary(summary)
        self.summary.setObjectName("row-summary")
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        if detail:
            self.summary.setCursor(Qt.CursorShape.PointingHandCursor)
            self.summary.clicked.connect(self._flip)
        line.addWidget(self.toggle)
        line.addWidget(self.summary, 1)
        layout.addLayout(line)
        self.detail = _text_label(detail, "row-detail")
        self.detail.setVisible(False)
        layout.addWidget(self.detail)
        self.ok = ok
        self.restyle(LIGHT, QApplication.font())

    @property
    def expanded(self) -> bool:
        return self.detail.isVisibleTo(self)

    def restyle(self, colours: Colours, font: QFont) -> None:
        small = scaled_font(font, 1.0, HEADER_SIZE)
        self.summary.setFont(small)
        self.detail.setFont(small)
        self.summary.setStyleSheet(f"color:{colours.muted if self.ok else colours.error};")
        self.detail.setStyleSheet(f"color:{colours.detail}; margin-left:24px;")

    def _flip(self) -> None:
        if not self.toggle.isEnabled():
            return
        show = not self.expanded
        self.detail.setVisible(show)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if show else Qt.ArrowType.RightArrow)
        self.toggle.setAccessibleName("Hide details" if show else "Show details")


class Divider(ExpandableRow):
    """A rule across the chat: a page-out (with its summary) or an idle reflection turn."""

    def __init__(self, kind: str, summary: str, detail: str = "") -> None:
        super().__init__(kind, summary, detail)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.rule = QFrame()
        self.rule.setFrameShape(QFrame.Shape.HLine)
        self.layout().insertWidget(0, self.rule)
        self.restyle(LIGHT, QApplication.font())

    def restyle(self, colours: Colours, font: QFont) -> None:
        super().restyle(colours, font)
        self.summary.setStyleSheet(f"color:{colours.divider};")
        if hasattr(self, "rule"):  # not yet while ExpandableRow.__init__ styles the row
            self.rule.setStyleSheet(f"color:{colours.rule};")


class WorkingRow(QWidget, Styled):
    """In the reply's place while the assistant works: what it is doing ("Searching memory…"),
    and a bar: filling with the time a known job is expected to take, or moving where that is
    not known."""

    TICK_MS = 100

    def __init__(self, speaker: str, phase: str) -> None:
        super().__init__()
        self.setObjectName("working")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 2, 10, 2)
        self.label = QLabel()
        self.label.setObjectName("working-phase")
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.bar = QProgressBar()
        self.bar.setObjectName("working-bar")
        self.bar.setTextVisible(False)
        self.bar.setMaximumWidth(160)
        self.bar.setMaximumHeight(8)
        self.bar.setAccessibleName("Progress")
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addStretch(1)
        self._speaker = speaker
        self._expected_ms = 0
        self._clock = QElapsedTimer()
        self._timer = QTimer(self)
        self._timer.setInterval(self.TICK_MS)
        self._timer.timeout.connect(self._tick)
        self.set_phase(phase)

    @property
    def phase(self) -> str:
        return self._phase

    def set_phase(
        self, phase: str, expected_seconds: float = 0.0, share: float | None = None
    ) -> None:
        """Shows `phase`; with `share` (0-1), the bar shows that much done; with
        `expected_seconds`, it fills over that time (stopping short of full: an estimate is
        not a promise)."""
        self._phase = phase
        self.label.setText(f"{self._speaker} is {phase}…")
        self._expected_ms = int(expected_seconds * 1000)
        if share is not None:
            self._timer.stop()
            self.bar.setRange(0, 100)
            self.bar.setValue(round(min(1.0, max(0.0, share)) * 100))
        elif self._expected_ms > 0:
            self.bar.setRange(0, 100)
            self.bar.setValue(0)
            self._clock.start()
            self._timer.start()
        else:
            self._timer.stop()
            self.bar.setRange(0, 0)  # busy: moving, no share

    def _tick(self) -> None:
        share = self._clock.elapsed() / max(1, self._expected_ms)
        self.bar.setValue(min(95, int(share * 100)))

    def restyle(self, colours: Colours, font: QFont) -> None:
        self.label.setFont(scaled_font(font, 1.0, HEADER_SIZE))
        self.label.setStyleSheet(f"color:{colours.muted};")


class ForgetCard(QFrame, Styled):
    """Asked to forget something, the assistant shows what it keeps about it: the user ticks
    what goes (the best match ticked) and presses Forget, or keeps them all."""

    chosen = Signal(list)  # the Remembered items to forget ([] for none)

    def __init__(self, items: tuple[Remembered, ...]) -> None:
        super().__init__()
        self.setObjectName("forget-card")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        self.title = QLabel("Choose what to forget:")
        layout.addWidget(self.title)
        self.items = items
        self.boxes: list[QCheckBox] = []
        for index, item in enumerate(items):
            box = QCheckBox(item.text)
            box.setObjectName("forget-choice")
            box.setChecked(index == 0)
            box.toggled.connect(self._update)
            layout.addWidget(box)
            self.boxes.append(box)
        self.with_messages = QCheckBox("Also delete my messages they came from")
        self.with_messages.setObjectName("forget-with-messages")
        self.with_messages.setToolTip(
            "Without this, what you said stays in the conversation history (Recall), where "
            "the assistant can still find it"
        )
        layout.addWidget(self.with_messages)
        row = QHBoxLayout()
        row.addStretch()
        self.keep_button = QPushButton("Keep them")
        self.keep_button.setObjectName("forget-keep")
        self.keep_button.clicked.connect(lambda: self.chosen.emit([]))
        self.forget_button = QPushButton("Forget")
        self.forget_button.setObjectName("forget-go")
        self.forget_button.clicked.connect(self._forget)
        row.addWidget(self.keep_button)
        row.addWidget(self.forget_button)
        layout.addLayout(row)
        self.result = QLabel()
        self.result.setObjectName("forget-result")
        self.result.setVisible(False)
        layout.addWidget(self.result)
        self._update()

    def picked(self) -> list[Remembered]:
        return [item for item, box in zip(self.items, self.boxes, strict=True) if box.isChecked()]

    def done(self, text: str) -> None:
        """The choice is made: the card says what happened and takes no more clicks."""
        for widget in (*self.boxes, self.with_messages, self.keep_button, self.forget_button):
            widget.setEnabled(False)
        self.result.setText(text)
        self.result.setVisible(True)

    def _forget(self) -> None:
        picked = self.picked()
        if picked:
            self.forget_button.setEnabled(False)
            self.chosen.emit(picked)

    def _update(self) -> None:
        self.forget_button.setEnabled(bool(self.picked()))

    def restyle(self, colours: Colours, font: QFont) -> None:
        self.setStyleSheet(
            f"#forget-card {{background:{colours.assistant_bubble}; border-radius:8px;"
            f" border:1px solid {colours.error};}}"
        )
        for widget in (self.title, self.result, self.with_messages, *self.boxes):
            widget.setFont(font)


EXAMPLES = (
    "Hi! I'm Sam, I work as a nurse and I'm learning Spanish.",
    "Remember that my sister's birthday is on 12 May.",
    "What do you remember about me?",
)


class Welcome(QFrame, Styled):
    """The empty chat's first words: what Memex remembers, where it keeps it, where to see
    and change it, and examples to start from (a click puts one in the input)."""

    example_chosen = Signal(str)

    def __init__(self, file: str) -> None:
        super().__init__()
        self.setObjectName("welcome")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        self.title = QLabel("Memex remembers what you tell it")
        self.title.setObjectName("welcome-title")
        self.body = QLabel(
            "Tell it about yourself, your work and what you want to keep. It keeps the "
            "important facts in core memory (always in view), every message in recall, and "
            "notes in archival memory, and searches them when you ask.\n\n"
            "See everything it keeps about you in Memory > What Memex knows (Ctrl+M), and "
            "forget any of it there. The panels on the right show each part in full: edit or "
            "undo any line of core memory, look up any message in Recall.\n\n"
            f"Everything stays in one file on this computer: {file}"
        )
        self.body.setObjectName("welcome-text")
        self.body.setTextFormat(Qt.TextFormat.PlainText)
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.title)
        layout.addWidget(self.body)
        self.examples: list[QPushButton] = []
        for text in EXAMPLES:
            button = QPushButton(text)
            button.setObjectName("welcome-example")
            button.setAccessibleName(f"Example: {text}")
            button.clicked.connect(lambda _=False, t=text: self.example_chosen.emit(t))
            layout.addWidget(button)
            self.examples.append(button)

    def restyle(self, colours: Colours, font: QFont) -> None:
        self.setStyleSheet(
            f"#welcome {{background:{colours.assistant_bubble}; border-radius:8px;}}"
        )
        title = scaled_font(font, 1.0, 1.3)
        title.setBold(True)
        self.title.setFont(title)
        self.body.setFont(font)
        for button in self.examples:
            button.setFont(font)


class ChatView(QScrollArea):
    """The scrolling list of entries; keeps to the bottom while the user is there."""

    load_earlier = Signal()

    def __init__(self, speaker: str = "Memex") -> None:
        super().__init__()
        self.speaker = speaker
        self.setWidgetResizable(True)
        self.setObjectName("chat")
        self.setAccessibleName("Conversation")
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
        self.colours = LIGHT
        self.text_font = QFont(QApplication.font())
        self.working: WorkingRow | None = None  # while the assistant works: last in the chat
        self.welcome: Welcome | None = None  # in an empty chat
        self.verticalScrollBar().rangeChanged.connect(self._keep_bottom)
        self.verticalScrollBar().valueChanged.connect(self._track_bottom)

    # -- content ------------------------------------------------------------------------
    def clear(self) -> None:
        self.working = self.welcome = None  # taken with the rest
        while self._layout.count() > 2:  # keep the "load earlier" button and the stretch
            item = self._layout.takeAt(1)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.hide()
                widget.deleteLater()

    def entries(self) -> list[QWidget]:
        return [
            self._layout.itemAt(i).widget()
            for i in range(1, self._layout.count() - 1)
            if self._layout.itemAt(i).widget() is not None
        ]

    def add(self, widget: QWidget, at_top: bool = False, before: QWidget | None = None) -> QWidget:
        """Adds `widget` at the end (before the working row, which stays last), at the top, or
        just `before` another entry."""
        index = 1 if at_top else self._layout.count() - 1
        if not at_top and self.working is not None:
            index = self._layout.indexOf(self.working)  # the working row stays the last one
        if before is not None and self._layout.indexOf(before) >= 0:
            index = self._layout.indexOf(before)
        self._layout.insertWidget(index, widget)
        if isinstance(widget, Styled):
            widget.restyle(self.colours, self.text_font)
        return widget

    def drop_after(self, entry: QWidget) -> None:
        """Takes every entry after `entry` out of the chat (a reply about to be redone)."""
        entries = self.entries()
        for widget in entries[entries.index(entry) + 1 :]:
            if widget is not self.working:
                self._drop(widget)

    def drop_from(self, entry: QWidget) -> None:
        """Takes `entry` and every entry after it out of the chat (a message edited)."""
        self.drop_after(entry)
        self._drop(entry)

    def show_welcome(self, file: str) -> Welcome:
        self.end_welcome()
        self.welcome = Welcome(file)
        self.add(self.welcome)
        return self.welcome

    def end_welcome(self) -> None:
        if self.welcome is not None:
            self._drop(self.welcome)
            self.welcome = None

    def show_working(
        self, phase: str, expected_seconds: float = 0.0, share: float | None = None
    ) -> WorkingRow:
        """The working row, at the end of the chat, saying `phase` (WorkingRow.set_phase)."""
        if self.working is None:
            row = WorkingRow(self.speaker, phase)
            self.add(row)
            self.working = row
        self.working.set_phase(phase, expected_seconds, share)
        return self.working

    def end_working(self) -> None:
        if self.working is not None:
            self._drop(self.working)
            self.working = None

    def _drop(self, widget: QWidget) -> None:
        """Takes `widget` out of the chat now: hidden at once (its deletion waits for the event
        loop, and a window drawn before that, as in desktop.layout_shots, showed it still)."""
        self._layout.removeWidget(widget)
        widget.hide()
        widget.deleteLater()

    def set_style(self, colours: Colours, font: QFont) -> None:
        """Draw every entry, and those to come, in `colours` with `font` (the user's zoom)."""
        self.colours, self.text_font = colours, QFont(font)
        for widget in self.entries():
            if isinstance(widget, Styled):
                widget.restyle(colours, self.text_font)

    def add_entry(
        self, entry: TranscriptEntry, at_top: bool = False, before: QWidget | None = None
    ) -> QWidget:
        widget = self.add(self.widget_for(entry), at_top, before)
        widget.setProperty("message_id", entry.message_id)
        return widget

    def drop_messages(self, messages: list[Message]) -> None:
        """Takes the bubbles of the user's `messages` (deleted from recall) out of the chat:
        a bubble from the history by its id, one sent in this run by its words."""
        ids = {m.id for m in messages}
        texts = {m.content for m in messages if m.role == "user"}
        for widget in self.entries():
            if widget.property("message_id") in ids or (
                isinstance(widget, MessageBubble)
                and widget.role == "user"
                and widget.property("message_id") is None
                and widget.text in texts
            ):
                self._drop(widget)

    def show_message(self, message_id: int) -> bool:
        """Scroll to the entry of a stored message and flash it; False if it is not loaded."""
        for widget in self.entries():
            if widget.property("message_id") == message_id:
                self._stick = False
                self.ensureWidgetVisible(widget, 0, 40)
                if isinstance(widget, MessageBubble):
                    widget.flash()
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

    def bubble(
        self,
        role: str,
        text: str,
        at: dt.datetime | None = None,
        before: QWidget | None = None,
    ) -> MessageBubble:
        speaker = "You" if role == "user" else self.speaker
        widget = MessageBubble(role, text, at or dt.datetime.now(dt.UTC), speaker)
        self.add(widget, before=before)
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
        self.setAccessibleName("Message to the assistant")
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
