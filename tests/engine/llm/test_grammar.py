from __future__ import annotations

import json

import pytest

from engine.llm import grammar as g
from engine.llm.grammar import (
    REPLY_KEYS,
    THOUGHT_MAX_LENGTH,
    compile_grammar,
    render_tool_descriptions,
    reply_schema,
    schema_to_gbnf,
)
from engine.types import ToolSpec

from .gbnf_regex import gbnf_to_regex


def reply(tool: str, arguments: dict, thought: str = "ok", heartbeat: bool = False) -> str:
    return json.dumps(
        {"thought": thought, "tool": tool, "arguments": arguments, "request_heartbeat": heartbeat},
        ensure_ascii=False,
    )


# -- reply_schema -------------------------------------------------------------------------------


def test_reply_schema_shape(tools) -> None:
    schema = reply_schema(tools)
    branches = schema["oneOf"]
    assert [b["properties"]["tool"] for b in branches] == [{"const": t.name} for t in tools]
    for branch, tool in zip(branches, tools, strict=True):
        assert tuple(branch["properties"]) == REPLY_KEYS
        assert branch["required"] == list(REPLY_KEYS)
        assert branch["additionalProperties"] is False
        assert branch["properties"]["thought"]["maxLength"] == THOUGHT_MAX_LENGTH
        assert branch["properties"]["request_heartbeat"]["type"] == "boolean"
        args = branch["properties"]["arguments"]
        assert args == {**tool.parameters, "additionalProperties": False}
    assert "additionalProperties" not in tools[0].parameters  # input not mutated


def test_reply_schema_rejects_bad_tool_sets(tools) -> None:
    with pytest.raises(ValueError, match="at least one tool"):
        reply_schema([])
    with pytest.raises(ValueError, match="duplicate tool name 'send_message'"):
        reply_schema([tools[0], tools[0]])
    hb = ToolSpec(
        "t", "d", {"type": "object", "properties": {"request_heartbeat": {"type": "boolean"}}}
    )
    with pytest.raises(ValueError, match="request_heartbeat"):
        reply_schema([hb])
    with pytest.raises(ValueError, match="type 'object'"):
        reply_schema([ToolSpec("t", "d", {"type": "string"})])


def test_reply_schema_inlines_local_refs() -> None:
    params = {
        "type": "object",
        "$defs": {"Mood": {"type": "string", "enum": ["happy", "sad"]}},
        "properties": {"mood": {"$ref": "#/$defs/Mood", "description": "How you feel."}},
        "required": ["mood"],
    }
    args = reply_schema([ToolSpec("feel", "d", params)])["oneOf"][0]["properties"]["arguments"]
    assert args["properties"]["mood"] == {
        "type": "string",
        "enum": ["happy", "sad"],
        "description": "How you feel.",
    }
    assert "$defs" not in args
    recursive = {
        "type": "object",
        "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
        "properties": {"n": {"$ref": "#/$defs/N"}},
    }
    with pytest.raises(ValueError, match="recursive"):
        reply_schema([ToolSpec("rec", "d", recursive)])


def test_tool_without_arguments() -> None:
    schema = reply_schema([ToolSpec("noop", "Do nothing.", {"type": "object", "properties": {}})])
    rx = gbnf_to_regex(schema_to_gbnf(schema))
    assert rx.fullmatch(reply("noop", {}))
    assert not rx.fullmatch(reply("noop", {"x": 1}))


# -- what the grammar accepts -------------------------------------------------------------------


@pytest.fixture
def reply_regex(tools):
    return gbnf_to_regex(schema_to_gbnf(reply_schema(tools)))


