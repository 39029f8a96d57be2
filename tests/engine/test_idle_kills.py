"""A Memex process killed (SIGKILL) in the middle of idle work loses nothing: during a page-out's
summary (the eviction committed, the summary not yet), and while it writes its prompt cache (the
state file half written). The saved cache is used only while the prompt starts with exactly its
tokens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine import MemGPTAgent
from engine.llm.scripted import ScriptedClient
from engine.store.db import open_store
from engine.types import Assists
from tests.engine import idle_worker

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

ROOT = Path(__file__).resolve().parents[2]


def _run_until(args: list[str], event: str, timeout: float = 180) -> dict[str, Any]:
    """Start the worker, read its lines until `event`, kill it there; that line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.idle_worker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + timeout
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = json.loads(raw)
            if line["event"] == event:
                process.send_signal(signal.SIGKILL)
                process.wait(30)
                return line
            assert time.monotonic() < deadline
        pytest.fail(f"the worker ended (status {process.wait()}) before {event!r}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def test_killed_during_an_idle_page_out_loses_nothing(tmp_path: Path, embedder) -> None:
    db = tmp_path / "idle.db"
    line = _run_until(["page-out", str(db)], "summarising")
    store = open_store(db, embedder=embedder)
    try:
        assert store.query_one("PRAGMA integrity_check")[0] == "ok"
        client = ScriptedClient(n_ctx=4096)
        agent = MemGPTAgent(
            idle_worker.PERSONA,
            store,
            client,
            name=idle_worker.AGENT,
            idle_work=True,
            assists=Assists.none(),
        )
        everything = agent.recall.all()
        users = [m.content for m in everything if m.role == "user"]
        assert users == [idle_worker.user_text(i) for i in range(line["users"])]
        evicted = [m for m in everything if line["first"] <= m.id <= line["last"]]
        assert evicted and not any(m.in_context for m in evicted)  # the eviction committed
        assert agent.summaries.latest() is None and agent.context.summary_pending()
        done = agent.organise()  # the next idle spell writes the summary
        assert done.summarised
        summary = agent.summaries.latest()
        assert summary is not None and summary.last_message_id == line["last"]
    finally:
        store.close()


def test_killed_while_saving_the_prompt_cache_leaves_nothing_used(
    tmp_path: Path, embedder, chat_client, chat_model_path, prompt_state_folder: Path
) -> None:
    db = tmp_path / "idle.db"
    line = _run_until(["save", str(db), str(chat_model_path)], "saving")
    assert line["tokens"] > 256
    assert not list(prompt_state_folder.glob("*.kv"))
    partial = list(prompt_state_folder.glob(".*.partial"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    store = open_store(db, embedder=embedder)
    try:
        chat_client._llama.reset()
        agent = MemGPTAgent(
            archival_store=store, llm_client=chat_client, name="idle", keep_prompt_cache=True
        )
        assert agent.restored_tokens == 0  # the half-written file is never read

        chat_client.prefill(agent.context.next_prompt())  # a whole save now ...
        assert agent.save_prompt_state() == line["tokens"]
        chat_client._llama.reset()
        reopened = MemGPTAgent(
            archival_store=store, llm_client=chat_client, name="idle", keep_prompt_cache=True
        )
        assert reopened.restored_tokens == line["tokens"]  # ... is used while it matches

        reopened.edit_core_memory("human", "Lives in Porto.")  # the prompt no longer starts so
        chat_client._llama.reset()
        changed = MemGPTAgent(
            archival_store=store, llm_client=chat_client, name="idle", keep_prompt_cache=True
        )
        assert changed.restored_tokens == 0

        old = time.time() - 7200  # a crash's half-written file goes once it is old
        os.utime(partial[0], (old, old))
        chat_client.prompt_cache().prune()
        assert not partial[0].exists()
    finally:
        store.close()
