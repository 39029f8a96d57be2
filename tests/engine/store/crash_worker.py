"""A Memex process for the crash tests (test_crash_safety.py): runs scripted agent steps on one
file and says on stdout, a JSON line each, flushed, what it has done, until it is killed.

    python -m tests.engine.store.crash_worker DB FIRST_STEP LAST_STEP RUN

Lines: {"event": "ready"} once the store and agent are open; {"event": "begin", "step": k}
before step k; {"event": "done", "step": k, ...} once step(k) has returned, with every message
and passage the step committed; {"event": "finished"} after LAST_STEP. Step k's model makes four
calls with real effects (script(k, run)); any other outcome exits with status 3.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from engine import MemGPTAgent, Persona
from engine.llm.scripted import ScriptedClient, call
from engine.store.db import open_store

AGENT = "crash"
PERSONA = Persona(name="Sam", description="An assistant that is killed a lot")
TOOLS = ("core_memory_append", "archival_memory_insert", "conversation_search", "send_message")


def user_text(step: int, run: int) -> str:
    return f"step {step} run {run}: remember fact number {step}"


def fact(step: int) -> str:
    return f"f{step}"


def passage_text(step: int, run: int) -> str:
    return f"passage of step {step} run {run}"


def reply_text(step: int, run: int) -> str:
    return f"reply to step {step} run {run}"


def script(step: int, run: int) -> list[dict[str, Any]]:
    """What the model answers to step `step`: edit core memory, save a passage, search the
    conversation (heartbeats between), then reply."""
    return [
        call("core_memory_append", heartbeat=True, section="human", content=fact(step)),
        call(
            "archival_memory_insert",
            heartbeat=True,
            content=passage_text(step, run),
            tags=[f"s{step}"],
        ),
        call("conversation_search", heartbeat=True, query=f"fact number {max(step - 1, 1)}"),
        call("send_message", message=reply_text(step, run)),
    ]


def say(**line: Any) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def main(db: str, first: int, last: int, run: int) -> int:
    store = open_store(db, wait_s=30)
    client = ScriptedClient(n_ctx=4096)
    agent = MemGPTAgent(PERSONA, store, client, name=AGENT)
    say(event="ready", run=run, agent_id=agent.agent_id)
    for step in range(first, last + 1):
        (top,) = store.query_one("SELECT coalesce(max(id), 0) FROM messages")
        (top_passage,) = store.query_one("SELECT coalesce(max(id), 0) FROM passages")
        client.enqueue(script(step, run))
        say(event="begin", step=step)
        result = agent.step(user_text(step, run))
        calls = [c.name for c in result.tool_calls]
        if result.message != reply_text(step, run) or calls != list(TOOLS) or client.remaining:
            say(event="unexpected", step=step, message=result.message, calls=calls)
            return 3
        messages = store.query(
            "SELECT id, role, content FROM messages WHERE id > ? AND agent_id = ? ORDER BY id",
            (top, agent.agent_id),
        )
        passages = store.query(
            "SELECT id, text FROM passages WHERE id > ? AND agent_id = ? ORDER BY id",
            (top_passage, agent.agent_id),
        )
        say(
            event="done",
            step=step,
            run=run,
            messages=[list(m) for m in messages],
            passages=[list(p) for p in passages],
            human=agent.core_memory["human"],
        )
    say(event="finished", run=run)
    store.close()
    return 0


if __name__ == "__main__":
    db_path, first_step, last_step, run_number = sys.argv[1:5]
    sys.exit(main(db_path, int(first_step), int(last_step), int(run_number)))
