"""Hostile model output through parse_reply and MessageStream (hypothesis).

The rules: parse_reply gives a ToolCall or a ReplyParseError, never another exception; its
errors can be stored and shown (valid UTF-8, with the expected format); what it accepts can be
stored (no lone surrogate, bounded nesting); and the streamed message never raises and agrees
with the parsed one. test_parse.py has the fixed examples; this file throws junk at it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.llm.parse import (
    EXPECTED_FORMAT,
    MAX_DEPTH,
    MessageStream,
    ReplyParseError,
    parse_reply,
)
from engine.types import ToolCall

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Characters that break naive text handling: NUL and other controls, a lone surrogate of each
# half, RTL and bidi overrides, combining marks, BOM, noncharacters, quotes and backslashes.
ODD = [
    "\x00",
    "\x1f",
    "\x7f",
    "\n",
    "\r",
    "\t",
    "\ud800",
    "\udbff",
    "\udc00",
    "\udfff",
    "\u200f",
    "\u202e",
    "\u2066",
    "\u0301",
    "\u0336",
    "\ufeff",
    "\ufffe",
    "\uffff",
    "\U0010ffff",
    "\U0001f600",
    '"',
    "\\",
    "\\u",
    "\\ud800",
    "{",
    "}",
    "```",
]
hostile_piece = st.one_of(
    st.characters(),  # any code point (a surrogate now and then)
    st.characters(categories=["Cs"]),  # lone surrogates
    st.sampled_from(ODD),
)


def texts(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    return st.lists(hostile_piece, min_size=min_size, max_size=max_size).map("".join)


hostile_text = st.one_of(
    texts(max_size=40),
    # huge: up to 300,000 characters of one odd character (or a short run of them)
    st.builds(lambda s, n: s * n, texts(1, 3), st.integers(0, 100_000)),
)

hostile_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)

TOOL_NAMES = [
    "send_message",
    "core_memory_append",
    "archival_memory_insert",
    "delete_all_memory",
    "",
    " ",
]


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((max(_depth(k), _depth(v)) for k, v in value.items()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def check_parse(text: str) -> ToolCall | None:
    """parse_reply's contract on any input: a storable ToolCall, or a storable error."""
    try:
        call = parse_reply(text)
    except ReplyParseError as exc:
        message = str(exc)
        assert _storable(message), message
        assert EXPECTED_FORMAT in message
        assert len(message) < 1000  # an excerpt of the junk, never all of it
        return None
    assert isinstance(call, ToolCall)
    assert call.name and call.name == call.name.strip()
    assert isinstance(call.arguments, dict)
    assert isinstance(call.request_heartbeat, bool)
    assert call.thought is None or isinstance(call.thought, str)
    assert _depth(call.as_json()) <= MAX_DEPTH
    for text_part in _strings(call.as_json()):
        assert _storable(text_part)
    json.dumps(call.as_json(), ensure_ascii=False).encode("utf-8")  # as _act stores it
    return call


@FUZZ
@given(text=hostile_text)
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    check_parse(text)


reply_like = st.fixed_dictionaries(
    {},
    optional={
        "thought": hostile_json,
        "tool": st.sampled_from(TOOL_NAMES) | hostile_json,
        "arguments": hostile_json,
        "request_heartbeat": hostile_json,
        "message": hostile_text,  # a key the format does not have
    },
)


@FUZZ
@given(
    value=reply_like | hostile_json,
    ascii_only=st.booleans(),
    cut=st.none() | st.integers(min_value=0),
    tail=st.sampled_from(["", " ", "\n", "}", "]", "x", '{"tool": "t"}', "```"]),
    fence=st.booleans(),
)
def test_any_json_value_parses_or_fails_cleanly(value, ascii_only, cut, tail, fence) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    if cut is not None:
        text = text[: cut % (len(text) + 1)]
    text += tail
    if fence:
        text = f"```json\n{text}\n```"
    check_parse(text)


@FUZZ
@given(
    tool=texts(1, 30),
    arguments=st.dictionaries(hostile_text, hostile_json, max_size=5),
    heartbeat=st.booleans(),
    thought=st.none() | hostile_text,
    ascii_only=st.booleans(),
)
def test_a_well_formed_reply_round_trips_unless_it_holds_a_lone_surrogate(
    tool, arguments, heartbeat, thought, ascii_only
) -> None:
    reply = {"tool": tool, "arguments": arguments, "request_heartbeat": heartbeat}
    if thought is not None:
        reply["thought"] = thought
    text = json.dumps(reply, ensure_ascii=ascii_only)
    call = check_parse(text)
    # what the JSON says: escaped surrogate halves that pair up ("\\ud800\\udc00") read as
    # the one character they spell, which is storable
    said = json.loads(text)
    usable = (
        said["tool"].strip() != ""
        and all(_storable(s) for s in _strings(said))
        and _depth(said["arguments"]) < MAX_DEPTH
    )
    if usable:
        assert call == ToolCall(
            said["tool"].strip(), said["arguments"], heartbeat, said.get("thought")
        )
    else:
        assert call is None


