"""Parse one model reply (a JSON object, see engine.llm.grammar) into a ToolCall.

Errors are `ReplyParseError` with a message written for the model: it says what was wrong and
what a correct reply looks like, so the agent loop can hand it back verbatim.
"""

from __future__ import annotations

import json
import re
from typing import Any

from engine.types import ToolCall

__all__ = ["EXPECTED_FORMAT", "MessageStream", "ReplyParseError", "parse_reply"]

EXPECTED_FORMAT = (
    '{"thought": "...", "tool": "<tool name>", "arguments": {...}, "request_heartbeat": false}'
)
_KNOWN_KEYS = ("thought", "tool", "arguments", "request_heartbeat")
_FENCE_RE = re.compile(r"\A```[ \t]*(?:json|JSON)?[ \t]*\r?\n(?P<body>.*?)\r?\n?```\Z", re.DOTALL)
# A reply nests at most this deep (the tools' arguments need 3 levels); deeper is junk, and
# storing or showing it would run into Python's recursion limit.
MAX_DEPTH = 32
# What is left of a surrogate escape (\ud800) once JSON decoded it without its other half: not
# a character, and not storable as UTF-8.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class ReplyParseError(ValueError):
    """The reply is not one well-formed tool call; the message tells the model how to fix it."""


def _fail(problem: str) -> ReplyParseError:
    return ReplyParseError(f"{problem} Reply with exactly one JSON object: {EXPECTED_FORMAT}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _excerpt(text: str, limit: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _json_excerpt(value: Any, limit: int = 60) -> str:
    """A value as JSON, cut after `limit` characters: an error quotes the model's junk, and a
    long quote would fill the context with it."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def _unusable_text(value: Any) -> str | None:
    """Why `value` (a decoded reply) cannot be a tool call whatever its keys say: nested too
    deeply, or a string (key or value) holding a lone surrogate. None when it is usable."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"The reply is nested more than {MAX_DEPTH} levels deep."
        if isinstance(item, str):
            lone = _LONE_SURROGATE.search(item)
            if lone:
                return (
                    f"The reply holds the escape {ascii(lone.group())[1:-1]}, half of a "
                    "surrogate pair without its other half, which is not a character. Write "
                    "the character itself (or both halves of the pair)."
                )
        elif isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return None


def parse_reply(text: str) -> ToolCall:
    """The ToolCall in `text`, one JSON object (surrounding whitespace and one ```json fence are
    tolerated; anything else around the object is not). Missing request_heartbeat means False,
    missing thought means None, missing or null arguments mean {}. Raises ReplyParseError."""
    if not isinstance(text, str):
        raise _fail(f"The reply must be text, got {type(text).__name__}.")
    body = text.strip()
    fence = _FENCE_RE.match(body)
    if fence:
        body = fence.group("body").strip()
    if not body:
        raise _fail("The reply was empty.")
    if _LONE_SURROGATE.search(body):
        raise _fail("The reply is not valid Unicode text (it holds a lone surrogate).")

    decoder = json.JSONDecoder(strict=False, parse_constant=_reject_constant)
    try:
        value, end = decoder.raw_decode(body)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"The reply is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})."
        ) from None
    except ValueError as exc:  # NaN / Infinity, an integer of thousands of digits
        raise _fail(f"The reply is not valid JSON ({exc}).") from None
    except RecursionError:
        raise _fail(f"The reply is nested more than {MAX_DEPTH} levels deep.") from None
    problem = _unusable_text(value)
    if problem:
        raise _fail(problem)
    trailing = body[end:].strip()
    if trailing:
        raise _fail(
            f"Unexpected text after the JSON object: {_excerpt(trailing)}. "
            "Send one tool call per reply."
        )
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(value), "a number"
        )
        raise _fail(f"The reply must be a JSON object, got {kind}.")

    unknown = [k for k in value if k not in _KNOWN_KEYS]
    if unknown:
        listed = ", ".join(_json_excerpt(k) for k in unknown[:5])
        if len(unknown) > 5:
            listed += f" and {len(unknown) - 5} more"
        raise _fail(
            f'Unexpected key(s) {listed} at the top level; tool arguments go inside "arguments".'
        )

    if "tool" not in value:
        raise _fail('The reply has no "tool" key naming the tool to call.')
    tool = value["tool"]
    if not isinstance(tool, str) or not tool.strip():
        raise _fail(f'"tool" must be a non-empty string (a tool name), got {_json_excerpt(tool)}.')

    arguments = value.get("arguments")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise _fail(
            f'"arguments" must be a JSON object of the tool\'s arguments, got '
            f"{_excerpt(json.dumps(arguments, ensure_ascii=False))}."
        )

    heartbeat = value.get("request_heartbeat", False)
    if heartbeat is None:
        heartbeat = False
    if not isinstance(heartbeat, bool):
        raise _fail(f'"request_heartbeat" must be true or false, got {_json_excerpt(heartbeat)}.')

    thought = value.get("thought")
    if thought is not None and not isinstance(thought, str):
        raise _fail(f'"thought" must be a string, got {_excerpt(json.dumps(thought))}.')

    return ToolCall(
        name=tool.strip(), arguments=arguments, request_heartbeat=heartbeat, thought=thought
    )


