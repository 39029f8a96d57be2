"""Core memory blocks: limits, errors that say how much room is left, history and undo, sharing."""

from __future__ import annotations

import pytest

from engine import MemGPTAgent, Persona
from engine.llm.scripted import ScriptedClient
from engine.memory.core import BlockTemplate, CoreMemory, CoreMemoryError


@pytest.fixture
def agent(store) -> MemGPTAgent:
    return MemGPTAgent(Persona("Sam", "helpful"), store, ScriptedClient(), name="sam")


def test_default_blocks(agent: MemGPTAgent) -> None:
    assert set(agent.core_memory) == {"persona", "human", "system"}
    assert "Sam" in agent.core_memory["persona"]


def test_append_and_replace(agent: MemGPTAgent) -> None:
    core = agent.memory
    core.append("human", "Name: Alice", actor="test")
    core.append("human", "Likes tea", actor="test")
    assert core["human"] == "Name: Alice\nLikes tea"
    core.replace("human", "tea", "coffee", actor="test")
    assert core["human"] == "Name: Alice\nLikes coffee"
    core.replace("human", "\nLikes coffee", "", actor="test")
    assert core["human"] == "Name: Alice"


def test_errors_name_the_problem(agent: MemGPTAgent) -> None:
    core = agent.memory
    core.append("human", "a b a", actor="t")
    with pytest.raises(CoreMemoryError, match="no core memory section 'nope'"):
        core.append("nope", "x", actor="t")
    with pytest.raises(CoreMemoryError, match="text not found"):
        core.replace("human", "zzz", "y", actor="t")
    with pytest.raises(CoreMemoryError, match="occurs 2 times"):
        core.replace("human", "a", "y", actor="t")
    with pytest.raises(CoreMemoryError, match="read-only"):
        core.append("system", "x", actor="tool:core_memory_append")


def test_nothing_over_the_limit_is_stored(agent: MemGPTAgent) -> None:
    core = agent.memory
    limit = core.block("human").limit
    core.append("human", "x" * (limit - 10), actor="t")
    with pytest.raises(CoreMemoryError, match="9 characters are free|10 characters are free"):
        core.append("human", "y" * 50, actor="t")
    assert len(core["human"]) == limit - 10


def test_history_and_undo(agent: MemGPTAgent) -> None:
    core = agent.memory
    assert not core.block("human").undoable  # a new block: nothing to undo
    core.append("human", "one", actor="tool:core_memory_append")
    assert core.block("human").undoable
    core.append("human", "two", actor="user")
    history = core.history("human")
    assert [(h.before, h.after, h.actor) for h in history] == [
        ("", "one", "tool:core_memory_append"),
        ("one", "one\ntwo", "user"),
    ]
    core.undo("human")
    assert core["human"] == "one"
    assert core.undo("human").value == "" and not core.block("human").undoable
    with pytest.raises(CoreMemoryError, match="nothing to undo"):
        core.undo("human")


def test_shared_block_is_seen_by_both_agents(store) -> None:
    a = MemGPTAgent(Persona("A", "a"), store, ScriptedClient(), name="a")
    b = MemGPTAgent(Persona("B", "b"), store, ScriptedClient(), name="b")
    shared = a.memory.attach(BlockTemplate("project", "Memex", "shared project notes"))
    b.memory.attach_existing(shared.id, "project")
    a.memory.append("project", "ships in May", actor="t")
    assert b.core_memory["project"] == "Memex\nships in May"
    assert isinstance(b.memory, CoreMemory)


def test_redo_takes_back_undos_in_turn_until_a_new_edit(agent: MemGPTAgent) -> None:
    core = agent.memory
    core.append("human", "one", actor="user")
    core.append("human", "two", actor="tool:core_memory_append")
    assert not core.block("human").redoable
    core.undo("human")
    core.undo("human")
    assert core["human"] == "" and core.block("human").redoable
    assert core.redo("human").value == "one"
    assert core.redo("human").value == "one\ntwo" and not core.block("human").redoable
    with pytest.raises(CoreMemoryError, match="nothing to redo"):
        core.redo("human")
    assert core.undo("human").value == "one"  # a redone edit can be undone again
    assert core.block("human").redoable
    core.append("human", "three", actor="user")  # a new edit: no redo past it
    assert not core.block("human").redoable
    with pytest.raises(CoreMemoryError, match="nothing to redo"):
        core.redo("human")
    assert [h.actor for h in core.history("human")][-3:] == ["redo:user", "undo:user", "user"]
