"""Hostile tool calls (hypothesis): every memory tool, by the model's path (reply text ->
parse_reply -> schema validation -> dispatch -> storage, the whole agent step included) and by
the public API (agent.tools.X(...)), with huge strings, odd Unicode, unknown and missing fields,
wrong types, nested junk and numbers out of range.

The rules: nothing raises (a bad call is a tool error the model reads, a Python API call gets
an "Error: ..." string); a failed call changes nothing; the file stays intact; and nothing over
a limit is stored: a core block never holds more than its limit in characters (len(), as
engine.memory.core counts), an archival passage at most MAX_TEXT characters with at most 20
tags, an entity name at most MAX_NAME_CHARS. test_memory_tools.py has the fixed examples and a
first fuzz of dispatch; this file goes further.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import MemGPTAgent, Persona, open_store
from engine.llm.parse import ReplyParseError, parse_reply
from engine.llm.scripted import ScriptedClient, call
from engine.memory.core import CoreMemoryError
from engine.memory.graph import MAX_NAME_CHARS
from engine.tools.registry import MAX_TEXT, TOOL_ARGS
from engine.tools.reply_checks import lines_already_held
from engine.types import ToolCall, ToolResult

PERSONA = Persona("Sam", "A helpful assistant")
TOOLS = list(TOOL_ARGS)
FIELDS = sorted({f for model in TOOL_ARGS.values() for f in model.model_fields})
SECTIONS = ["persona", "human", "system", "nope", "", "HUMAN", " human"]

# -- strategies -------------------------------------------------------------------------------

ODD = [
    "\x00",
    "\x1f",
    "\n",
    "\ud800",
    "\udfff",
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "\u0301",  # combining acute
    "\ufeff",
    "\uffff",
    "\U0001f600",
    "ß",  # casefolds to two characters
    "\u0958",  # NFC makes two characters of it
    '"',
    "\\",
    "%",
    "*",
    "NEAR(",
    "OR",
    "'",
]
WORDS = ["tea", "Alice", "works_at", "2024-01-01", "human", "Name:", "Likes", "Acme"]
clean_piece = st.one_of(
    st.characters(codec="utf-8"),  # any code point but a surrogate
    st.sampled_from([c for c in ODD if c not in ("\ud800", "\udfff")]),
    st.sampled_from(WORDS),
)
piece = st.one_of(clean_piece, st.characters(categories=["Cs"]), st.sampled_from(ODD))
small_text = st.lists(piece, max_size=12).map("".join)  # lone surrogates likely
clean_text = st.lists(clean_piece, max_size=12).map("".join)
# around the limits: block limits (~2,000), names (200), relations (100), dates (32), MAX_TEXT
SIZES = [0, 1, 31, 33, 99, 101, 199, 201, 1000, 1999, 2001, 2500, MAX_TEXT + 1, 3 * MAX_TEXT]
big_text = st.builds(
    lambda s, n: (s * (n // max(1, len(s)) + 1))[:n],
    st.lists(clean_piece, min_size=1, max_size=4).map("".join),
    st.sampled_from(SIZES),
)
hostile_text = st.one_of(clean_text, clean_text, clean_text, clean_text, small_text, big_text)
hostile_int = st.one_of(
    st.integers(-5, 25), st.sampled_from([1000, 1001, 2**31, 2**63, -(2**63), 10**30])
)
hostile_value: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | hostile_int
    | st.floats(allow_nan=False, allow_infinity=False)
    | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(small_text, inner, max_size=3),
    max_leaves=6,
)
day = st.sampled_from(
    ["2024-01-01", "2024-01", "2024", "9999-12-31", "0001-01-01", "2024-02-30", "tomorrow", ""]
)
name = st.one_of(st.sampled_from(["Alice", "alice ", "ALICE", "Acme", "Zoë"]), hostile_text)
# each argument with values of its kind, mostly well-formed, so calls reach the memory code
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "section": st.sampled_from(SECTIONS),
    "message": hostile_text,
    "content": hostile_text,
    "old_content": st.sampled_from(["Alice", "tea", "Name: Alice", "\n", "x"]) | hostile_text,
    "new_content": hostile_text,
    "tags": st.none() | st.lists(clean_text, max_size=22) | st.lists(hostile_text, max_size=3),
    "query": hostile_text,
    "limit": hostile_int,
    "page": hostile_int,
    "start_date": day | hostile_text,
    "end_date": day | hostile_text,
    "subject": name,
    "relation": st.sampled_from(["works_at", "Works At", "likes", "ßß", "_"]) | hostile_text,
    "object": name,
    "valid_from": st.none() | day | hostile_text,
    "exclusive": st.booleans(),
    "entity": name,
    "at": st.none() | day | hostile_text,
}
assert set(FIELD_VALUES) == set(FIELDS)


@st.composite
def tool_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A call of a real tool with its own arguments, then maybe one thing wrong with it: a
    field dropped, an unknown one added, a value of the wrong kind."""
    tool = draw(st.sampled_from(TOOLS))
    fields = TOOL_ARGS[tool].model_fields
    args = {
        f: draw(FIELD_VALUES[f]) for f in fields if fields[f].is_required() or draw(st.booleans())
    }
    mistake = draw(st.sampled_from(["none", "none", "none", "drop", "add", "wrong"]))
    if mistake == "drop" and args:
        args.pop(draw(st.sampled_from(sorted(args))))
    elif mistake == "add":
        args[draw(st.sampled_from(["zzz", "Content", "section ", "arguments"]) | small_text)] = (
            draw(hostile_value)
        )
    elif mistake == "wrong" and args:
        args[draw(st.sampled_from(sorted(args)))] = draw(hostile_value)
    return tool, args


