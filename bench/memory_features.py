"""The memory features of issue 6, measured side by side in one run:

    python -m bench.memory_features [--runs 5] [--write]

- remote backend: the same agent prompt through RemoteClient (llama-cpp-python's server on
  127.0.0.1, the same GGUF and thread count) against LlamaClient in-process, alternating;
- memory review: agent.consolidate() over a short conversation against one agent step, on
  the default chat model;
- knowledge graph: graph_search on an agent with 10,000 facts, against an archival search of
  the same agent (both in one process, same file);
- agent files: export and import of an agent with 1,000 messages and 200 passages; the import
  reusing the file's vectors against one that embeds every text again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import write_section
from engine import MemGPTAgent, Persona
from engine.agentfile import export_agent, import_agent
from engine.llm.grammar import reply_schema
from engine.llm.llama import LlamaClient
from engine.llm.remote import RemoteClient
from engine.llm.scripted import ScriptedClient
from engine.store.db import open_store
from engine.store.embed import default_embedder
from engine.tools.registry import tool_specs
from engine.types import ChatMessage
from models.fetch import model_path

BEGIN, END = "<!-- memory_features:begin -->", "<!-- memory_features:end -->"
THREADS = 2
N_CTX = 4096


def median_s(samples: list[float]) -> float:
    return statistics.median(samples)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- remote vs in-process ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(gguf: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "engine.llm.server", "--model", str(gguf), "--host", "127.0.0.1"]
        + ["--port", str(port), "--n_ctx", str(N_CTX), "--n_threads", str(THREADS)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the llama-cpp-python server did not start")


def remote_vs_local(runs: int) -> list[str]:
    gguf = Path(model_path("chat"))
    local = LlamaClient(gguf, n_ctx=N_CTX, n_threads=THREADS)
    server, url = start_server(gguf)
    try:
        remote = RemoteClient(url, n_ctx=N_CTX, template_from=gguf)
        schema = reply_schema(tool_specs())
        store = open_store(Path(tempfile.mkdtemp()) / "m.db", embedder=default_embedder())
        agent = MemGPTAgent(Persona("Sam", "helpful"), store, ScriptedClient(), name="sam")
        system = agent.context.build().messages[0]
        times: dict[str, list[float]] = {"in-process": [], "server": []}
        counts = []
        for i in range(runs):
            messages = [system, ChatMessage("user", f"Hi, I'm Ada ({i}). I like tea.")]
            counts.append((local.count_tokens(messages), remote.count_tokens(messages)))
            for name, client in (("in-process", local), ("server", remote)):
                times[name].append(timed(lambda c=client, m=messages: c.complete(m, schema, 48)))
        ratio = median_s(times["server"]) / median_s(times["in-process"])
        same = all(a == b for a, b in counts)
        return [
            "| remote backend | median s per call | runs |",
            "|---|---|---|",
            f"| in-process LlamaClient | {median_s(times['in-process']):.2f} | {runs} |",
            f"| llama-cpp-python server via RemoteClient | {median_s(times['server']):.2f} "
            f"| {runs} |",
            "",
            f"Server / in-process: **{ratio:.2f}x** (one agent prompt of {counts[0][0]} tokens, "
            f"48-token constrained reply, alternating). Token counts equal on every run: {same}.",
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)
        local.close()


# -- memory review ----------------------------------------------------------------------------
CONVERSATION = [
    "Hi! I'm Dana. I work as a nurse at Mercy Hospital.",
    "My sister Jo moved to Lyon last month to study medicine.",
    "I love rock climbing on weekends.",
    "I'm allergic to cats, sadly.",
    "I'm planning a trip to Norway in July.",
]


def review_vs_step(runs: int) -> list[str]:
    from engine.llm.factory import default_llm_client

    llm = default_llm_client("chat", n_ctx=N_CTX, n_threads=THREADS)
    embedder = default_embedder()
    reviews, steps, changes = [], [], []
    for i in range(runs):
        store = open_store(Path(tempfile.mkdtemp()) / f"m{i}.db", embedder=embedder)
        agent = MemGPTAgent(Persona("Sam", "helpful"), store, llm, name="sam")
        for text in CONVERSATION:
            agent.add_user_message(text)
        started = time.perf_counter()
        result = agent.consolidate()
        reviews.append(time.perf_counter() - started)
        changes.append(sum(1 for op in result.operations if op.ok))
        steps.append(timed(lambda a=agent: a.step("What do you remember about me?")))
        store.close()
    ratio = median_s(reviews) / median_s(steps)
    return [
        "| memory review | median s | runs |",
        "|---|---|---|",
        f"| agent.consolidate() of {len(CONVERSATION)} user messages | {median_s(reviews):.1f} "
        f"| {runs} |",
        f"| one agent.step() right after | {median_s(steps):.1f} | {runs} |",
        "",
        f"Review / step: **{ratio:.2f}x**. Changes a review made: {changes} (core lines, "
        "passages and facts).",
    ]


# -- graph at scale ---------------------------------------------------------------------------
def graph_at_scale(runs: int) -> list[str]:
    store = open_store(Path(tempfile.mkdtemp()) / "g.db", embedder=default_embedder())
    agent = MemGPTAgent(Persona("Sam", "helpful"), store, ScriptedClient(), name="sam")
    started = time.perf_counter()
    with store.atomic():
        for person in range(1000):
            for year in range(2016, 2026):
                agent.graph.insert(f"Person {person}", "works_at", f"Company {year % 7}", str(year))
    fill = time.perf_counter() - started
    agent.archival.insert_many([f"Note {i} about Person {i}'s work." for i in range(200)])
    searches = {"graph_search now": [], "graph_search at=2019-06": [], "archival search": []}
    for i in range(runs * 10):
        who = f"Person {i * 37 % 1000}"
        searches["graph_search now"].append(timed(lambda w=who: agent.tools.graph_search(w)))
        searches["graph_search at=2019-06"].append(
            timed(lambda w=who: agent.tools.graph_search(w, at="2019-06"))
        )
        searches["archival search"].append(
            timed(lambda w=who: agent.tools.archival_memory_search(f"where does {w} work"))
        )
    lines = [
        f"| knowledge graph, {agent.graph.count()} facts | median ms | runs |",
        "|---|---|---|",
    ]
    for name, samples in searches.items():
        lines.append(f"| {name} | {1000 * median_s(samples):.1f} | {len(samples)} |")
    ratio = median_s(searches["graph_search at=2019-06"]) / median_s(searches["archival search"])
    lines += [
        "",
        f"Inserting the {agent.graph.count()} facts (each closing the one before): {fill:.1f} s. "
        f"A dated graph search / an archival search (which embeds its query): **{ratio:.2f}x**.",
    ]
    store.close()
    return lines


# -- agent files ------------------------------------------------------------------------------
def agent_files(runs: int) -> list[str]:
    embedder = default_embedder()
    folder = Path(tempfile.mkdtemp())
    store = open_store(folder / "a.db", embedder=embedder)
    agent = MemGPTAgent(Persona("Sam", "helpful"), store, ScriptedClient(), name="sam")
    for i in range(500):
        agent.add_user_message(f"Message {i}: today I did thing number {i} at the market.")
        agent.recall.add(agent.session_id, "system", f"note {i}", 4)
    agent.archival.insert_many([f"Passage {i}: a fact about topic {i}." for i in range(200)])
    path = folder / "sam.json"
    exports, reused, embedded = [], [], []
    for i in range(runs):
        exports.append(timed(lambda: export_agent(store, "sam", path)))
        other = open_store(folder / f"b{i}.db", embedder=embedder)
        reused.append(timed(lambda o=other: import_agent(o, path)))
        document = export_agent(store, "sam")
        document["message_embedding_model"] = "another-model"
        for passage in document["passages"]:
            passage["embedding_model"] = "another-model"
        embedded.append(timed(lambda o=other, d=document: import_agent(o, d, name="again")))
        other.close()
    size = path.stat().st_size / 1e6
    store.close()
    return [
        "| agent file (1,000 messages, 200 passages) | median s | runs |",
        "|---|---|---|",
        f"| export ({size:.1f} MB of JSON) | {median_s(exports):.2f} | {runs} |",
        f"| import, vectors reused | {median_s(reused):.2f} | {runs} |",
        f"| import, every text embedded again | {median_s(embedded):.2f} | {runs} |",
        "",
        f"Re-embedding / reusing the file's vectors: "
        f"**{median_s(embedded) / median_s(reused):.1f}x**.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the results to BENCHMARKS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parts = [
        remote_vs_local(args.runs),
        review_vs_step(max(2, args.runs // 2)),
        graph_at_scale(args.runs),
        agent_files(max(2, args.runs // 2)),
    ]
    section = "\n".join(
        [
            BEGIN,
            "## Memory features: remote backend, memory review, graph, agent files",
            "",
            f"`python -m bench.memory_features --runs {args.runs} --write`, "
            f"{dt.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
            f"{THREADS} threads, n_ctx {N_CTX}, default chat model (Qwen2.5-Coder-0.5B Q4_K_M).",
            "",
        ]
        + [line for part in parts for line in [*part, ""]]
        + [END]
    )
    print(section)
    if args.write:
        write_section(section, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
