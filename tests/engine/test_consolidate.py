"""Idle consolidation: on heartbeat (or every N turns) the agent reviews the messages since its
last review and folds them into core memory, passages and facts, merging repeats."""

from __future__ import annotations

import threading

import pytest

from engine import MemGPTAgent, Persona
from engine.consolidate import REVIEW_SYSTEM
from engine.llm.scripted import ScriptedClient, call
from engine.transcript import transcript
from engine.types import ModelCallStarted, Reviewed, Reviewing

REVIEW_HEAD = REVIEW_SYSTEM.split("{")[0]


def review(core=(), passages=(), facts=()) -> dict:
    return {"core": list(core), "passages": list(passages), "facts": list(facts)}


def fact(subject, relation, obj, valid_from=None, exclusive=True) -> dict:
    return {
        "subject": subject,
        "relation": relation,
        "object": obj,
        "valid_from": valid_from,
        "exclusive": exclusive,
    }


def review_prompts(llm: ScriptedClient) -> list:
    return [p for p in llm.history if p[0].content.startswith(REVIEW_HEAD)]


def make_agent(store, reviews=(), replies=(), **kw) -> tuple[MemGPTAgent, ScriptedClient]:
    llm = ScriptedClient(replies, reviews=reviews, **kw.pop("llm_kw", {}))
    return MemGPTAgent(Persona("Sam", "helpful"), store, llm, name="sam", **kw), llm


def test_heartbeat_reviews_new_messages_into_every_tier(store) -> None:
    agent, llm = make_agent(
        store,
        reviews=[
            review(
                core=[{"section": "human", "line": "Name: Dana. Nurse at Mercy Hospital."}],
                passages=["Dana's sister Jo moved to Lyon."],
                facts=[fact("Dana", "works_at", "Mercy Hospital"), fact("Jo", "lives_in", "Lyon")],
            )
        ],
        replies=[
            call("send_message", message="Hi Dana!"),
            call("conversation_search", query="Dana"),  # each heartbeat's own turn
            call("conversation_search", query="Lyon"),
        ],
    )
    agent.step("Hi, I'm Dana, a nurse at Mercy Hospital. My sister Jo moved to Lyon.")
    events = []
    result = agent.heartbeat(on_event=events.append)
    [reviewed] = [e for e in events if isinstance(e, Reviewed)]
    assert reviewed.summary() == "messages 1-3: 4 changes"  # the user's, the call, its result
    assert events.index(reviewed) < next(  # before the heartbeat's own turn
        i for i, e in enumerate(events) if isinstance(e, ModelCallStarted)
    )
    assert agent.core_memory["human"] == "Name: Dana. Nurse at Mercy Hospital."
    [edit] = agent.memory.history("human")
    assert (edit.actor, edit.agent) == ("consolidation", "sam")  # in the history like any edit
    assert agent.archival.count() == 1
    assert {f.object for f in agent.graph.all()} == {"Mercy Hospital", "Lyon"}
    tools = [op.tool for op in result.memory_operations]
    assert tools[:4] == [
        "core_memory_append",
        "archival_memory_insert",
        "graph_insert",
        "graph_insert",
    ]
    # the review read the conversation, with memory as it stood
    [prompt] = review_prompts(llm)
    assert "User: Hi, I'm Dana" in prompt[1].content and "Sam: Hi Dana!" in prompt[1].content
    # the model and the transcript are told what changed
    note = [m for m in agent.recall.all() if m.content.startswith("[memory review]")]
    assert len(note) == 1 and "Mercy Hospital" in note[0].content
    [entry] = [e for e in transcript(agent.recall, agent.summaries).entries if "review" in e.text]
    assert (entry.kind, entry.text) == ("operation", "memory review of messages 1-3: 4 changes")
    assert "saved fact: Jo lives_in Lyon" in entry.detail
    # nothing new since: the next heartbeat makes no review call
    agent.heartbeat()
    assert len(review_prompts(llm)) == 1


def test_repeats_are_merged_not_piled_up(store) -> None:
    agent, llm = make_agent(store, replies=[call("send_message", message="ok")] * 2)
    agent.edit_core_memory("human", "Name: Dana.\nWorks as a nurse at Mercy Hospital.")
    agent.archival.insert("Jo moved to Lyon.")
    agent.graph.insert("Dana", "works_at", "Mercy Hospital")
    agent.step("Hello again, it's Dana. My sister Jo says hi from Lyon.")
    llm.enqueue_review(
        review(
            core=[
                {"section": "human", "line": "name: dana"},  # the same words
                {"section": "human", "line": "Name: Dana"},  # within a line there
                {"section": "human", "line": "Dana works as a nurse at Mercy Hospital."},  # more
                {"section": "human", "line": "Has a sister, Jo."},  # new
            ],
            passages=[
                "Jo moved to Lyon.",  # the same
                "Jo moved to Lyon.\nShe studies medicine there.",  # fuller: replaces it
            ],
            facts=[fact("dana", "works at", "mercy hospital")],  # known already
        )
    )
    result = agent.consolidate()
    assert agent.core_memory["human"] == (
        "Name: Dana.\nDana works as a nurse at Mercy Hospital.\nHas a sister, Jo."
    )
    assert [p.text for p in agent.archival.recent(10)] == [
        "Jo moved to Lyon.\nShe studies medicine there."
    ]
    assert agent.graph.count() == 1
    summaries = [op.summary for op in result.operations]
    assert sum(s.startswith("already") for s in summaries) == 4
    assert any(s.startswith("merged into passage") for s in summaries)


