"""Shared core memory: one block attached to several agents; an edit by one is in the others'
next prompt, and the history says whose edit it was."""

from __future__ import annotations

import pytest

from engine import MemGPTAgent, Persona
from engine.agents import delete_agent
from engine.llm.scripted import ScriptedClient
from engine.memory.core import BlockTemplate, CoreMemoryError, create_block


def reply(tool: str, **arguments) -> dict:
    return {"tool": tool, "arguments": arguments, "request_heartbeat": False}


@pytest.fixture
def project(store):
    return create_block(store, BlockTemplate("project", "Launch: May 1.", "The shared project."))


def test_an_edit_by_one_agent_is_in_the_others_next_prompt(store, project) -> None:
    writer_llm = ScriptedClient(
        [
            reply(
                "core_memory_replace", section="project", old_content="May 1", new_content="June 3"
            ),
            reply("send_message", message="Moved."),
        ]
    )
    reader_llm = ScriptedClient([reply("send_message", message=f"ok {i}") for i in range(2)])
    writer = MemGPTAgent(
        Persona("W", "w"), store, writer_llm, name="writer", shared_blocks=[project]
    )
    reader = MemGPTAgent(
        Persona("R", "r"), store, reader_llm, name="reader", shared_blocks=[project]
    )
    reader.step("hello")  # the reader's prompt is rendered and cached before the edit
    assert "Launch: May 1." in reader_llm.history[-1][0].content
    writer.step("The launch moved to June 3.")
    reader.step("When is the launch?")
    system = reader_llm.history[-1][0].content
    assert "Launch: June 3." in system and "May 1" not in system
    assert "shared with writer" in system  # the model knows others see this section
    assert reader.core_memory["project"] == "Launch: June 3."
    edits = reader.memory.history("project")
    assert [(e.agent, e.actor) for e in edits] == [("writer", "tool:core_memory_replace")]
    assert reader.memory.block("project").shared_with == ("writer",)


def test_a_new_agent_takes_a_shared_block_in_place_of_its_default(store) -> None:
    first = MemGPTAgent(Persona("A", "a"), store, ScriptedClient(), name="a")
    first.memory.append("human", "Name: Ada.", actor="user")
    human = first.memory.block("human")
    second = MemGPTAgent(
        Persona("B", "b"), store, ScriptedClient(), name="b", shared_blocks=[human]
    )
    assert second.core_memory["human"] == "Name: Ada."
    assert list(second.core_memory) == ["persona", "system", "human"]
    # reopening with the same shared block is a no-op; by id works too
    again = MemGPTAgent(None, store, ScriptedClient(), name="b", shared_blocks=[human.id])
    assert again.memory.block("human").id == human.id


def test_an_existing_own_block_is_never_replaced_silently(store) -> None:
    first = MemGPTAgent(Persona("A", "a"), store, ScriptedClient(), name="a")
    MemGPTAgent(Persona("B", "b"), store, ScriptedClient(), name="b")
    human = first.memory.block("human")
    with pytest.raises(CoreMemoryError, match="already has its own 'human' section"):
        MemGPTAgent(None, store, ScriptedClient(), name="b", shared_blocks=[human])
    with pytest.raises(CoreMemoryError, match="no block 999"):
        MemGPTAgent(None, store, ScriptedClient(), name="c", shared_blocks=[999])
    assert [r[0] for r in store.query("SELECT name FROM agents ORDER BY id")] == ["a", "b"]


def test_deleting_one_agent_keeps_the_block_for_the_others(store, project) -> None:
    MemGPTAgent(Persona("A", "a"), store, ScriptedClient(), name="a", shared_blocks=[project])
    b = MemGPTAgent(Persona("B", "b"), store, ScriptedClient(), name="b", shared_blocks=[project])
    delete_agent(store, "a")
    assert b.core_memory["project"] == "Launch: May 1."
    assert b.memory.block("project").shared_with == ()


def test_the_prompt_follows_when_a_sharing_agent_goes_or_is_renamed(store, project) -> None:
    llm = ScriptedClient([reply("send_message", message=f"ok {i}") for i in range(3)])
    a = MemGPTAgent(Persona("A", "a"), store, llm, name="a", shared_blocks=[project])
    MemGPTAgent(Persona("B", "b"), store, ScriptedClient(), name="bobby", shared_blocks=[project])
    a.step("hi")
    assert "shared with bobby" in llm.history[-1][0].content
    from engine.agents import rename_agent

    rename_agent(store, "bobby", "rob")
    a.step("hi")
    assert "shared with rob" in llm.history[-1][0].content
    delete_agent(store, "rob")
    a.step("hi")
    assert "shared with" not in llm.history[-1][0].content
