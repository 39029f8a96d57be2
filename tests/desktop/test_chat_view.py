"""The chat as drawn: rendered replies with copy buttons, the working row, colours and text
size, rows that open from their summary."""

from __future__ import annotations

import datetime as dt
import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QLabel

from desktop.chat_view import (
    ChatView,
    CodeBlock,
    Divider,
    MessageBody,
    MessageBubble,
    WorkingRow,
    open_link,
)
from desktop.theme import DARK, LIGHT, scaled_font

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def test_a_reply_renders_markdown_and_each_code_block_copies_alone(qtbot) -> None:
    text = "Use **pathlib**:\n\n```python\nfrom pathlib import Path\n```\n\nDone."
    bubble = MessageBubble("assistant", text, NOW, "Memex")
    qtbot.addWidget(bubble)
    assert isinstance(bubble.body, MessageBody)
    prose, code, after = bubble.body.parts
    assert isinstance(prose, QLabel) and isinstance(after, QLabel)
    assert "font-weight:700" in prose.text() and "pathlib" in prose.text()
    assert isinstance(code, CodeBlock) and code.language.text() == "python"
    assert code.code.text() == "from pathlib import Path"
    qtbot.mouseClick(code.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "from pathlib import Path"
    qtbot.mouseClick(bubble.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == text
    assert "Done." in after.text()


def test_the_users_message_is_shown_as_typed(qtbot) -> None:
    bubble = MessageBubble("user", "**not bold** <i>x</i>", NOW, "You")
    qtbot.addWidget(bubble)
    assert isinstance(bubble.body, QLabel)
    assert bubble.body.textFormat() == Qt.TextFormat.PlainText
    assert bubble.body.text() == "**not bold** <i>x</i>"


def test_a_streaming_reply_keeps_its_widgets_as_it_grows(qtbot) -> None:
    bubble = MessageBubble("assistant", "", NOW, "Memex")
    qtbot.addWidget(bubble)
    for piece in ("Run:\n", "```sh\n", "make ", "test"):
        bubble.append(piece)
    assert isinstance(bubble.body, MessageBody)
    prose, code = bubble.body.parts
    assert isinstance(code, CodeBlock) and code.code.text() == "make test"
    bubble.append("\n```\nThat is all.")
    again = bubble.body.parts
    assert again[0] is prose and again[1] is code and len(again) == 3


def test_the_working_row_stays_last_until_it_ends(qtbot) -> None:
    chat = ChatView()
    qtbot.addWidget(chat)
    started = time.perf_counter()
    row = chat.show_working("searching memory")
    assert time.perf_counter() - started < 0.1
    assert isinstance(row, WorkingRow) and row.label.text() == "Memex is searching memory…"
    assert row.bar.maximum() == 0  # busy: no share known
    bubble = chat.bubble("assistant", "hello")
    assert chat.entries()[-1] is row and chat.entries()[-2] is bubble
    chat.show_working("reading the conversation", expected_seconds=0.3)
    assert chat.working is row and row.bar.maximum() == 100
    qtbot.waitUntil(lambda: row.bar.value() >= 50, timeout=2000)
    qtbot.wait(400)
    assert row.bar.value() == 95  # an estimate is not a promise: never full
    chat.end_working()
    assert chat.working is None and row not in chat.entries()


def test_colours_and_text_size_apply_to_entries_now_and_to_come(qtbot) -> None:
    chat = ChatView()
    qtbot.addWidget(chat)
    old = chat.bubble("assistant", "before")
    large = scaled_font(chat.text_font, 1.5)
    chat.set_style(DARK, large)
    new = chat.bubble("user", "after")
    assert DARK.assistant_bubble in old.styleSheet() and DARK.user_bubble in new.styleSheet()
    assert LIGHT.assistant_bubble not in old.styleSheet()
    assert new.body.font().pointSizeF() == large.pointSizeF()
    assert isinstance(old.body, MessageBody)
    assert old.body.parts[0].font().pointSizeF() == large.pointSizeF()
    assert old.header.font().pointSizeF() < large.pointSizeF()  # headers stay smaller


def test_a_row_opens_from_its_summary_too(qtbot) -> None:
    divider = Divider("pageout", "Messages 1-4 paged out", "the summary")
    qtbot.addWidget(divider)
    divider.show()
    qtbot.mouseClick(divider.summary, Qt.MouseButton.LeftButton)
    assert divider.expanded
    qtbot.mouseClick(divider.summary, Qt.MouseButton.LeftButton)
    assert not divider.expanded


def test_links_in_replies_open_only_web_and_mail_addresses(qtbot) -> None:
    assert not open_link("file:///etc/passwd")
    assert not open_link("javascript:alert(1)")
    assert not open_link("/usr/bin/xterm")
