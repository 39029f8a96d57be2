from __future__ import annotations

import json

import pytest

from engine.llm.parse import ReplyParseError, parse_reply
from engine.types import ToolCall


def test_full_reply() -> None:
    call = parse_reply(
        '{"thought": "greet", "tool": "send_message", "arguments": {"message": "hi"}, '
        '"request_heartbeat": true}'
    )
    assert call == ToolCall("send_message", {"message": "hi"}, True, "greet")


def test_whitespace_and_defaults() -> None:
    call = parse_reply('\n  {"tool": "send_message", "arguments": {"message": "x"}}  \n')
    assert call.request_heartbeat is False
    assert call.thought is None
    assert call.arguments == {"message": "x"}


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"tool": "t", "arguments": {}}\n```',
        '```\n{"tool": "t", "arguments": {}}\n```',
        '  ```json\n{"tool": "t", "arguments": {}}```  ',
    ],
)
def test_code_fence(text: str) -> None:
    assert parse_reply(text).name == "t"


def test_missing_or_null_arguments_mean_empty() -> None:
    assert parse_reply('{"tool": "t"}').arguments == {}
    assert parse_reply('{"tool": "t", "arguments": null}').arguments == {}


def test_raw_newline_inside_string_is_tolerated() -> None:
    call = parse_reply('{"tool": "send_message", "arguments": {"message": "a\nb"}}')
    assert call.arguments["message"] == "a\nb"


def test_as_json_round_trip() -> None:
    import json

    call = ToolCall("send_message", {"message": 'é "q"'}, True, "t")
    assert parse_reply(json.dumps(call.as_json())) == call


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("hello", "not valid JSON"),
        ('{"tool": "t", "arguments": {}', "not valid JSON"),
        ('{"tool": "t"} trailing words', "Unexpected text after"),
        ('{"tool": "t"}{"tool": "u"}', "Unexpected text after"),
        ('```json\n{"tool": "t"}\n``` and more', "not valid JSON"),
        ('[{"tool": "t"}]', "got an array"),
        ('"send_message"', "got a string"),
        ("42", "got a number"),
        ("null", "got null"),
        ('{"arguments": {}}', 'no "tool"'),
        ('{"tool": "", "arguments": {}}', '"tool" must be a non-empty string'),
        ('{"tool": 3, "arguments": {}}', '"tool" must be a non-empty string'),
        ('{"tool": "t", "arguments": "x=1"}', '"arguments" must be a JSON object'),
        ('{"tool": "t", "arguments": [1]}', '"arguments" must be a JSON object'),
        ('{"tool": "t", "request_heartbeat": "yes"}', '"request_heartbeat" must be true or false'),
        ('{"tool": "t", "request_heartbeat": 1}', '"request_heartbeat" must be true or false'),
        ('{"tool": "t", "thought": 5}', '"thought" must be a string'),
        ('{"tool": "t", "message": "hi"}', 'Unexpected key(s) "message"'),
        ('{"tool": "t", "arguments": {"x": NaN}}', "not valid JSON"),
    ],
)
def test_bad_replies(text: str, fragment: str) -> None:
    with pytest.raises(ReplyParseError) as info:
        parse_reply(text)
    message = str(info.value)
    assert fragment in message
    assert '"tool": "<tool name>"' in message  # every error shows the expected format


def test_error_is_a_value_error() -> None:
    assert issubclass(ReplyParseError, ValueError)


# -- MessageStream: the message of a send_message reply while it is generated ------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from engine.llm.parse import MessageStream  # noqa: E402


def _feed_in_pieces(reply: str, cuts: list[int]) -> str:
    stream = MessageStream()
    bounds = sorted({0, len(reply), *(c % (len(reply) + 1) for c in cuts)})
    return "".join(stream.feed(reply[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))


@given(
    message=st.text(),
    thought=st.text(),
    ascii_only=st.booleans(),
    cuts=st.lists(st.integers(min_value=0), max_size=40),
)
def test_message_stream_gives_the_message_whatever_the_pieces(
    message, thought, ascii_only, cuts
) -> None:
    reply = json.dumps(
        {
            "thought": thought,
            "tool": "send_message",
            "arguments": {"message": message},
            "request_heartbeat": False,
        },
        ensure_ascii=ascii_only,
    )
    assert _feed_in_pieces(reply, cuts) == message


def test_message_stream_ignores_other_tools_and_thoughts() -> None:
    reply = json.dumps(
        {
            "thought": 'say "message": "x"',
            "tool": "core_memory_append",
            "arguments": {"section": "human", "content": "x"},
            "request_heartbeat": True,
        }
    )
    assert _feed_in_pieces(reply, list(range(len(reply)))) == ""


def test_message_stream_holds_back_half_an_escape() -> None:
    stream = MessageStream()
    assert (
        stream.feed('{"thought": "", "tool": "send_message", "arguments": {"message": "a\\') == "a"
    )
    assert stream.feed("u00e9") == "é"
    assert stream.feed('\\n"}') == "\n"
    assert stream.feed(', "request_heartbeat": false}') == ""
    assert stream.text == "aé\n"
