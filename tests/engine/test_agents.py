"""Several agents in one file: list, rename, delete (with all their memory and index rows)."""

from __future__ import annotations

import pytest

from engine import MemGPTAgent, Persona
from engine.agents import delete_agent, list_agents, rename_agent
from engine.errors import InvalidInput
from engine.llm.scripted import ScriptedClient, call


def agent_with_memory(store, name: str) -> MemGPTAgent:
    client = ScriptedClient(
        [
            call("archival_memory_insert", heartbeat=True, content=f"{name} fact"),
            call("send_message", message=f"hello from {name}"),
        ]
    )
    agent = MemGPTAgent(Persona(name=name, description="test"), store, client, name=name)
    agent.step(f"hi {name}")
    return agent


def counts(store) -> dict[str, int]:
    tables = ["messages", "messages_fts", "message_vectors", "passages", "passage_vectors"]
    tables += ["blocks", "block_history", "summaries", "sessions", "agent_blocks"]
    return {t: store.query_one(f"SELECT count(*) FROM {t}")[0] for t in tables}


def test_list_rename_delete(store) -> None:
    agent_with_memory(store, "alpha")
    empty = counts(store)
    beta = agent_with_memory(store, "beta")
    assert [(a.name, a.messages) for a in list_agents(store)] == [("alpha", 5), ("beta", 5)]
    beta.rename("  gamma   ray ")
    assert beta.name == "gamma ray"
    assert [a.name for a in list_agents(store)] == ["alpha", "gamma ray"]
    with pytest.raises(InvalidInput, match="already an agent"):
        rename_agent(store, "alpha", "gamma ray")
    with pytest.raises(InvalidInput, match="needs a name"):
        rename_agent(store, "alpha", "   ")
    delete_agent(store, "gamma ray")
    assert [a.name for a in list_agents(store)] == ["alpha"]
    assert counts(store) == empty  # every row of beta's, index rows included, is gone
    passages_fts = store.query("SELECT rowid FROM passages_fts WHERE passages_fts MATCH 'beta'")
    assert passages_fts == []
    with pytest.raises(InvalidInput, match="no agent called"):
        delete_agent(store, "gamma ray")


def test_delete_keeps_a_block_another_agent_shares(store) -> None:
    alpha = agent_with_memory(store, "alpha")
    beta = agent_with_memory(store, "beta")
    shared = alpha.memory.block("human")
    beta.memory.attach_existing(shared.id, "team")
    delete_agent(store, "beta")
    assert alpha.memory.block("human").id == shared.id