@pytest.mark.parametrize(
    "text",
    [
        reply("send_message", {"message": "Hello!"}),
        reply("send_message", {"message": ""}, thought="", heartbeat=True),
        reply("send_message", {"message": 'say "hi"\n\tand \\ go ü 日本 😀'}),
        json.dumps(
            {
                "thought": "x",
                "tool": "send_message",
                "arguments": {"message": "é"},
                "request_heartbeat": False,
            }
        ),  # ASCII escapes \u00e9
        reply("send_message", {"message": "x"}, thought="t" * THOUGHT_MAX_LENGTH),
        reply("core_memory_append", {"section": "human", "content": "Name: Ada"}),
        reply("archival_memory_search", {"query": "hiking"}),
        reply("archival_memory_search", {"query": "q", "limit": 1}),
        reply("archival_memory_search", {"query": "q", "limit": 50, "page": 0}),
        reply("archival_memory_search", {"query": "q", "page": 12345}),
        reply("archival_memory_insert", {"content": "c"}),
        reply("archival_memory_insert", {"content": "c", "tags": None}),
        reply("archival_memory_insert", {"content": "c", "tags": []}),
        reply("archival_memory_insert", {"content": "c", "tags": ["a", "b"]}),
        '{"thought":"x","tool":"send_message","arguments":{"message":"m"},"request_heartbeat":true}',
    ],
)
def test_grammar_accepts(reply_regex, text: str) -> None:
    assert reply_regex.fullmatch(text), text


@pytest.mark.parametrize(
    "text",
    [
        reply("nonexistent_tool", {}),
        reply("send_message", {}),  # required argument missing
        reply("send_message", {"message": "x", "extra": 1}),
        reply("send_message", {"message": 5}),
        reply("send_message", {"message": "x"}, thought="t" * (THOUGHT_MAX_LENGTH + 1)),
        '{"thought": "a\nb", "tool": "send_message", "arguments": {"message": "x"}, '
        '"request_heartbeat": false}',  # raw newline inside a string
        '{"tool": "send_message", "thought": "x", "arguments": {"message": "x"}, '
        '"request_heartbeat": false}',  # key order
        '{"thought": "x", "tool": "send_message", "arguments": {"message": "x"}}',
        reply("archival_memory_search", {"query": "q", "limit": 0}),
        reply("archival_memory_search", {"query": "q", "limit": 51}),
        reply("archival_memory_search", {"query": "q", "limit": "5"}),
        reply("archival_memory_search", {"query": "q", "page": -1}),
        '{"thought": "x", "tool": "archival_memory_search", "arguments": {"query": "q", '
        '"limit": 05}, "request_heartbeat": false}',
        reply("archival_memory_search", {"limit": 5, "query": "q"}),  # property order
        reply("archival_memory_insert", {"content": "c", "tags": "a"}),
        reply("archival_memory_insert", {"content": "c", "tags": [1]}),
        reply("send_message", {"message": "x"}) + "\n",
        " " + reply("send_message", {"message": "x"}),
    ],
)
def test_grammar_rejects(reply_regex, text: str) -> None:
    assert not reply_regex.fullmatch(text), text


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        (1, 50),
        (0, None),
        (5, None),
        (10, None),
        (37, None),
        (-20, 20),
        (-1000, -7),
        (None, 9),
        (None, -3),
        (None, None),
        (0, 0),
        (7, 7),
        (0, 9),
        (0, 10),
        (99, 100),
        (123, 4567),
        (100, 999),
        (-5, None),
        (1, 1000),
    ],
)
def test_integer_ranges_are_exact(lo, hi) -> None:
    schema = {"type": "integer"}
    if lo is not None:
        schema["minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    rx = gbnf_to_regex(schema_to_gbnf(schema))
    window = range(-1200, 5000)
    for n in window:
        expected = (lo is None or n >= lo) and (hi is None or n <= hi)
        assert bool(rx.fullmatch(str(n))) == expected, (lo, hi, n)
    for bad in ("-0", "00", "01", "+1", "1.0", ""):
        assert not rx.fullmatch(bad), bad
    if hi is None:
        assert rx.fullmatch("9" * 16) and not rx.fullmatch("9" * 17)


def test_exclusive_bounds_and_float_bounds() -> None:
    rx = gbnf_to_regex(
        schema_to_gbnf({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10})
    )
    assert [n for n in range(-5, 15) if rx.fullmatch(str(n))] == list(range(1, 10))
    rx = gbnf_to_regex(schema_to_gbnf({"type": "integer", "minimum": 0.5, "maximum": 3.5}))
    assert [n for n in range(-5, 15) if rx.fullmatch(str(n))] == [1, 2, 3]
    with pytest.raises(ValueError, match="empty integer range"):
        schema_to_gbnf({"type": "integer", "minimum": 5, "maximum": 4})


def test_type_lists_keep_their_constraints() -> None:
    rx = gbnf_to_regex(schema_to_gbnf({"type": ["string", "null"], "maxLength": 3}))
    assert rx.fullmatch('"abc"') and rx.fullmatch("null")
    assert not rx.fullmatch('"abcd"')
    rx = gbnf_to_regex(
        schema_to_gbnf({"type": ["array", "null"], "items": {"type": "integer"}, "maxItems": 2})
    )
    assert rx.fullmatch("[1, 2]") and rx.fullmatch("null") and rx.fullmatch("[]")
    assert not rx.fullmatch("[1, 2, 3]") and not rx.fullmatch('["a"]')


def test_strings_arrays_enums_consts() -> None:
    rx = gbnf_to_regex(schema_to_gbnf({"type": "string", "minLength": 2, "maxLength": 4}))
    assert [s for s in ("", "a", "ab", "abcd", "abcde") if rx.fullmatch(json.dumps(s))] == [
        "ab",
        "abcd",
    ]
    rx = gbnf_to_regex(
        schema_to_gbnf(
            {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3}
        )
    )
    assert [n for n in range(5) if rx.fullmatch(json.dumps([True] * n))] == [1, 2, 3]
    rx = gbnf_to_regex(schema_to_gbnf({"enum": ["a b", 3, None, True]}))
    assert all(rx.fullmatch(t) for t in ('"a b"', "3", "null", "true"))
    assert not rx.fullmatch('"a"')
    rx = gbnf_to_regex(schema_to_gbnf({"const": {"k": [1, "x"]}}))
    assert rx.fullmatch('{"k":[1,"x"]}')
    rx = gbnf_to_regex(schema_to_gbnf({"type": "number"}))
    assert all(rx.fullmatch(t) for t in ("0", "-1.5", "3e10", "2.25E-3"))
    assert not rx.fullmatch("NaN") and not rx.fullmatch("1.")


def test_all_optional_properties() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "integer"},
            "c": {"type": "integer"},
        },
    }
    rx = gbnf_to_regex(schema_to_gbnf(schema))
    for text in ("{}", '{"a": 1}', '{"b": 1}', '{"a": 1, "c": 3}', '{"a": 1, "b": 2, "c": 3}'):
        assert rx.fullmatch(text), text
    for text in ('{"b": 1, "a": 2}', '{, "a": 1}', '{"a": 1,}', '{"a": 1 "b": 2}'):
        assert not rx.fullmatch(text), text


