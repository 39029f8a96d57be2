"""engine.memory.reembed: vectors another embedding model made, made again by the store's own."""

from __future__ import annotations

from pathlib import Path

from engine import MemGPTAgent
from engine.llm.scripted import ScriptedClient
from engine.memory.archival import PASSAGE_INDEX
from engine.memory.recall import MESSAGE_INDEX
from engine.memory.reembed import reembed, reembed_all, stale_vectors
from engine.store.db import open_store
from engine.store.embed import Embedder

PASSAGES = [
    "Ingrid, my sister, is a vet in Stavanger.",
    "The boiler was serviced in March by Hallam Heating.",
    "Our allotment is plot 17B; broad beans go in first.",
]
MESSAGES = ["I adopted a ferret called Mortimer.", "My dentist is Dr Imogen Sallow now."]


def _nearest_passage(store, agent_id: int, query: str) -> list[int]:
    vector = store.embedder.embed_query(query)
    return PASSAGE_INDEX.vector_hits_for(store, agent_id, vector)


def test_another_models_vectors_are_left_out_of_search_until_made_again(
    tmp_path: Path, minilm: Embedder, embedder: Embedder
) -> None:
    path = tmp_path / "memex.db"
    store = open_store(path, embedder=minilm)
    agent = MemGPTAgent(None, store, ScriptedClient(), name="sam")
    passage_ids = agent.archival.insert_many(PASSAGES)
    message_ids = [agent.recall.add(agent.session_id, "user", m, 10).id for m in MESSAGES]
    agent_id = agent.agent_id
    assert stale_vectors(store) == 0  # all made by the model in use
    store.close()

    store = open_store(path, embedder=embedder)  # a new embedding model on the same file
    try:
        assert stale_vectors(store) == len(PASSAGES) + len(MESSAGES)
        # MiniLM's vectors mean nothing next to nomic-embed's query: none is compared
        assert _nearest_passage(store, agent_id, "What does my sister do?") == []
        assert MESSAGE_INDEX.vector_hits_for(store, agent_id, embedder.embed_query("pet")) == []
        # word search still finds them meanwhile
        assert passage_ids[1] in PASSAGE_INDEX.text_hits_for(store, agent_id, "boiler")

        done, progress = reembed(store, limit=2)  # a batch at a time, each its own transaction
        assert done == 2
        assert stale_vectors(store) == len(PASSAGES) + len(MESSAGES) - 2
        # the newest first, and the next batch starts below the last one
        assert progress.below[0] == message_ids[0]
        done, progress = reembed(store, limit=1, progress=progress)
        assert done == 1 and progress.below[1] == passage_ids[-1]
        reports: list[tuple[int, int]] = []
        assert reembed_all(store, lambda done, total: reports.append((done, total))) == 2
        assert reports[-1] == (2, 2) and stale_vectors(store) == 0
        assert reembed(store)[0] == 0  # nothing left: a no-op

        assert _nearest_passage(store, agent_id, "What does my sister do?")[0] == passage_ids[0]
        pet = MESSAGE_INDEX.vector_hits_for(store, agent_id, embedder.embed_query("my pet"))
        assert pet[0] == message_ids[0]
        models = store.query("SELECT DISTINCT embedding_model FROM passages")
        assert models == [("nomic-embed-text-v1.5",)]  # the passage's own record follows
        rows = store.query("SELECT DISTINCT model FROM message_vectors")
        assert rows == [("nomic-embed-text-v1.5",)]
    finally:
        store.close()