_LENIENT = json.JSONDecoder(strict=False)  # raw newlines in strings, as parse_reply allows
_SEND_MESSAGE_START = re.compile(
    r'"tool"\s*:\s*"send_message"\s*,\s*"arguments"\s*:\s*\{\s*"message"\s*:\s*"'
)


class MessageStream:
    """Reads a reply as it is generated and gives out the text of its send_message message as
    it grows, so the user sees the answer being written. Replies follow the grammar's key order
    (thought, tool, arguments), so the message is known to be one once its key starts."""

    def __init__(self) -> None:
        self._raw = ""
        self._start: int | None = None
        self._shown = ""
        self._scanned = 0  # how much of the message body _whole_prefix has read (see there)
        self._closed = False

    @property
    def text(self) -> str:
        """The message text shown so far."""
        return self._shown

    def feed(self, piece: str) -> str:
        """Add reply text; returns the message text it adds ("" when none). The Python scan of
        the message reads only what is new; the JSON decoding (in C) reads the message again,
        which is microseconds for a reply's few thousand characters."""
        self._raw += piece
        if self._closed:
            return ""
        if self._start is None:
            key = self._raw.rfind('"tool"')  # the last: a thought can quote the key too
            match = _SEND_MESSAGE_START.match(self._raw, key) if key >= 0 else None
            if match is None:
                return ""
            self._start = match.end()
        body = self._raw[self._start :]
        self._scanned, self._closed = _whole_prefix(body, self._scanned)
        decoded = _decode_body(body[: self._scanned])
        if decoded is None or len(decoded) <= len(self._shown):
            return ""  # None: not a JSON string after all (parse_reply will say so)
        added, self._shown = decoded[len(self._shown) :], decoded
        return added


def _whole_prefix(body: str, index: int) -> tuple[int, bool]:
    """From `index` (the end of a whole prefix found before), the end of the longest prefix of
    `body` that holds no part of an escape sequence, and whether the string's closing quote
    ends it."""
    while index < len(body):
        char = body[index]
        if char == '"':
            return index, True
        if char == "\\":
            width = 6 if body[index + 1 : index + 2] == "u" else 2
            if index + width > len(body):
                break  # an escape still being written
            index += width
        else:
            index += 1
    return index, False


def _decode_body(body: str) -> str | None:
    """The characters of a JSON string body (no quotes, whole escapes); None when it is not
    one (a bad escape). Raw control characters are taken as parse_reply takes them."""
    try:
        text = _LENIENT.decode('"' + body + '"')
    except ValueError:
        return None
    lone = _LONE_SURROGATE.search(text)
    # The first half of a surrogate pair at the end: wait for the second. Anywhere else it is
    # junk parse_reply refuses: the message shown stops there.
    return text[: lone.start()] if lone else text