# -- failing loudly -----------------------------------------------------------------------------


def _tool(props: dict, **extra) -> list[ToolSpec]:
    return [ToolSpec("weird_tool", "d", {"type": "object", "properties": props, **extra})]


@pytest.mark.parametrize(
    ("props", "extra", "fragment"),
    [
        ({"s": {"type": "string", "pattern": "^a+$"}}, {}, "'pattern'"),
        ({"s": {"type": "string", "format": "email"}}, {}, "'format'"),
        ({"n": {"type": "number", "minimum": 0}}, {}, "'minimum'"),
        ({"n": {"type": "integer", "multipleOf": 5}}, {}, "'multipleOf'"),
        (
            {"a": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}},
            {},
            "'uniqueItems'",
        ),
        ({"a": {"type": "array"}}, {}, "needs 'items'"),
        ({"a": {"type": "array", "items": [{"type": "string"}]}}, {}, "tuple-form"),
        (
            {
                "a": {
                    "type": "array",
                    "prefixItems": [{"type": "string"}],
                    "items": {"type": "string"},
                }
            },
            {},
            "'prefixItems'",
        ),
        ({"x": {}}, {}, "empty schema"),
        ({"x": {"description": "anything"}}, {}, "empty schema"),
        ({"x": {"not": {"type": "string"}}}, {}, "without a 'type'"),
        ({"x": {"allOf": [{"type": "string"}]}}, {}, "without a 'type'"),
        ({"x": {"type": "object", "additionalProperties": True}}, {}, "additionalProperties"),
        (
            {"x": {"type": "object", "additionalProperties": {"type": "string"}}},
            {},
            "additionalProperties",
        ),
        ({"x": {"type": "object", "properties": {}, "minProperties": 1}}, {}, "'minProperties'"),
        ({"x": {"type": "string"}}, {"additionalProperties": True}, "additionalProperties"),
        ({"x": {"type": "string"}}, {"required": ["y"]}, "not defined"),
        ({"x": {"type": "date"}}, {}, "unsupported type 'date'"),
        ({"x": {"type": "string", "anyOf": [{"maxLength": 3}]}}, {}, "'type'"),
        ({"x": {"type": "string", "if": {}, "then": {}}}, {}, "'if'"),
        ({"x": {"enum": []}}, {}, "non-empty"),
        ({"x": {"type": "integer", "enum": ["a"]}}, {}, "does not have type"),
        ({"x": {"type": "integer", "const": 1.5}}, {}, "does not have type"),
        ({"x": {"$ref": "https://example.com/s.json"}}, {}, "local"),
    ],
)
def test_unsupported_constructs_fail_loudly(props, extra, fragment) -> None:
    with pytest.raises(ValueError) as info:
        compile_grammar(reply_schema(_tool(props, **extra)))
    message = str(info.value)
    assert fragment in message
    assert "weird_tool" in message


