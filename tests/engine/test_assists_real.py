"""The engine's help for small models on the real default chat model (Qwen2.5-Coder-1.5B):
page-in before an answer, and the reply checks, through llama.cpp's grammar and parsing. These
check behaviour; how well it answers is bench/memory_qa.py's job."""

from __future__ import annotations

import datetime as dt

import pytest

from engine import MemGPTAgent, Persona
from engine.memory.page_in import PAGE_IN_PREFIX, Recalled
from engine.reading import ANSWER_CHARS, read_answer

pytestmark = pytest.mark.slow

LONG_AGO = dt.datetime(2025, 6, 14, 9, 30, tzinfo=dt.UTC)


def test_the_default_model_answers_with_an_old_exchange_paged_in(store, default_client):
    agent = MemGPTAgent(Persona("Memex", "A helpful assistant."), store, default_client)
    said = [
        ("user", "Which novel should I read on the ferry to Skye?"),
        (
            "assistant",
            "Try 'The Lighthouse at Vellmar' by Oona Brecht: short chapters, great for a ferry.",
        ),
    ]
    ids = [
        agent.recall.add(agent.session_id, role, text, 20, created_at=LONG_AGO, in_context=False).id
        for role, text in said
    ]
    agent.summaries.add("Earlier talk about books.", ids[0], ids[-1], "test")

    result = agent.step("What novel did you recommend for my ferry trip?")

    notes = [m for m in agent.recall.in_context() if m.content.startswith(PAGE_IN_PREFIX)]
    assert len(notes) == 1 and "Lighthouse at Vellmar" in notes[0].content
    assert "14 June 2025" in notes[0].content
    # a question: the note says what the reading of these hits found, or that it found none
    assert "the answer to the user's question is:" in notes[0].content or (
        "memory does not answer the user's question" in notes[0].content
    )
    assert result.message  # a reply came, through the grammar and the reply checks
    if "the answer to the user's question is:" in notes[0].content:
        # read, and the question only asks: the engine's own answer, with no model call
        assert "Vellmar" in result.message and result.steps == 0
    assert result.context_usage.prompt_tokens <= result.context_usage.prompt_budget
    assert not result.stopped_by_step_limit


def test_the_default_model_reads_the_answer_out_of_dated_records(default_client):
    hits = [
        Recalled(
            "conversation",
            LONG_AGO,
            "user: Which novel should I read on the ferry to Skye? / "
            "you (assistant): Try 'The Lighthouse at Vellmar' by Oona Brecht.",
        ),
        Recalled(
            "conversation",
            LONG_AGO - dt.timedelta(days=43),
            "user: Any tips for the trip? / you (assistant): Pack light.",
        ),
    ]
    reading = read_answer(
        default_client, "What novel did you recommend for my ferry trip?", hits, "Name: Ines"
    )
    assert reading is not None and reading.found
    assert "Vellmar" in reading.answer and len(reading.answer) <= ANSWER_CHARS


def test_the_default_model_answers_a_question_from_a_message_in_view_itself(store, default_client):
    agent = MemGPTAgent(Persona("Memex", "A helpful assistant."), store, default_client)
    for role, text in [
        ("user", "My sister Ingrid just started at the Vesper Veterinary Clinic in Leith."),
        ("assistant", "That's great news for Ingrid!"),
        ("user", "Any tips for a first visit to Edinburgh?"),
        ("assistant", "Walk the Royal Mile early, before the crowds."),
    ]:
        agent.recall.add(agent.session_id, role, text, 20)  # type: ignore[arg-type]
    result = agent.step("Where does my sister Ingrid work?")
    # read from the messages in view (no page-in note: nothing is out of view), and the
    # reading's answer sent by the engine, with no model call
    reply = result.message or ""
    assert ("Vesper" in reply or "Leith" in reply) and result.steps == 0