junk_arguments = st.dictionaries(
    st.sampled_from([*FIELDS, "zzz"]) | small_text, hostile_value, max_size=6
)
tool_name = st.sampled_from([*TOOLS, "delete_all_memory", "send_message ", "Send_Message"])
any_call = st.one_of(tool_calls(), tool_calls(), tool_calls(), st.tuples(tool_name, junk_arguments))

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_agent(embedder, replies=()) -> Iterator[MemGPTAgent]:
    """An agent on its own new file (hypothesis runs each example on a clean slate)."""
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(Path(folder) / "memex.db", embedder=embedder)
        try:
            client = ScriptedClient(replies, n_ctx=16384)
            yield MemGPTAgent(PERSONA, store, client, name="sam")
        finally:
            store.close()


def storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def snapshot(agent: MemGPTAgent) -> dict[str, Any]:
    """What the memory tiers hold (not the conversation, which every step adds to)."""
    store = agent.store
    return {
        "blocks": store.query("SELECT id, label, value, char_limit FROM blocks ORDER BY id"),
        "history": store.query("SELECT count(*) FROM block_history"),
        "passages": store.query("SELECT id, text, tags_json FROM passages ORDER BY id"),
        "vectors": store.query("SELECT count(*) FROM passage_vectors"),
        "entities": store.query("SELECT id, name FROM entities ORDER BY id"),
        "facts": store.query("SELECT * FROM facts ORDER BY id"),
    }


def assert_intact(agent: MemGPTAgent) -> None:
    """The file is whole and nothing in it is over a limit."""
    store = agent.store
    assert store.query("PRAGMA quick_check") == [("ok",)]
    assert store.query("PRAGMA foreign_key_check") == []
    for label, value, limit in store.query("SELECT label, value, char_limit FROM blocks"):
        assert len(value) <= limit, (label, len(value), limit)
    for block in agent.memory.blocks():
        assert len(block.value) <= block.limit
    passages = store.query("SELECT id, text, tags_json FROM passages")
    for _, text, tags_json in passages:
        assert len(text) <= MAX_TEXT
        tags = json.loads(tags_json)
        assert isinstance(tags, list) and len(tags) <= 20
        assert all(isinstance(t, str) and storable(t) for t in tags)
    # every passage is in the full-text and the vector index, and nothing else is
    assert store.query_one("SELECT count(*) FROM passage_vectors") == (len(passages),)
    for (name,) in store.query("SELECT name FROM entities"):
        assert 0 < len(name) <= MAX_NAME_CHARS
    for (count,) in store.query(
        "SELECT count(*) FROM facts WHERE subject_id NOT IN (SELECT id FROM entities)"
        " OR object_id NOT IN (SELECT id FROM entities)"
    ):
        assert count == 0


def assert_result(result: ToolResult, call_: ToolCall) -> None:
    assert isinstance(result, ToolResult)
    assert isinstance(result.ok, bool) and isinstance(result.content, str)
    assert storable(result.content), result.content
    assert result.content.strip()
    if call_.name not in TOOL_ARGS:
        assert not result.ok and "unknown tool" in result.content
    if not result.ok:  # an error quotes the call briefly: it goes into the model's context
        assert len(result.content) < 1500, result.content[:300]


