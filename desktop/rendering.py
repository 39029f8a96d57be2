"""A reply as the user reads it: Markdown rendered by Qt's own parser (QTextDocument.setMarkdown,
md4c), with fenced code blocks split out so each can be shown in a monospaced box with its own
Copy button. No Qt widgets here: the chat view draws what this returns.

The model's text is never trusted as markup: raw HTML in it is shown as text (MarkdownNoHTML),
and images are turned into links, so a reply cannot make the app load a file or an address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PySide6.QtGui import QTextDocument

# A fence opens with three or more backticks or tildes, up to three spaces in, and an optional
# info string ("```python"); it closes with the same character, at least as many times.
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`\n]*$")
# ![alt](address): an image; shown as a link to it instead
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(([^)\n]*)\)")
# toHtml() pins the document's default font on <body>; without it the label's font (the
# user's zoom) applies
_BODY_STYLE = re.compile(r'<body style="[^"]*">')
_QT_LINK_COLOUR = "color:#0000ff;"
MARKDOWN_FEATURES = (
    QTextDocument.MarkdownFeature.MarkdownDialectGitHub
    | QTextDocument.MarkdownFeature.MarkdownNoHTML
)


@dataclass(frozen=True)
class Block:
    """A piece of a reply: prose ("text", Markdown) or a fenced code block ("code", its lines
    as written; `language` from the fence's info string, "" for none)."""

    kind: str
    text: str
    language: str = ""


def split_blocks(text: str) -> list[Block]:
    """`text` as prose and fenced code blocks, in order. A fence not closed yet (a reply still
    streaming) runs to the end, so its code shows as code while it is written."""
    blocks: list[Block] = []
    prose: list[str] = []
    code: list[str] = []
    fence = ""
    language = ""
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if not fence and match:
            _flush_prose(prose, blocks)
            fence, language, code = match.group(1), match.group(2), []
        elif fence and match and _closes(match, fence):
            blocks.append(Block("code", "\n".join(code), language))
            fence = ""
        elif fence:
            code.append(line)
        else:
            prose.append(line)
    if fence:
        blocks.append(Block("code", "\n".join(code), language))
    _flush_prose(prose, blocks)
    return blocks


def _closes(match: re.Match[str], fence: str) -> bool:
    """Whether a fence line closes the block `fence` opened: same character, as long or
    longer, and no info string."""
    marker = match.group(1)
    return marker[0] == fence[0] and len(marker) >= len(fence) and not match.group(2)


def _flush_prose(lines: list[str], blocks: list[Block]) -> None:
    text = "\n".join(lines).strip("\n")
    if text.strip():
        blocks.append(Block("text", text))
    lines.clear()


def markdown_html(text: str, link_colour: str = "") -> str:
    """The HTML Qt renders for Markdown `text` (raw HTML in it stays text; images become
    links), in the font of the widget showing it; links in `link_colour` where given."""
    document = QTextDocument()
    document.setMarkdown(_IMAGE.sub(r"[\1](\2)", text), MARKDOWN_FEATURES)
    html = _BODY_STYLE.sub("<body>", document.toHtml(), count=1)
    return html.replace(_QT_LINK_COLOUR, f"color:{link_colour};") if link_colour else html


def code_of(text: str) -> list[str]:
    """The code of each fenced block of `text`, in order (what each block's Copy copies)."""
    return [block.text for block in split_blocks(text) if block.kind == "code"]
