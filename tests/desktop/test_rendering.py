"""Replies as Markdown: prose and fenced code blocks apart, HTML and images made harmless."""

from __future__ import annotations

from PySide6.QtGui import QTextDocument

from desktop.rendering import Block, code_of, markdown_html, split_blocks


def shown_text(html: str) -> str:
    document = QTextDocument()
    document.setHtml(html)
    return document.toPlainText()


def test_prose_and_code_blocks_come_apart_in_order(qapp) -> None:
    text = "Try this:\n\n```python\nprint('hi')\n\nx = 1\n```\n\nThen run it.\n~~~\nls\n~~~"
    assert split_blocks(text) == [
        Block("text", "Try this:"),
        Block("code", "print('hi')\n\nx = 1", "python"),
        Block("text", "Then run it."),
        Block("code", "ls", ""),
    ]
    assert code_of(text) == ["print('hi')\n\nx = 1", "ls"]


def test_a_fence_still_being_written_shows_as_code(qapp) -> None:
    assert split_blocks("Here:\n```sh\nmake te") == [
        Block("text", "Here:"),
        Block("code", "make te", "sh"),
    ]


def test_a_longer_fence_holds_a_shorter_one(qapp) -> None:
    text = "````md\n```\ninner\n```\n````"
    assert split_blocks(text) == [Block("code", "```\ninner\n```", "md")]


def test_markdown_is_rendered(qapp) -> None:
    html = markdown_html("**bold**, `code` and a [link](https://example.org)\n\n- one\n- two")
    assert "font-weight:700" in html and "https://example.org" in html
    assert shown_text(html).split("\n")[0] == "bold, code and a link"
    assert "<li" in html


def test_html_in_a_reply_stays_text_and_images_become_links(qapp) -> None:
    html = markdown_html("<b>x</b> <script>alert(1)</script> ![cat](file:///etc/passwd)")
    assert "<script" not in html and "<b>" not in html and "<img" not in html
    assert shown_text(html) == "<b>x</b> <script>alert(1)</script> cat"
    assert 'href="file:///etc/passwd"' in html  # a link (open_link refuses files)


def test_the_widgets_font_applies_and_links_take_the_schemes_colour(qapp) -> None:
    html = markdown_html("[a](https://example.org)", link_colour="#93c5fd")
    assert "font-size:9pt" not in html.split("<body")[1][:40]
    assert "color:#93c5fd" in html and "#0000ff" not in html
