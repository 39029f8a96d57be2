"""Tool dispatch: validation errors go back as tool results; nothing raises; limits hold."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import MemGPTAgent, Persona
from engine.llm.scripted import ScriptedClient
from engine.tools.registry import tool_specs
from engine.types import ToolCall


@pytest.fixture
def agent(store) -> MemGPTAgent:
    return MemGPTAgent(Persona("Sam", "helpful"), store, ScriptedClient(), name="sam")


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (ToolCall("launch_rockets", {}), "unknown tool 'launch_rockets'"),
        (ToolCall("core_memory_append", {"section": "human"}), "content: Field required"),
        (
            ToolCall("core_memory_append", {"section": "human", "content": 5}),
            "content: Input should be a valid string",
        ),
        (
            ToolCall("core_memory_append", {"section": "human", "content": "x", "extra": 1}),
            "extra: Extra inputs",
        ),
        (
            ToolCall("archival_memory_search", {"query": "x", "limit": 0}),
            "limit: Input should be greater",
        ),
        (
            ToolCall(
                "conversation_search_date", {"start_date": "yesterday", "end_date": "2024-01-01"}
            ),
            "not a date",
        ),
        (
            ToolCall(
                "conversation_search_date", {"start_date": "2024-02-01", "end_date": "2024-01-01"}
            ),
            "before start_date",
        ),
        (
            ToolCall("core_memory_append", {"section": "nope", "content": "x"}),
            "no core memory section 'nope'",
        ),
        (ToolCall("send_message", {"message": "   "}), "message is empty"),
    ],
)
def test_bad_calls_become_tool_errors(agent: MemGPTAgent, call: ToolCall, expected: str) -> None:
    result = agent.tools.dispatch(call)
    assert not result.ok
    assert expected in result.content


def test_public_methods_return_strings_errors_included(agent: MemGPTAgent) -> None:
    assert agent.tools.core_memory_append("human", "Name: Alice").startswith("Appended")
    assert agent.core_memory["human"] == "Name: Alice"
    assert agent.tools.core_memory_replace("human", "Bob", "x").startswith("Error: text not found")
    assert "passage 1" in agent.tools.archival_memory_insert(
        "Alice recommends the requests library for HTTP", tags=["py"]
    )
    out = agent.tools.archival_memory_search("library recommendation", limit=5)
    assert out.startswith("Showing 1-1 of 1 passages") and "requests library" in out
    assert "[id 1," in out


def test_every_tool_schema_compiles_to_a_grammar() -> None:
    from engine.llm.grammar import compile_grammar, reply_schema

    names = [s.name for s in tool_specs()]
    assert names == [
        "send_message",
        "core_memory_append",
        "core_memory_replace",
        "archival_memory_insert",
        "archival_memory_search",
        "conversation_search",
        "conversation_search_date",
        "graph_insert",
        "graph_search",
        "memory_forget",
    ]
    assert compile_grammar(reply_schema(tool_specs())) is not None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from([s.name for s in tool_specs()] + ["nope"]),
    arguments=st.dictionaries(
        st.sampled_from(
            [
                "section",
                "content",
                "old_content",
                "new_content",
                "query",
                "limit",
                "page",
                "message",
                "tags",
                "start_date",
                "end_date",
                "zzz",
            ]
        ),
        _json,
        max_size=4,
    ),
)
def test_fuzzed_arguments_never_raise_and_never_break_limits(
    agent: MemGPTAgent, name, arguments
) -> None:
    result = agent.tools.dispatch(ToolCall(name, arguments))
    assert isinstance(result.content, str)
    for block in agent.memory.blocks():
        assert len(block.value) <= block.limit