def test_llama_cpp_python_converter_would_have_dropped_constraints() -> None:
    """Why engine.llm.grammar has its own converter: llama-cpp-python 0.3.36's silently ignores
    integer bounds (and type lists lose items). If this starts failing, the library improved."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    bounded = json_schema_to_gbnf(json.dumps({"type": "integer", "minimum": 1, "maximum": 50}))
    plain = json_schema_to_gbnf(json.dumps({"type": "integer"}))
    assert bounded == plain
    typed = json_schema_to_gbnf(
        json.dumps({"type": ["array", "null"], "items": {"type": "integer"}})
    )
    assert "integer" not in typed


# -- compile_grammar ----------------------------------------------------------------------------


def test_compile_grammar_is_cached_and_names_every_tool(tools) -> None:
    from llama_cpp import LlamaGrammar

    schema = reply_schema(tools)
    first = compile_grammar(schema)
    assert isinstance(first, LlamaGrammar)
    shuffled = json.loads(json.dumps(schema, sort_keys=True))  # same schema, other key order
    assert compile_grammar(shuffled) is first
    for tool in tools:
        assert f'"\\"{tool.name}\\""' in first._grammar
    assert compile_grammar(reply_schema(tools[:2])) is not first


def test_compile_grammar_refuses_a_grammar_missing_a_tool(monkeypatch, tools) -> None:
    from collections import OrderedDict

    monkeypatch.setattr(g, "_CACHE", OrderedDict())
    monkeypatch.setattr(g, "schema_to_gbnf", lambda schema: 'root ::= "{}"\n')
    with pytest.raises(ValueError, match="does not mention tool 'send_message'"):
        compile_grammar(reply_schema(tools))


def test_llama_cpp_parses_the_grammar(chat_model_path, tools) -> None:
    """llama.cpp's own GBNF parser accepts what we generate (vocab-only load: fast)."""
    import llama_cpp

    from engine.llm.llama import route_native_log

    route_native_log()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(chat_model_path).encode(), params)
    assert model
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        schemas = [
            reply_schema(tools),
            {"type": "integer", "minimum": -20, "maximum": 4567},
            {"type": ["string", "null"], "minLength": 1, "maxLength": 2},
            {"enum": ["a\nb", 'q"uote', "back\\slash", "ü"]},
        ]
        for schema in schemas:
            text = schema_to_gbnf(schema)
            sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode(), b"root")
            assert sampler, text
            llama_cpp.llama_sampler_free(sampler)
        broken = llama_cpp.llama_sampler_init_grammar(vocab, b"root ::= (", b"root")
        assert not broken
    finally:
        llama_cpp.llama_model_free(model)


# -- descriptions -------------------------------------------------------------------------------


def test_render_tool_descriptions(tools) -> None:
    text = render_tool_descriptions(tools)
    lines = text.splitlines()
    assert lines[0] == (
        "send_message(message): Send a message to the user. This is the only way the user sees anything."
    )
    assert len(lines) == len(tools)
    assert any(
        line.startswith("archival_memory_search(query, limit=5, page=0): ") for line in lines
    )
    assert any(line.startswith("archival_memory_insert(content, tags=null): ") for line in lines)
    noop = render_tool_descriptions([ToolSpec("noop", "Nothing.", {"type": "object"})])
    assert noop == "noop(): Nothing."
