"""What a step reports while it runs (on_event), stopping a step, and the transcript a person
reads afterwards: scripted client, real store."""

from __future__ import annotations

import threading

from engine import MemGPTAgent, Persona
from engine.agent import STOPPED_NOTE
from engine.llm.scripted import ScriptedClient, call
from engine.transcript import transcript
from engine.types import (
    PHASE_READING_MEMORY,
    PHASE_SEARCHING,
    PHASE_WRITING,
    ModelCallStarted,
    PagedOut,
    ReplyDelta,
    ToolDone,
    Working,
)

PERSONA = Persona(name="Sam", description="A helpful assistant")


def make_agent(store, client: ScriptedClient) -> MemGPTAgent:
    return MemGPTAgent(PERSONA, store, client, name="sam")


def test_events_follow_the_step(store) -> None:
    client = ScriptedClient(
        [
            call("core_memory_append", heartbeat=True, section="human", content="Likes tea"),
            call("send_message", message="Tea it is."),
        ]
    )
    agent = make_agent(store, client)
    events: list[object] = []
    result = agent.step("I like tea", on_event=events.append)
    assert events[0] == Working(PHASE_SEARCHING)
    events = [e for e in events if not isinstance(e, Working)]
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "ModelCallStarted" and kinds[1] == "ToolDone"
    first_done = events[1]
    assert isinstance(first_done, ToolDone) and first_done.index == 0
    assert first_done.operation is not None
    assert first_done.operation.summary == "saved to core memory (human): Likes tea"
    assert ModelCallStarted(1) in events
    deltas = [e for e in events if isinstance(e, ReplyDelta)]
    assert all(d.index == 1 for d in deltas) and "".join(d.text for d in deltas) == "Tea it is."
    assert isinstance(events[-1], ToolDone) and events[-1].call.name == "send_message"
    assert result.message == "Tea it is." and not result.cancelled


def test_each_phase_is_told_as_it_begins(store) -> None:
    """A waiting user is told what the step does: searching memory, reading what it found
    (for a question), the model reading its prompt (ModelCallStarted), then writing (its first
    token), before the reply's first words."""
    client = ScriptedClient([call("send_message", message="Tea, I think.")])
    agent = make_agent(store, client)
    agent.step("I like tea, remember that")  # something for the question's search to find
    client.enqueue([call("send_message", message="You like tea.")])
    events: list[object] = []
    agent.step("What do I like to drink?", on_event=events.append)
    told = [e for e in events if isinstance(e, Working | ModelCallStarted)]
    first_words = next(i for i, e in enumerate(events) if isinstance(e, ReplyDelta))
    # the scripted reader finds nothing, so the model answers
    assert told == [
        Working(PHASE_SEARCHING),
        Working(PHASE_READING_MEMORY),
        ModelCallStarted(0),
        Working(PHASE_WRITING),
    ]
    assert events.index(Working(PHASE_WRITING)) < first_words


def test_a_message_that_asks_nothing_is_not_read(store) -> None:
    client = ScriptedClient([call("send_message", message="Noted.")])
    agent = make_agent(store, client)
    events: list[object] = []
    agent.step("I like tea", on_event=events.append)
    assert Working(PHASE_READING_MEMORY) not in events
    assert events.index(Working(PHASE_WRITING)) < events.index(
        next(e for e in events if isinstance(e, ReplyDelta))
    )


def test_cancel_stops_the_reply_and_keeps_the_users_message(store) -> None:
    client = ScriptedClient(piece_chars=1)
    client.enqueue([call("send_message", message="x" * 500), call("send_message", message="ok")])
    agent = make_agent(store, client)

    def stop_after_a_few(event: object) -> None:
        if isinstance(event, ReplyDelta) and len(event.text) and stop_after_a_few.n == 3:
            agent.cancel()
        stop_after_a_few.n += isinstance(event, ReplyDelta)

    stop_after_a_few.n = 0
    result = agent.step("write a lot", on_event=stop_after_a_few)
    assert result.cancelled and result.message is None
    stored = agent.recall.all()
    assert [m.role for m in stored] == ["user", "system"]
    assert stored[0].content == "write a lot" and stored[1].content == STOPPED_NOTE
    # the next step runs normally and the model sees that it was stopped
    assert agent.step("short please").message == "ok"
    assert any(m.content == STOPPED_NOTE for m in client.history[-1])


