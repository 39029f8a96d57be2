"""The agent loop on a real chat model (the fast one, Qwen2.5-Coder-0.5B) and the real embedder."""

from __future__ import annotations

import pytest

from engine import MemGPTAgent, Persona
from engine.tools.registry import TOOL_ARGS

pytestmark = pytest.mark.slow

MESSAGES = [
    "Hi! I'm Alice, I'm a Python developer.",
    "I live in Lisbon with my partner Joana.",
    "Can you recommend a library for HTTP requests in Python?",
    "My favourite food is grilled sardines.",
    "What is my name?",
    "I have a cat called Pixel.",
    "Remember that my sister's birthday is on March 3rd.",
    "What's 17 times 23?",
    "I'm learning Rust in my spare time.",
    "Where do I live?",
    "Tell me a short joke.",
    "I work at a company called Tidewave.",
    "Please save this for later: the wifi password at the office is blue-otter-42.",
    "What was the wifi password?",
    "I prefer tabs over spaces, actually no, spaces.",
    "Summarise what you know about me in one sentence.",
    "My manager is called Rui.",
    "I'm allergic to peanuts.",
    "Can you suggest a dinner for me?",
    "Who is Joana?",
    "I'm going to Tokyo in May.",
    "What language am I learning?",
    "ok",
    "thanks!",
    "Do you remember my cat's name?",
    "I changed jobs: I now work at Blue Harbor.",
    "Where do I work now?",
    "Write a haiku about the sea.",
    "My phone number is 555-0142, keep it safe.",
    "What is the capital of Japan?",
    "I started running, 5 km every Sunday.",
    "How often do I run?",
    "I don't like horror movies.",
    "Recommend me a movie.",
    "What did I tell you about my sister?",
    "My favourite colour is green.",
    "🙂",
    "Can you search our conversation for Tokyo?",
    "I bought a new bike.",
    "What's my partner's name?",
    "Explain list comprehensions in one line.",
    "I need to remember to renew my passport in June.",
    "What do I need to do in June?",
    "My mother's name is Teresa.",
    "Goodbye for now.",
    "I'm back. Did you miss me?",
    "What is my favourite food?",
    "I'd like you to call me Ali from now on.",
    "What should you call me?",
    "Thanks for remembering all this.",
]


def test_fifty_real_steps_parse_dispatch_and_count_exactly(tmp_path, embedder, chat_client) -> None:
    from engine import open_store

    store = open_store(tmp_path / "real.db", embedder=embedder)
    agent = MemGPTAgent(
        Persona("Sam", "A helpful assistant with excellent memory", ["curious", "precise"]),
        store,
        chat_client,
        name="sam",
    )
    replies, calls = 0, []
    for text in MESSAGES:
        r = agent.step(text)
        replies += r.message is not None
        for record in r.model_calls:
            calls.append(record)
            assert record.parsed, f"reply did not parse at {text!r}"
            assert record.tool in TOOL_ARGS
            assert record.counted_prompt_tokens == record.reported_prompt_tokens
        assert r.context_usage.prompt_tokens <= r.context_usage.context_window
    assert len(MESSAGES) == 50
    assert replies >= 48
    assert len(calls) >= 50
    tools_used = {c.tool for c in calls}
    assert "send_message" in tools_used
    assert tools_used & {"core_memory_append", "core_memory_replace", "archival_memory_insert"}
    # every message is in recall, searchable
    page, hits = agent.recall.search("sardines")
    assert any("sardines" in h.content for h in hits)