def test_a_full_section_sends_the_line_to_archival(store) -> None:
    agent, llm = make_agent(store, replies=[call("send_message", message="ok")])
    block = agent.memory.block("human")
    agent.edit_core_memory("human", "x" * (block.limit - 5))
    agent.step("I collect stamps from Peru.")
    llm.enqueue_review(review(core=[{"section": "human", "line": "Collects stamps from Peru."}]))
    agent.consolidate()
    assert "Peru" not in agent.core_memory["human"]
    assert [p.text for p in agent.archival.recent(5)] == ["Collects stamps from Peru."]


def test_every_n_turns(store) -> None:
    agent, llm = make_agent(
        store,
        replies=[call("send_message", message=f"ok {i}") for i in range(3)],
        consolidate_every=2,
    )
    agent.step("one")
    assert review_prompts(llm) == []
    llm.enqueue_review(review(facts=[fact("User", "counts_to", "two")]))
    result = agent.step("two")
    assert len(review_prompts(llm)) == 1 and agent.graph.count() == 1
    assert [op.tool for op in result.memory_operations] == ["graph_insert"]
    agent.step("three")
    assert len(review_prompts(llm)) == 1  # one turn since the review: not due


def test_a_failed_review_moves_no_mark_and_is_tried_again(store) -> None:
    agent, llm = make_agent(store, replies=[call("send_message", message="ok")])
    agent.step("I'm Dana.")
    llm._reviews.append('{"core": [], "passages": [')  # cut off, as at the token limit
    result = agent.consolidate()
    assert result.failures and "tried again later" in result.failures[0]
    assert agent.consolidator.reviewed_through() == 0
    llm.enqueue_review(review(core=[{"section": "human", "line": "Name: Dana."}]))
    agent.consolidate()
    assert agent.core_memory["human"] == "Name: Dana."
    assert agent.consolidator.reviewed_through() == agent.recall.all()[-1].id - 1  # its note after


def test_a_long_conversation_is_reviewed_in_window_sized_pieces(store) -> None:
    agent, llm = make_agent(store, llm_kw={"n_ctx": 1600}, replies=[])
    for i in range(12):
        agent.add_user_message(f"Message {i}: " + "words about my day " * 25)
    events: list[object] = []
    agent.consolidate(on_event=events.append)
    prompts = review_prompts(llm)
    assert len(prompts) >= 2
    # a long review says how far it is, piece by piece, for a user who may stop it
    progress = [(e.done, e.total) for e in events if isinstance(e, Reviewing)]
    assert len(progress) == len(prompts) and progress[0] == (0, 12)
    assert [d for d, _ in progress] == sorted(set(d for d, _ in progress))
    assert all(t == 12 and d < 12 for d, t in progress)
    for prompt in prompts:
        assert llm.count_tokens(prompt) + 600 <= 1600
    seen = "".join(p[1].content for p in prompts)
    assert all(f"Message {i}:" in seen for i in range(12))
    assert agent.consolidator.pending() == []


def test_a_bad_date_from_the_model_falls_back_to_when_it_was_said(store) -> None:
    agent, llm = make_agent(store, replies=[call("send_message", message="ok")])
    agent.step("I started at Acme last spring.")
    said = agent.recall.all()[0].created_at
    llm.enqueue_review(review(facts=[fact("User", "works_at", "Acme", "last spring")]))
    agent.consolidate()
    [stored] = agent.graph.all()
    assert stored.valid_from.date() == said.date()


@pytest.mark.slow
def test_the_real_model_reviews_a_conversation(store, chat_client) -> None:
    agent = MemGPTAgent(Persona("Sam", "helpful"), store, chat_client, name="sam")
    agent.add_user_message("Hi! I'm Dana. I work as a nurse at Mercy Hospital.")
    agent.add_user_message("I love rock climbing on weekends.")
    result = agent.consolidate()
    assert not result.failures and result.reviewed
    saved = " ".join(op.summary for op in result.operations if op.ok)
    assert "Dana" in saved and ("nurse" in saved or "Mercy" in saved)
    assert "Dana" in agent.core_memory["human"] or agent.graph.search("Dana")
    # a second review of the same conversation adds nothing: it is marked reviewed
    assert not agent.consolidate().reviewed