@pytest.mark.parametrize("depth", [MAX_DEPTH - 2, MAX_DEPTH + 1, 999, 5000, 200_000])
@pytest.mark.parametrize("bracket", ["[]", "{}"])
def test_deep_nesting_is_a_parse_error_not_a_recursion_error(depth: int, bracket: str) -> None:
    """Was a bug: json raises RecursionError past ~1,000 levels, which went through the agent
    step uncaught; a reply nested deeper than any tool needs is refused before that."""
    open_, close = bracket
    inner = open_ * depth + close * depth if open_ == "[" else '{"a": ' * depth + "1" + "}" * depth
    text = f'{{"tool": "send_message", "arguments": {{"message": "hi", "x": {inner}}}}}'
    call = check_parse(text)
    assert (call is not None) == (depth + 2 <= MAX_DEPTH)
    if call is None:
        with pytest.raises(ReplyParseError, match="nested more than"):
            parse_reply(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"tool": "send_message", "arguments": {"message": "a\\ud800b"}}',
        '{"tool": "send_message", "arguments": {"message": "\\udfff"}}',
        '{"tool": "send_\\ud800message", "arguments": {}}',
        '{"tool": "archival_memory_insert", "arguments": {"content": "x", "tags": ["\\udc00"]}}',
        '{"tool": "core_memory_append", "arguments": {"section": "\\ud800", "content": "x"}}',
        '{"tool": "send_message", "arguments": {"\\ud800": "x"}}',
        '{"thought": "\\ud83d", "tool": "send_message", "arguments": {"message": "x"}}',
        '{"tool": "send_message", "arguments": {"message": "raw \ud800"}}',
    ],
)
def test_a_lone_surrogate_is_a_parse_error(text: str) -> None:
    """Was a bug: the escape \\ud800 decodes to a string SQLite cannot store (not UTF-8), and
    storing the call or its message raised UnicodeEncodeError out of the agent step."""
    with pytest.raises(ReplyParseError, match="surrogate") as info:
        parse_reply(text)
    assert _storable(str(info.value))


@pytest.mark.parametrize(
    "reply",
    [
        {"tool": "t", "x" * 100_000: 1},
        {"tool": "t", **{f"key{i}": i for i in range(1000)}},
        {"tool": ["x" * 100_000]},
        {"tool": "t", "request_heartbeat": "x" * 100_000},
        {"tool": "t", "arguments": ["x" * 100_000]},
        {"tool": "t", "thought": {"x" * 100_000: 1}},
    ],
    ids=["huge-key", "many-keys", "huge-tool", "huge-heartbeat", "huge-arguments", "huge-thought"],
)
def test_an_error_quotes_the_junk_briefly(reply: dict[str, Any]) -> None:
    """Was a bug: unknown keys, and a "tool" or "request_heartbeat" of the wrong type, were
    quoted whole in the error, which goes back to the model: a huge key filled its context."""
    with pytest.raises(ReplyParseError) as info:
        parse_reply(json.dumps(reply))
    assert len(str(info.value)) < 400


def test_a_surrogate_pair_escape_is_one_character() -> None:
    call = parse_reply('{"tool": "send_message", "arguments": {"message": "\\ud83d\\ude00"}}')
    assert call.arguments["message"] == "\U0001f600"


def test_huge_numbers_are_parse_errors_or_plain_values() -> None:
    with pytest.raises(ReplyParseError, match="not valid JSON"):
        parse_reply('{"tool": "t", "arguments": {"limit": ' + "9" * 5000 + "}}")
    call = parse_reply('{"tool": "t", "arguments": {"limit": 1e999, "page": -1e-999}}')
    assert call.arguments == {"limit": float("inf"), "page": -0.0}  # validation refuses them


# -- MessageStream --------------------------------------------------------------------------


def _stream(reply: str, cuts: list[int]) -> str:
    stream = MessageStream()
    bounds = sorted({0, len(reply), *(c % (len(reply) + 1) for c in cuts)})
    shown = "".join(stream.feed(reply[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
    assert shown == stream.text
    return shown


@FUZZ
@given(text=texts(max_size=200), cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_message_stream_never_raises_on_any_text(text: str, cuts: list[int]) -> None:
    prefix = '{"thought": "", "tool": "send_message", "arguments": {"message": "'
    _stream(prefix + text, cuts)


@FUZZ
@given(
    message=texts(max_size=60),
    raw_controls=st.booleans(),
    cut=st.none() | st.integers(min_value=0),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
)
def test_message_stream_agrees_with_parse_reply(message, raw_controls, cut, cuts) -> None:
    """Was a bug: a raw newline (or any control character) inside the message, which
    parse_reply accepts, made the stream's strict json.loads raise out of the agent step."""
    reply = json.dumps(
        {"thought": "", "tool": "send_message", "arguments": {"message": message}},
        ensure_ascii=False,
    )
    if raw_controls:  # as a model without the grammar writes them
        for escaped, raw in (("\\n", "\n"), ("\\t", "\t"), ("\\u0000", "\x00"), ("\\r", "\r")):
            reply = reply.replace(escaped, raw)
    if cut is not None:
        reply = reply[: cut % (len(reply) + 1)]
    shown = _stream(reply, cuts)
    assert _storable(shown)
    call = check_parse(reply)
    if call is not None:
        assert shown == call.arguments["message"]
    else:  # cut short or refused: what was shown is the start of the message
        assert message.startswith(shown) or "\\" in message
