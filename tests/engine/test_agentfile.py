"""Agent files: export an agent to one JSON file and import it into another database, whole;
never overwriting; Letta's .af where it maps."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from engine import MemGPTAgent, Persona
from engine.agentfile import (
    FORMAT_VERSION,
    AgentExists,
    AgentFileError,
    ImportStopped,
    export_agent,
    import_agent,
)
from engine.llm.scripted import ScriptedClient, call
from engine.store.db import open_store

LETTA_FILE = Path(__file__).parent / "data" / "letta_memgpt_agent.af"


@pytest.fixture
def other_store(tmp_path, embedder):
    db = open_store(tmp_path / "other.db", embedder=embedder)
    yield db
    db.close()


def lived_in_agent(store) -> MemGPTAgent:
    """An agent with something in every tier: edits with history, a page of conversation, a
    summary, passages (one holding part of a message), facts with an ended one."""
    llm = ScriptedClient(
        [
            call("core_memory_append", heartbeat=True, section="human", content="Name: Ada."),
            call("send_message", message="Hello Ada!"),
            call("archival_memory_insert", heartbeat=True, content="Ada's cat is called Tom."),
            call("send_message", message="Noted the cat."),
        ]
    )
    agent = MemGPTAgent(Persona("Sam", "helpful", ["calm"]), store, llm, name="sam")
    agent.step("Hi, I'm Ada.")
    agent.step("My cat is Tom.")
    agent.graph.insert("Ada", "works_at", "Initech", "2025-01-01")
    agent.graph.insert("Ada", "works_at", "Acme", "2026-03-01")
    agent.graph.insert("Ada", "likes", "chess", exclusive=False)
    agent.summaries.add("Ada said hello.", 1, 2, "scripted")
    agent.archival.insert_message_parts(1, "a long message " * 10)
    agent.undo_core_memory("human")
    agent.edit_core_memory("human", "Name: Ada Lovelace.")
    return agent


def test_an_agent_moves_to_another_database_whole(store, other_store, tmp_path) -> None:
    agent = lived_in_agent(store)
    path = tmp_path / "sam.json"
    document = export_agent(store, "sam", path)
    assert document["version"] == FORMAT_VERSION and path.exists()

    [report] = import_agent(other_store, path)
    assert (report.name, report.reembedded) == ("sam", 0)  # same embedder: vectors reused
    moved = MemGPTAgent(None, other_store, ScriptedClient(), name="sam")
    assert moved.persona == agent.persona
    assert moved.core_memory == agent.core_memory
    assert [(e.before, e.after, e.actor, e.undone) for e in moved.memory.history("human")] == [
        (e.before, e.after, e.actor, e.undone) for e in agent.memory.history("human")
    ]
    old, new = agent.recall.all(), moved.recall.all()
    assert [(m.role, m.content, m.created_at, m.in_context) for m in new] == [
        (m.role, m.content, m.created_at, m.in_context) for m in old
    ]
    assert [s.text for s in moved.summaries.all()] == ["Ada said hello."]
    assert moved.summaries.all()[0].first_message_id == new[0].id
    assert sorted(p.text for p in moved.archival.recent(50)) == sorted(
        p.text for p in agent.archival.recent(50)
    )
    assert moved.archival.has_message_parts(new[0].id)  # renumbered with its message
    assert [f.render() for f in moved.graph.all()] == [f.render() for f in agent.graph.all()]
    # the searches work on what came over: text, meaning and time
    assert "Tom" in moved.tools.archival_memory_search("what is the cat's name")
    assert "Hi, I'm Ada" in moved.tools.conversation_search("greeting from Ada")
    assert "Initech" in moved.tools.graph_search("Ada", at="2025-06")
    # the export of the import is the export, ids and times of export aside
    again = export_agent(other_store, "sam")
    for key in ("blocks", "facts"):
        assert _without_ids(again[key]) == _without_ids(document[key])


def _without_ids(items: list[dict]) -> list[dict]:
    return [{k: v for k, v in item.items() if k not in ("id", "ended_by")} for item in items]


def test_an_import_never_overwrites_an_agent(store, tmp_path) -> None:
    lived_in_agent(store)
    path = tmp_path / "sam.json"
    export_agent(store, "sam", path)
    before = store.query_one("SELECT count(*) FROM messages")[0]
    with pytest.raises(AgentExists, match="already an agent called 'sam'"):
        import_agent(store, path)
    assert store.query_one("SELECT count(*) FROM messages")[0] == before
    [report] = import_agent(store, path, name="sam (copy)")
    copy = MemGPTAgent(None, store, ScriptedClient(), name="sam (copy)")
    assert copy.core_memory["human"] == "Name: Ada Lovelace."
    assert len(copy.recall.all()) == report.messages
    # the two are separate: an edit of one is not in the other
    copy.edit_core_memory("human", "changed")
    assert MemGPTAgent(None, store, ScriptedClient(), name="sam").core_memory["human"] != "changed"


def test_vectors_of_another_embedding_model_are_made_again(store, other_store, tmp_path) -> None:
    lived_in_agent(store)
    document = export_agent(store, "sam")
    for passage in document["passages"]:
        passage["embedding_model"] = "some-other-model"
    document["message_embedding_model"] = "some-other-model"
    [report] = import_agent(other_store, document)
    readable = [m for m in document["messages"] if m["role"] in ("user", "assistant")]
    assert report.reembedded == len(document["passages"]) + len(readable)
    moved = MemGPTAgent(None, other_store, ScriptedClient(), name="sam")
    assert "Tom" in moved.tools.archival_memory_search("what is the cat's name")


def test_a_newer_or_damaged_file_is_refused_and_nothing_is_imported(store, tmp_path) -> None:
    lived_in_agent(store)
    document = export_agent(store, "sam")
    newer = dict(document, version=FORMAT_VERSION + 1)
    with pytest.raises(AgentFileError, match="made by a newer Memex"):
        import_agent(store, newer, name="x")
    damaged = json.loads(json.dumps(document))
    damaged["messages"][-1].pop("role")
    with pytest.raises(AgentFileError, match="messages.9.role: Field required"):
        import_agent(store, damaged, name="y")
    assert [r[0] for r in store.query("SELECT name FROM agents")] == ["sam"]
    for text, message in [
        ("not json {", "it is not JSON"),
        ('{"hello": 1}', "neither a Memex agent file nor a Letta agent file"),
    ]:
        path = tmp_path / "bad.json"
        path.write_text(text)
        with pytest.raises(AgentFileError, match=message):
            import_agent(store, path)
    with pytest.raises(AgentFileError, match="there is no file"):
        import_agent(store, tmp_path / "missing.json")
    picture = tmp_path / "photo.json"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n\xf4\x00\xff" * 10)  # not text at all
    with pytest.raises(
        AgentFileError, match="photo.json is not an agent file: it is not text"
    ) as e:
        import_agent(store, picture)
    assert "codec" not in str(e.value) and "0x" not in str(e.value)


def test_a_failed_write_leaves_no_half_file(store, tmp_path) -> None:
    lived_in_agent(store)
    with pytest.raises(AgentFileError, match="could not write"):
        export_agent(store, "sam", tmp_path / "no-such-folder" / "sam.json")
    assert not list(tmp_path.glob("**/*.part"))


def test_a_letta_agent_file_imports_where_it_maps(store) -> None:
    [report] = import_agent(store, LETTA_FILE)
    agent = MemGPTAgent(None, store, ScriptedClient(), name=report.name)
    assert {"persona", "human"} <= set(agent.core_memory)
    assert agent.core_memory["human"].startswith("\nThis is what I know so far about the user")
    assert agent.persona.description.startswith("\nThe following is a starter persona")
    messages = agent.recall.all()
    assert len(messages) == report.messages > 0
    first_user = next(m for m in messages if m.role == "user")
    assert first_user.content.startswith("hi my name is actually sarah")
    assert "sarah" in agent.tools.conversation_search("what is my name").lower()
    assert any("tool" in note.lower() for note in report.notes)  # what did not map is said
    with pytest.raises(AgentExists):
        import_agent(store, LETTA_FILE)


def test_a_letta_agent_answers_through_the_loop(store) -> None:
    [report] = import_agent(store, LETTA_FILE, name="from letta")
    llm = ScriptedClient([call("send_message", message="Hi Sarah.")])
    agent = MemGPTAgent(None, store, llm, name="from letta")
    result = agent.step("Do you remember me?")
    assert result.message == "Hi Sarah."
    prompt = llm.history[-1]
    assert prompt[0].role == "system" and agent.core_memory["persona"][:40] in prompt[0].content
    assert [m.content for m in prompt if m.role == "user"][-1] == "Do you remember me?"


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        (("agent", "created_at"), "yesterday", "agent.created_at"),
        (("messages", 0, "created_at"), "soon", "messages.0.created_at"),
        (("passages", 0, "created_at"), 5, "passages.0.created_at"),
        (("facts", 0, "valid_from"), "March", "facts.0.valid_from"),
        (("messages", 1, "tool_call"), "not a call", "messages.1.tool_call"),
        (("messages", 1, "tool_call"), {"tool": 5}, "messages.1.tool_call"),
        (("blocks", 0, "label"), "bad label> <x", "blocks.0.label"),
        (("blocks", 0, "limit"), 10**30, "blocks.0.limit"),
        (("messages", 0, "token_count"), 10**30, "messages.0.token_count"),
        (("facts", 0, "subject"), "   ", "facts.0.subject"),
        (("version",), True, "version"),
    ],
)
def test_a_hand_edited_file_is_checked_before_anything_is_stored(
    store, other_store, where, value, problem
) -> None:
    lived_in_agent(store)
    document = json.loads(json.dumps(export_agent(store, "sam")))
    target = document
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    with pytest.raises(AgentFileError, match=problem.split(".")[0]):
        import_agent(other_store, document)
    assert other_store.query("SELECT count(*) FROM agents")[0][0] == 0
    assert other_store.query("SELECT count(*) FROM messages")[0][0] == 0


def test_times_with_a_zone_are_stored_as_utc_and_relations_normalised(store, other_store):
    lived_in_agent(store)
    document = json.loads(json.dumps(export_agent(store, "sam")))
    document["messages"][0]["created_at"] = "2025-01-01T23:30:00-05:00"
    document["facts"][0]["relation"] = "Works At"
    import_agent(other_store, document)
    moved = MemGPTAgent(None, other_store, ScriptedClient(), name="sam")
    assert moved.recall.all()[0].created_at.isoformat() == "2025-01-02T04:30:00+00:00"
    assert "2025-01-02" in moved.tools.conversation_search_date("2025-01-02", "2025-01-02")
    assert moved.graph.search("Ada", relation="works at")


def test_text_that_is_not_unicode_is_refused(store, other_store) -> None:
    lived_in_agent(store)
    document = export_agent(store, "sam")
    document["messages"][0]["content"] = "bad \ud800 text"
    with pytest.raises(AgentFileError, match="not valid Unicode"):
        import_agent(other_store, document)


def test_export_never_writes_over_the_memory_file(store) -> None:
    lived_in_agent(store)
    with pytest.raises(AgentFileError, match="memory file this Memex has open"):
        export_agent(store, "sam", store.path)
    assert store.query("SELECT count(*) FROM agents")[0][0] == 1


def test_a_letta_file_with_two_agents_of_one_name_imports_both_numbered(store) -> None:
    from tests.engine.test_agentfile_letta import multi_agent_doc

    document = multi_agent_doc()
    document["agents"] = [document["agents"][0], json.loads(json.dumps(document["agents"][0]))]
    for agent in document["agents"]:
        agent["name"] = "twin"
    MemGPTAgent(Persona("T", "t"), store, ScriptedClient(), name="twin")  # taken already
    reports = import_agent(store, document)
    assert [r.name for r in reports] == ["twin (2)", "twin (3)"]
    assert all("is imported as" in r.notes[0] for r in reports)


def a_long_document(store) -> dict:
    """An exported agent with 100 messages more, their vectors to be made again on import."""
    agent = lived_in_agent(store)
    for i in range(100):
        agent.add_user_message(f"Note {i}: the weather was fine.")
    document = export_agent(store, "sam")
    document["message_embedding_model"] = "some-other-model"
    return document


def test_a_long_import_says_how_far_it_is(store, other_store) -> None:
    document = a_long_document(store)
    heard: list[tuple[int, int]] = []
    import_agent(other_store, document, on_progress=lambda done, total: heard.append((done, total)))
    items = sum(len(document[part]) for part in ("messages", "passages", "facts"))
    assert len(heard) >= 4 and all(total == items for _, total in heard)
    assert [done for done, _ in heard] == sorted(done for done, _ in heard)
    assert heard[-1] == (items, items)


def test_a_stopped_import_imports_nothing(store, other_store) -> None:
    document = a_long_document(store)
    stop = threading.Event()

    def halfway(done: int, total: int) -> None:
        if done >= total // 2:
            stop.set()  # the user's Cancel, from another thread in the app

    with pytest.raises(ImportStopped, match="nothing was imported"):
        import_agent(other_store, document, on_progress=halfway, stop=stop)
    assert other_store.query("SELECT name FROM agents") == []
    assert other_store.query("SELECT count(*) FROM messages") == [(0,)]
    [report] = import_agent(other_store, document)  # and it can be imported after
    assert report.messages == len(document["messages"])


def test_a_letta_import_says_how_far_it_is_and_can_be_stopped(store) -> None:
    heard: list[tuple[int, int]] = []
    stop = threading.Event()
    stop.set()
    with pytest.raises(ImportStopped):
        import_agent(store, LETTA_FILE, stop=stop)
    assert store.query("SELECT count(*) FROM agents") == [(0,)]
    import_agent(store, LETTA_FILE, on_progress=lambda d, t: heard.append((d, t)))
    assert heard and heard[-1][0] == heard[-1][1] > 0
