"""A Memex process for the kill tests of idle work (test_idle_kills.py): it reaches a point in
idle work, says so on stdout (a JSON line, flushed), and waits there to be killed.

    python -m tests.engine.idle_worker page-out DB
        scripted steps with idle work after each, until an idle page-out has evicted; its
        summary call says {"event": "summarising", "first": ..., "last": ..., "users": N}
    python -m tests.engine.idle_worker save DB MODEL
        the real model reads a conversation ahead and saves its prompt cache; writing the state
        file says {"event": "saving", "tokens": N} before the file is synced and renamed

Any other outcome exits with status 3.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from engine import MemGPTAgent, Persona
from engine.llm.scripted import ScriptedClient, call
from engine.store.db import open_store
from engine.types import Assists, ChatMessage

PERSONA = Persona(name="Sam", description="An assistant whose idle work is killed")
AGENT = "idle"


def say(**line: Any) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def user_text(i: int) -> str:
    return f"Message {i}: " + " ".join(f"word{i}x{j}" for j in range(120))


def page_out(db: str) -> int:
    store = open_store(db)
    state: dict[str, Any] = {}

    def summarise(prompt: list[ChatMessage]) -> str:
        say(event="summarising", users=state["users"], **state["page_out"])
        time.sleep(600)  # killed here
        return "never"

    client = ScriptedClient(n_ctx=4096, summarizer=summarise)
    agent = MemGPTAgent(PERSONA, store, client, name=AGENT, idle_work=True, assists=Assists.none())
    for i in range(60):
        client.enqueue([call("send_message", message=f"Reply {i}.")])
        agent.step(user_text(i))
        state["users"] = i + 1
        evicted = agent.context.page_out_ahead(agent._next_turn_tokens())
        if evicted is not None:
            state["page_out"] = {"first": evicted[0], "last": evicted[1]}
            agent.context.summarise_pending()  # as organise() does next
    return 3


def save(db: str, model: str) -> int:
    from engine.llm.llama import LlamaClient

    store = open_store(db)
    llm = LlamaClient(model, n_ctx=4096, seed=0)  # as the tests' shared client
    agent = MemGPTAgent(PERSONA, store, llm, name=AGENT, keep_prompt_cache=True)
    for i in range(3):
        agent.add_user_message(user_text(i))
    llm.prefill(agent.context.next_prompt())
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        say(event="saving", tokens=len(llm.stable_prefix(agent.context.next_prompt())))
        time.sleep(600)  # killed here: the file is written, neither synced nor renamed
        real_fsync(fd)

    os.fsync = slow_fsync
    agent.save_prompt_state()
    return 3


if __name__ == "__main__":
    mode, db = sys.argv[1], sys.argv[2]
    sys.exit(page_out(db) if mode == "page-out" else save(db, sys.argv[3]))