# -- the model's path, without the agent loop ------------------------------------------------


@FUZZ
@given(tool_call=any_call, ascii_only=st.booleans(), heartbeat=hostile_value)
def test_model_replies_parse_validate_and_dispatch_without_raising(
    embedder, tool_call, ascii_only, heartbeat
) -> None:
    name, args = tool_call
    reply = json.dumps(
        {"thought": "", "tool": name, "arguments": args, "request_heartbeat": heartbeat},
        ensure_ascii=ascii_only,
    )
    with fresh_agent(embedder) as agent:
        agent.tools.core_memory_append("human", "Name: Alice\nLikes tea")  # something to replace
        before = snapshot(agent)
        try:
            parsed = parse_reply(reply)
        except ReplyParseError as exc:
            assert storable(str(exc))
            return
        result = agent.tools.dispatch(parsed)
        assert_result(result, parsed)
        assert_intact(agent)
        if not result.ok:
            assert snapshot(agent) == before  # a refused call changed nothing


# -- a sequence of edits through the public API ----------------------------------------------

edit = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(SECTIONS), hostile_text),
    st.tuples(st.just("model_append"), st.sampled_from(SECTIONS), hostile_text),
    st.tuples(st.just("replace"), st.sampled_from(SECTIONS), hostile_text, hostile_text),
    st.tuples(
        st.just("replace_existing"), st.sampled_from(SECTIONS), st.integers(0, 50), hostile_text
    ),
    st.tuples(st.just("user_set"), st.sampled_from(SECTIONS), hostile_text),
    st.tuples(st.just("undo"), st.sampled_from(SECTIONS)),
)


@FUZZ
@given(edits=st.lists(edit, min_size=1, max_size=25))
def test_core_blocks_never_exceed_their_limit_whatever_the_edits(embedder, edits) -> None:
    with fresh_agent(embedder) as agent:
        for op, section, *rest in edits:
            before = {b.label: b.value for b in agent.memory.blocks()}
            history = agent.store.query_one("SELECT count(*) FROM block_history")
            if op == "append":
                out = agent.tools.core_memory_append(section, rest[0])
            elif op == "model_append":  # as the model's call: read-only blocks refused
                arguments = {"section": section, "content": rest[0]}
                result = agent.tools.dispatch(ToolCall("core_memory_append", arguments))
                out = result.content if result.ok else f"Error: {result.content}"
                assert not (result.ok and section == "system")
            elif op == "replace":
                out = agent.tools.core_memory_replace(section, rest[0], rest[1])
            elif op == "replace_existing":  # a piece of what the block holds: it is found
                value = before.get(section, "")
                old = value[rest[0] : rest[0] + 7]
                out = agent.tools.core_memory_replace(section, old, rest[1])
            else:
                try:
                    if op == "user_set":
                        agent.edit_core_memory(section, rest[0])
                    else:
                        agent.undo_core_memory(section)
                    out = "done"
                except CoreMemoryError as exc:  # the user's own edits raise, with the reason
                    out = f"Error: {exc}"
            assert isinstance(out, str) and storable(out)
            after = {b.label: b.value for b in agent.memory.blocks()}
            if out.startswith("Error:"):
                assert after == before  # a refused edit changes nothing, history included
                assert agent.store.query_one("SELECT count(*) FROM block_history") == history
            elif op == "model_append":  # the model's lines the block holds already are skipped
                _, new = lines_already_held(rest[0], before[section])
                separator = "\n" if before[section] and new else ""
                assert after[section] == before[section] + separator + "\n".join(new)
            elif op == "append":
                separator = "\n" if before[section] else ""
                assert after[section] == before[section] + separator + rest[0]
            for block in agent.memory.blocks():
                assert len(block.value) <= block.limit
        assert_intact(agent)


def test_an_append_one_character_over_the_limit_is_refused_and_exactly_to_it_is_kept(
    embedder,
) -> None:
    with fresh_agent(embedder) as agent:
        block = agent.memory.block("human")
        over = agent.tools.core_memory_append("human", "x" * (block.limit + 1))
        assert over.startswith("Error: section 'human' would hold")
        assert "over its limit" in over and agent.core_memory["human"] == ""
        assert agent.tools.core_memory_append("human", "x" * block.limit).startswith("Appended")
        assert len(agent.core_memory["human"]) == block.limit
        assert agent.tools.core_memory_append("human", "y").startswith("Error:")
        # a replace that would grow it past the limit is refused as well
        grown = agent.tools.core_memory_replace("human", "x" * 10, "z" * 11)
        assert grown.startswith("Error:") and agent.core_memory["human"] == "x" * block.limit
        # the model may not touch a read-only block (the user, through this API, may)
        refused = agent.tools.dispatch(
            ToolCall("core_memory_append", {"section": "system", "content": "obey me"})
        )
        assert not refused.ok and "section 'system' is read-only" in refused.content


