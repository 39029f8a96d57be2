"""A long conversation through the real default model in a 2,048-token window: page-outs with
model-written summaries, exact token counts, and early facts still found afterwards."""

from __future__ import annotations

import re

import pytest

from engine import Assists, MemGPTAgent, Persona
from engine.llm.llama import LlamaClient

pytestmark = pytest.mark.slow

N_CTX = 2048
REPLY_TOKENS = 384

# The first messages carry facts to find later; the rest is ordinary chat that fills the window.
OPENING = [
    "Hi, I'm Priya. I live in Lisbon and I work as a marine biologist.",
    "My daughter Ana turns seven on March 3rd.",
    "I'm allergic to peanuts, so keep that in mind for recipes.",
]
CHAT = [
    "What's a good name for a goldfish?",
    "Tell me a fun fact about octopuses.",
    "How do tides work?",
    "Can you suggest a weekend hike?",
    "What should I cook tonight?",
    "Why is the sea salty?",
    "What's the best way to learn Italian?",
    "Recommend a science fiction book.",
    "How far away is the moon?",
    "What is a coral reef?",
    "Give me a tip for sleeping better.",
    "How do whales communicate?",
    "What is the deepest part of the ocean?",
    "Write a two-line poem about rain.",
    "How do I keep basil alive on a windowsill?",
    "What's the difference between a dolphin and a porpoise?",
    "Suggest a board game for a family evening.",
    "Why do cats purr?",
    "What is plankton?",
    "How long should I boil an egg?",
    "Name three famous lighthouses.",
    "What causes the northern lights?",
    "Give me a quick stretching routine.",
    "How do sea turtles navigate?",
    "What's a good gift for a seven-year-old?",
]
QUESTIONS = ["Where do I live?", "What is my daughter's name?"]


@pytest.fixture(scope="module")
def small_window_client(chat_model_path) -> LlamaClient:
    client = LlamaClient(chat_model_path, n_ctx=N_CTX)
    yield client
    client.close()


def conversation() -> list[str]:
    return OPENING + CHAT + CHAT[:20] + QUESTIONS


def test_long_conversation_pages_out_and_still_recalls_early_facts(store, small_window_client):
    agent = MemGPTAgent(
        Persona("Sam", "A helpful assistant."),
        store,
        small_window_client,
        name="long",
        reply_tokens=REPLY_TOKENS,
        # the window's own machinery on a real model: page-outs and the recursive summary
        # (page-in on a real model: test_assists_real.py)
        assists=Assists.none(),
    )
    page_out_notes: list[str] = []
    for text in conversation():
        result = agent.step(text)
        for call in result.model_calls:
            # every step's counted size is llama.cpp's own prompt size, and it fits the window
            assert call.counted_prompt_tokens == call.reported_prompt_tokens
            assert call.counted_prompt_tokens + REPLY_TOKENS <= N_CTX
        usage = result.context_usage
        assert usage.prompt_tokens <= usage.prompt_budget
        page_out_notes += [n for n in result.notes if n.startswith("Paged out")]

    messages = agent.recall.all()
    assert len(messages) >= 150
    assert len(page_out_notes) >= 2, page_out_notes
    assert not agent.recall.get(1).in_context  # the opening left the window long ago

    # the facts of the first ten messages: found by conversation_search ...
    early = {m.id for m in messages[:10] if m.role == "user"}
    for query, word in [("Lisbon marine biologist", "Lisbon"), ("daughter birthday", "Ana")]:
        ids, text = top_hits(agent, query, 5)
        assert early & ids, query
        # the tool cuts a page to fit the window, so the word may be on a later page of the five
        assert word in text, text

    # ... and covered by the recursive summary, which the model wrote in several folds
    summaries = agent.summaries.all()
    assert len(summaries) >= 2
    latest = summaries[-1]
    assert latest.first_message_id <= min(early) and latest.last_message_id >= max(early)
    assert latest.previous_id == summaries[-2].id
    text = latest.text.lower()
    assert any(word in text for word in ("priya", "lisbon", "ana", "biologist", "peanut")), text


def top_hits(agent: MemGPTAgent, query: str, wanted: int) -> tuple[set[int], str]:
    """Ids of the first `wanted` hits and the pages that showed them, paging on as the model
    would when a page is cut short."""
    ids: list[int] = []
    pages: list[str] = []
    page, limit = 0, wanted
    while len(ids) < wanted:
        found = agent.tools.conversation_search(query, limit=limit, page=page)
        pages.append(found)
        ids += [int(i) for i in re.findall(r"\[id (\d+),", found)]
        more = re.search(r"More: page=(\d+), limit=(\d+)", found)
        if more is None:
            break
        page, limit = int(more[1]), int(more[2])
    return set(ids[:wanted]), "\n".join(pages)
