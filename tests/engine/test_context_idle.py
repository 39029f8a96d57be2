"""Idle memory work (MemGPTAgent.organise): page-outs and their summaries happen while the user
reads and types, not in the user's step.

The scripted client runs the real loop, builder, store and summaries (see test_context.py); the
real model's side (reading ahead, stopping mid-prompt, the saved cache) is in
tests/engine/llm/test_prompt_state.py.
"""

from __future__ import annotations

import threading

from engine.errors import Interrupted
from engine.types import ChatMessage
from tests.engine.test_context import (
    assert_within_budget,
    chat,
    is_summary_prompt,
    make_agent,
    paged_out,
    short_summary,
    summary_prompts,
)


def _session(agent, client, turns: int, organise: bool, sizes=(500, 900, 700, 1100)):
    """`turns` user steps of varied sizes; with `organise`, idle work after each. Returns the
    steps' results and what each idle spell did."""
    steps, idle = [], []
    for i in range(turns):
        result = chat(agent, client, i, chars=sizes[i % len(sizes)])
        assert_within_budget(agent, result)
        steps.append(result)
        if organise:
            idle.append(agent.organise())
    return steps, idle


def test_with_idle_work_no_step_pages_out_and_nothing_is_lost(store) -> None:
    agent, client = make_agent(store, idle_work=True)
    steps, idle = _session(agent, client, 40, organise=True)
    page_outs = [o.page_out for o in idle if o.page_out is not None]
    assert len(page_outs) >= 3, "the session never filled the window"
    assert not any(paged_out(r) for r in steps)
    # every summary was written in idle time: none in a step's model calls
    assert all(o.summarised for o in idle if o.page_out is not None)
    assert len(summary_prompts(client)) == len(page_outs)
    everything = agent.recall.all()
    assert [m.role for m in everything].count("user") == 40
    out = [m for m in everything if not m.in_context]
    assert out and out[-1].id == page_outs[-1].last_message_id
    summary = agent.summaries.latest()
    assert summary is not None and summary.last_message_id == page_outs[-1].last_message_id
    assert page_outs[-1].summary == summary.text  # the event the app shows as a divider


def test_without_idle_work_the_same_session_pages_out_in_its_steps(store) -> None:
    agent, client = make_agent(store)
    steps, _ = _session(agent, client, 40, organise=False)
    assert sum(paged_out(r) for r in steps) >= 3


def test_idle_work_does_nothing_while_the_next_turn_fits(store) -> None:
    agent, client = make_agent(store, idle_work=True)
    chat(agent, client, 0)
    calls = len(client.history)
    done = agent.organise()
    assert done.page_out is None and not done.summarised and not done.stopped
    assert len(client.history) == calls


def test_one_message_that_fills_the_window_pages_out_in_its_step_without_the_summary(
    store,
) -> None:
    agent, client = make_agent(store, idle_work=True)
    i = 0
    budget = agent.context.budget.prompt_budget
    while agent.context_window().prompt_tokens < budget - 860:
        chat(agent, client, i, chars=600)
        agent.organise()
        i += 1
    before = len(summary_prompts(client))
    # ~880 tokens (shown whole: under a quarter of the budget), alone past the budget: with
    # idle work a step pages out only when its prompt would not fit at all
    result = chat(agent, client, 99, chars=3500)
    assert paged_out(result)
    assert len(summary_prompts(client)) == before, "the user waited for a summary"
    assert agent.context.summary_pending()
    done = agent.organise()
    assert done.summarised and not agent.context.summary_pending()


def test_stopped_idle_work_keeps_the_page_out_and_writes_the_summary_next_time(store) -> None:
    cancel = threading.Event()
    stop_next = [True]

    def summarise(prompt: list[ChatMessage]) -> str:
        if stop_next[0]:  # the user sends a message while the summary is being written
            stop_next[0] = False
            cancel.set()
            raise Interrupted("stopped")
        return short_summary(prompt)

    agent, client = make_agent(store, idle_work=True, summarizer=summarise)
    i = 0
    while True:
        chat(agent, client, i, chars=900)
        i += 1
        done = agent.organise(cancel)
        if done.page_out is not None:
            break
        assert i < 40
    assert done.stopped and not done.summarised
    first, last = done.page_out.first_message_id, done.page_out.last_message_id
    assert done.page_out.summary is None  # not written yet
    assert all(not m.in_context for m in agent.recall.all() if first <= m.id <= last)
    assert agent.summaries.latest() is None and agent.context.summary_pending()
    assert not any(n.startswith("The summary of") for n in agent.context.events)

    result = chat(agent, client, i)  # the step does not write it: the user is waiting
    assert not any(is_summary_prompt(p) for p in client.history[-len(result.model_calls) :])
    assert agent.context.summary_pending()
    cancel.clear()
    again = agent.organise(cancel)
    assert again.summarised and not again.stopped
    summary = agent.summaries.latest()
    assert summary is not None and summary.last_message_id >= last


def test_idle_work_stopped_before_it_starts_does_nothing(store) -> None:
    agent, client = make_agent(store, idle_work=True)
    _session(agent, client, 3, organise=False)
    stopped = threading.Event()
    stopped.set()
    calls = len(client.history)
    done = agent.organise(stopped)
    assert done.stopped and done.page_out is None and len(client.history) == calls


def _until_idle_page_out(agent, client, start: int):
    """Chat until idle work pages out; (what it did, the turn after the last one)."""
    i = start
    while True:
        chat(agent, client, i, chars=900)
        i += 1
        done = agent.organise()
        if done.page_out is not None:
            return done, i
        assert i < start + 40, "the window never filled"


def test_an_idle_summary_enters_the_prompt_at_the_next_page_out_and_survives_reopening(
    store,
) -> None:
    agent, client = make_agent(store, idle_work=True)
    first, i = _until_idle_page_out(agent, client, 0)
    assert first.summarised
    written = agent.summaries.latest()
    assert written is not None and written.last_message_id == first.page_out.last_message_id
    system = agent.context.next_prompt()[0].content
    # written after the prompt was read ahead: shown from the next page-out, so that writing
    # it did not change the prompt the model had read
    assert written.text not in system
    assert (
        f"Messages {first.page_out.first_message_id}-{first.page_out.last_message_id} are out "
        "of view and not summarised yet" in system
    )
    reopened, _ = make_agent(store, idle_work=True)  # the app started again on the file
    assert reopened.context.next_prompt() == agent.context.next_prompt()

    second, _ = _until_idle_page_out(agent, client, i)
    system = agent.context.next_prompt()[0].content
    assert written.text in system  # the first page-out's summary, now in view
    assert agent.summaries.latest().last_message_id == second.page_out.last_message_id


def test_without_idle_work_a_summary_is_in_the_prompt_at_once(store) -> None:
    agent, client = make_agent(store)
    steps, _ = _session(agent, client, 12, organise=False)
    assert any(paged_out(r) for r in steps)
    latest = agent.summaries.latest()
    assert latest is not None and latest.text in agent.context.next_prompt()[0].content