# -- every public tool method with arguments of any type -------------------------------------

PUBLIC = {
    "send_message": ["message"],
    "core_memory_append": ["section", "content"],
    "core_memory_replace": ["section", "old_content", "new_content"],
    "archival_memory_insert": ["content", "tags"],
    "archival_memory_search": ["query", "limit", "page"],
    "conversation_search": ["query", "limit", "page"],
    "conversation_search_date": ["start_date", "end_date", "limit", "page"],
    "graph_insert": ["subject", "relation", "object", "valid_from", "exclusive"],
    "graph_search": ["entity", "relation", "at"],
    "memory_forget": ["query"],
}


def test_the_public_api_covers_every_tool() -> None:
    assert sorted(PUBLIC) == sorted(TOOLS)


@st.composite
def public_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A public method and keyword arguments for it: of the right kind mostly, any kind else."""
    tool = draw(st.sampled_from(sorted(PUBLIC)))
    kwargs = {}
    for param in PUBLIC[tool]:
        if draw(st.integers(0, 3)) == 0:
            kwargs[param] = draw(hostile_value)
        elif param in TOOL_ARGS[tool].model_fields and not (
            TOOL_ARGS[tool].model_fields[param].is_required() or draw(st.booleans())
        ):
            continue  # left to the method's default
        else:
            kwargs[param] = draw(FIELD_VALUES[param])
    return tool, kwargs


@FUZZ
@given(public_call=public_calls())
def test_every_public_tool_method_returns_a_string_for_any_arguments(embedder, public_call) -> None:
    name, kwargs = public_call
    with fresh_agent(embedder) as agent:
        agent.tools.core_memory_append("human", "Name: Alice\nLikes tea")
        agent.tools.graph_insert("Alice", "works_at", "Acme")
        agent.tools.archival_memory_insert("Alice likes green tea", tags=["tea"])
        before = snapshot(agent)
        out = getattr(agent.tools, name)(**kwargs)
        assert isinstance(out, str) and storable(out) and out.strip()
        if out.startswith("Error:"):
            assert snapshot(agent) == before
        assert_intact(agent)


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        # Was a bug: a tag with a lone surrogate passed validation (a list item has no length
        # limit, so pydantic did not check it was text) and raised UnicodeEncodeError.
        ("archival_memory_insert", {"content": "x", "tags": ["\ud800"]}, "tags.0: not valid"),
        ("core_memory_append", {"section": "human", "content": "a\udfffb"}, "not valid Unicode"),
        ("graph_insert", {"subject": "A\ud800", "relation": "r", "object": "B"}, "subject"),
        # Was a bug: the day after 9999-12-31 overflowed (OverflowError out of dispatch).
        (
            "conversation_search_date",
            {"start_date": "9999-12-31", "end_date": "9999-12-31"},
            "No messages found",
        ),
        (
            "conversation_search_date",
            {"start_date": "0001-01-01", "end_date": "9999-12-31"},
            "Showing 1-2 of 2 messages",
        ),
        ("archival_memory_insert", {"content": "x" * (MAX_TEXT + 1)}, "at most 100000"),
        ("archival_memory_insert", {"content": "x", "tags": ["t"] * 21}, "at most 20 items"),
        ("archival_memory_search", {"query": "x", "limit": 21}, "less than or equal to 20"),
        ("archival_memory_search", {"query": "x", "page": 1001}, "less than or equal to 1000"),
        ("conversation_search", {"query": "x", "limit": 2**63}, "less than or equal to 20"),
        ("graph_insert", {"subject": "A" * 201, "relation": "r", "object": "B"}, "at most 200"),
        (
            "graph_insert",
            {"subject": "A", "relation": "r", "object": "B", "valid_from": "99999"},
            "out of range",
        ),
        ("graph_search", {"entity": "\x00", "at": "-1"}, ""),
    ],
)
def test_odd_arguments_get_a_tool_error_or_an_answer(embedder, name, kwargs, expected) -> None:
    with fresh_agent(embedder, [call("send_message", message="Hello!")]) as agent:
        agent.step("I like tea")  # two messages to find
        before = snapshot(agent)
        result = agent.tools.dispatch(ToolCall(name, kwargs))
        assert expected in result.content
        assert storable(result.content)
        if not result.ok:
            assert snapshot(agent) == before
        assert_intact(agent)


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("x" * 50_000, {}, "unknown tool 'xxx"),
        ("core_memory_append", {"section": "s" * 50_000, "content": "x"}, "no core memory section"),
        (
            "core_memory_replace",
            {"section": "human", "old_content": "q" * 50_000, "new_content": "x"},
            "text not found in section 'human': 'qqq",
        ),
    ],
    ids=["tool-name", "section", "old-content"],
)
def test_an_error_quotes_the_call_briefly(embedder, name, kwargs, expected) -> None:
    """Was a bug: these errors repeated the whole argument back to the model (a model without
    the grammar, or a caller of the API, can send any length), filling its context."""
    with fresh_agent(embedder) as agent:
        result = agent.tools.dispatch(ToolCall(name, kwargs))
        assert not result.ok and expected in result.content
        assert len(result.content) < 400


def test_a_passage_of_exactly_max_text_is_stored_whole(embedder) -> None:
    with fresh_agent(embedder) as agent:
        text = ("All work and no play. " * (MAX_TEXT // 20))[:MAX_TEXT]
        assert agent.tools.archival_memory_insert(text, tags=["a"] * 20).startswith("Saved")
        assert agent.store.query("SELECT text FROM passages") == [(text,)]
        assert_intact(agent)


# -- the whole agent step ---------------------------------------------------------------------

# Replies as a model's client hands them over: text that is valid Unicode (llama.cpp's is
# decoded UTF-8); a raw lone surrogate in the reply text itself is the separate test below.
hostile_reply = st.one_of(
    st.builds(
        lambda tool_call, ascii_only, heartbeat: json.dumps(
            {
                "thought": "",
                "tool": tool_call[0],
                "arguments": tool_call[1],
                "request_heartbeat": heartbeat,
            },
            ensure_ascii=ascii_only,
        ),
        any_call,
        st.booleans(),
        st.booleans(),
    ),
    small_text,
    small_text.map(lambda t: json.dumps(call("x", m=t))[: len(t) // 2 + 10]),
    st.sampled_from(
        [
            "",
            "null",
            "[]",
            '{"tool": "send_message"}',
            '{"tool": "send_message", "arguments": {"message": "a\nb\x00c"}}',
            '{"tool": "send_message", "arguments": {"message": "\\ud800"}}',
            '{"tool": "delete_all_memory", "arguments": {"confirm": true}}',
            '{"tool": "send_message", "arguments": {"message": "' + "[" * 1000 + '"}}',
            '{"tool": "send_message", "arguments": ' + "[" * 5000 + "]" * 5000 + "}",
        ]
    ),
).filter(storable)
user_text = (
    st.lists(
        st.one_of(st.characters(codec="utf-8"), st.sampled_from([c for c in ODD if storable(c)])),
        min_size=1,
    )
    .map("".join)
    .filter(lambda t: t.strip())
)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(replies=st.lists(hostile_reply, min_size=1, max_size=4), text=user_text)
def test_an_agent_step_survives_any_model_output(embedder, replies, text) -> None:
    """Whatever the model writes, the step returns normally and each bad reply or call went
    back to the model as an error (the final scripted reply answers the user)."""
    replies = [*replies, json.dumps(call("send_message", message="done"))]
    with fresh_agent(embedder, replies) as agent:
        result = agent.step(text)
        assert result.steps >= 1 and not result.cancelled
        assert result.message is not None or result.stopped_by_step_limit
        for record in result.model_calls:
            if record.tool is not None:
                assert isinstance(record.tool, str)
        tool_rows = agent.store.query("SELECT content FROM messages WHERE role = 'tool'")
        assert len(tool_rows) == result.steps  # every reply got its result stored
        for (content,) in tool_rows:
            body = json.loads(content)
            assert body["status"] in ("OK", "Failed") and body["message"]
        assert_intact(agent)


def test_a_raw_lone_surrogate_in_the_reply_text_is_a_tool_error(embedder) -> None:
    reply = '{"tool": "send_message", "arguments": {"message": "a\ud800"}}'
    with fresh_agent(embedder, [reply, json.dumps(call("send_message", message="ok"))]) as agent:
        assert agent.step("hi").message == "ok"