def test_cancel_from_another_thread(store) -> None:
    client = ScriptedClient(piece_chars=1, piece_delay=0.005)
    client.enqueue([call("send_message", message="y" * 2000)])
    agent = make_agent(store, client)
    started = threading.Event()
    timer = threading.Thread(target=lambda: started.wait(5) and agent.cancel())
    timer.start()
    result = agent.step(
        "go", on_event=lambda e: started.set() if isinstance(e, ReplyDelta) else None
    )
    timer.join()
    assert result.cancelled


def test_page_out_is_reported_with_its_summary(store) -> None:
    client = ScriptedClient(n_ctx=2048)
    agent = make_agent(store, client)
    outs: list[PagedOut] = []
    for turn in range(30):
        client.enqueue([call("send_message", message=f"reply {turn} " + "fine " * 20)])
        agent.step(
            f"turn {turn} " + "words " * 80,
            on_event=lambda e: outs.append(e) if isinstance(e, PagedOut) else None,
        )
        if outs:
            break
    (out,) = outs
    assert out.count > 0 and out.first_message_id <= out.last_message_id
    assert out.summary and "turn 0" in out.summary
    assert agent.summaries.latest().last_message_id == out.last_message_id


def test_transcript_reads_like_the_conversation(store) -> None:
    client = ScriptedClient(
        [
            "not json at all",
            call("archival_memory_search", heartbeat=True, query="tea"),
            call("send_message", message="Nothing saved about tea yet."),
            call("archival_memory_insert", content="likes green tea"),
        ]
    )
    agent = make_agent(store, client)
    agent.step("What do you know about tea?")
    agent.heartbeat()
    page = transcript(agent.recall, agent.summaries)
    entries = page.entries
    assert not page.has_earlier and page.first_message_id == agent.recall.all()[0].id
    assert [(e.kind, e.ok) for e in entries] == [
        ("user", True),
        ("operation", False),
        ("operation", True),
        ("assistant", True),
        ("heartbeat", True),
        ("operation", True),
    ]
    assert entries[0].text == "What do you know about tea?"
    assert entries[1].text == "a reply the engine could not read"
    assert entries[2].text == "searched archival for 'tea': 0 results"
    assert entries[3].text == "Nothing saved about tea yet."
    assert entries[5].text == "saved to archival memory: likes green tea"
    assert "Saved to archival memory as passage" in entries[5].detail
    # a window of the newest entries
    newest = transcript(agent.recall, agent.summaries, limit=3)
    assert [e.kind for e in newest.entries] == ["heartbeat", "operation"]
    assert newest.has_earlier
    older = transcript(agent.recall, agent.summaries, limit=100, before_id=newest.first_message_id)
    assert [e.kind for e in older.entries] == [e.kind for e in entries[:4]]
    assert not older.has_earlier


def test_a_step_stopped_before_it_starts_stores_the_message_and_calls_no_model(store) -> None:
    client = ScriptedClient([call("send_message", message="never sent")])
    agent = make_agent(store, client)
    stop = threading.Event()
    stop.set()
    result = agent.step("hello?", cancel=stop)
    assert result.cancelled and result.steps == 0 and client.history == []
    assert [m.role for m in agent.recall.all()] == ["user", "system"]
    assert agent.step("again").message == "never sent"  # a new step is not stopped


def test_add_user_message_stores_without_a_model_call(store) -> None:
    client = ScriptedClient([call("send_message", message="answering both")])
    agent = make_agent(store, client)
    agent.add_user_message("typed while a step ran")
    assert client.history == []
    agent.step("and this one")
    seen = [m.content for m in client.history[-1] if m.role == "user"]
    assert seen == ["typed while a step ran", "and this one"]