def test_stop_during_the_review_keeps_the_messages_for_the_next_one(store) -> None:
    agent, llm = make_agent(
        store, replies=[call("send_message", message="ok")], llm_kw={"piece_delay": 0.02}
    )
    agent.step("I'm Dana.")
    llm.enqueue_review(review(core=[{"section": "human", "line": "Name: Dana."}]))
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()  # the stop button, while the review is written
    result = agent.heartbeat(cancel=cancel)
    assert result.cancelled and result.memory_operations == []
    assert agent.core_memory["human"] == "" and agent.consolidator.reviewed_through() == 0
    assert len(review_prompts(llm)) == 1
    llm.enqueue_review(review(core=[{"section": "human", "line": "Name: Dana."}]))
    llm.piece_delay = 0
    agent.consolidate()
    assert agent.core_memory["human"] == "Name: Dana."


def test_undated_facts_take_the_time_of_the_message_that_said_them(store) -> None:
    agent, llm = make_agent(store)
    agent.add_user_message("I live in Paris.")
    agent.add_user_message("I moved to Rome.")
    with store.atomic() as conn:  # said two months apart
        conn.execute(
            "UPDATE messages SET created_at = '2026-01-01T10:00:00.000000+00:00' WHERE id = 1"
        )
        conn.execute(
            "UPDATE messages SET created_at = '2026-03-01T10:00:00.000000+00:00' WHERE id = 2"
        )
    llm.enqueue_review(
        review(facts=[fact("User", "lives_in", "Paris"), fact("User", "lives_in", "Rome")])
    )
    agent.consolidate()
    assert [f.object for f in agent.graph.search("User", at="2026-02")] == ["Paris"]
    assert [f.object for f in agent.graph.search("User")] == ["Rome", "Paris"]


def test_what_the_conversation_never_named_is_not_stored(store) -> None:
    agent, llm = make_agent(store)
    agent.add_user_message("Hi, I'm Ada.")
    llm.enqueue_review(  # the prompt's own example, copied by a small model
        review(
            core=[{"section": "human", "line": "Name: Omar. Baker in Porto."}],
            passages=["Ada plays chess in Porto."],
            facts=[fact("Ada", "lives_in", "Porto"), fact("Ada", "name_is", "Ada")],
        )
    )
    result = agent.consolidate()
    assert agent.core_memory["human"] == "" and agent.archival.count() == 0
    assert [f.object for f in agent.graph.all()] == ["Ada"]
    skipped = [op.summary for op in result.operations if not op.changed]
    assert len(skipped) == 3 and all("not in the conversation" in s for s in skipped)


def test_a_long_message_is_read_whole(store) -> None:
    agent, llm = make_agent(store)
    agent.add_user_message("Let me tell you about my week. " * 50 + "My daughter is called Emma.")
    agent.consolidate()
    [prompt] = review_prompts(llm)
    assert "My daughter is called Emma." in prompt[1].content


@pytest.mark.parametrize(
    ("before", "line", "after"),
    [
        ("Dislikes coffee.", "Likes coffee.", "Dislikes coffee.\nLikes coffee."),
        ("Age: 30", "Age: 3", "Age: 30\nAge: 3"),
        ("Allergic to peanuts.", "Not allergic to peanuts.", "Not allergic to peanuts."),
        ("Not allergic to peanuts.", "Allergic to peanuts.", "Allergic to peanuts."),
        ("Lives in Paris", "Lives in Paris, Texas since 2026", "Lives in Paris, Texas since 2026"),
        ("Name: Dana. Nurse.", "Name: Dana", "Name: Dana. Nurse."),
    ],
)
def test_a_new_line_is_never_lost_for_looking_like_an_old_one(store, before, line, after) -> None:
    agent, llm = make_agent(store)
    agent.edit_core_memory("human", before)
    agent.add_user_message(f"{before} {line}")
    llm.enqueue_review(review(core=[{"section": "human", "line": line}]))
    agent.consolidate()
    assert agent.core_memory["human"] == after


def test_a_request_to_forget_and_its_answer_are_not_reviewed(store) -> None:
    agent, llm = make_agent(store, replies=[call("send_message", message="Noted.")])
    agent.step("My sister Anika plays the cello.")
    agent.memory.append("human", "Has a sister, Anika.", actor="user")
    agent.step("Please forget that I have a sister")  # the engine answers, listing the line
    llm.enqueue([call("memory_forget", True, query="cello"), call("send_message", message="ok")])
    agent.step("Drop the cello bit, would you?")  # the model's own call: a request too
    llm.enqueue([call("send_message", message="Nice.")])
    agent.step("I bought a bike.")
    llm.enqueue_review(review())
    agent.consolidate()
    [prompt] = review_prompts(llm)
    read = prompt[1].content
    assert "My sister Anika plays the cello." in read and "I bought a bike." in read
    assert "forget" not in read.lower() and "cello bit" not in read
    assert "This is what I keep about that" not in read  # the engine's listing
