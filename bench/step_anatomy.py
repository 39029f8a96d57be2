"""Where one real agent step spends its time, on a memory file of a long-lived agent:

    python -m bench.step_anatomy [--runs 3] [--messages 10000] [--passages 100000] [--write]

The memory file holds one agent with `--messages` recall messages (user / assistant /
tool-result turns; all but the last 20 paged out under a summary) and `--passages` archival
passages. Texts are real sentences (made from templates), embedded by the real embedder: a few
thousand distinct sentences are embedded once; a passage is two of them, its vector the
normalised sum of theirs. The file is built once and cached in the benchmark cache folder
($MEMEX_BENCH_CACHE, else platformdirs' user cache dir of "memex", then bench/), and each run
works on a fresh copy of it.

Each run opens the copy with the default chat model and embedder and runs real steps: a
warm-up step, then a step whose model reply calls archival_memory_search (then answers), and a
plain reply. The model writes every reply itself; the bench only narrows each call's grammar to
the tool it wants (a search, then send_message; or send_message), so every run does the same
kind of work. The table is each step's `timings` (engine.timing), mean of the runs: what the
engine measured itself, phases adding up to the step's wall time.

Model time is the chat model's prompt evaluation and decoding (llama.cpp's own counters), its
sampling and token loop (the grammar-checked sampler and llama-cpp-python's loop around
llama_decode), and the embedding model (MiniLM: the stored messages and the search query);
the embedder is a model, so it is model time, in a row of its own. Engine overhead is
everything else: context building, the chat template, tokenizing, streaming the reply,
parsing, dispatch, storing messages, the database and what no phase covers ("other").
Goals (issue 7): overhead under 5% of the step and under 20 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from bench.clients import PassedOn
from bench.report import write_section
from engine import MemGPTAgent, Persona
from engine.llm.base import Completion, TextSink
from engine.llm.grammar import reply_schema
from engine.llm.llama import LlamaClient, available_cpus
from engine.memory.search import vector_blob
from engine.store.db import open_store
from engine.store.embed import Embedder, default_embedder
from engine.tools.registry import tool_specs
from engine.types import ChatMessage, StepTimings
from models.fetch import model_path

BEGIN, END = "<!-- step_anatomy:begin -->", "<!-- step_anatomy:end -->"
N_CTX = 4096
IN_CONTEXT = 20  # the newest messages left in the window; the rest are paged out
AGENT = "bench"
PERSONA = Persona("Sam", "A helpful assistant with a long memory.", ["curious", "precise"])
GOAL_SHARE = 0.05
GOAL_MS = 20.0

LABELS = {
    "prompt_eval": "prompt evaluation (llama.cpp)",
    "generation": "generation: decoding (llama.cpp)",
    "model": "generation: sampling, grammar, token loop",
    "embedding": "embedding model (MiniLM)",
    "context": "context building",
    "template": "chat template (rendering)",
    "tokenize": "tokenizing / counting",
    "stream": "streaming the reply",
    "parse": "parsing the reply",
    "dispatch": "tool dispatch (Python)",
    "store": "storing messages (Python)",
    "database": "database (SQLite)",
    "other": "other (the loop, events)",
}

# -- real sentences ----------------------------------------------------------------------------
NAMES = [
    "Ada", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Kira", "Luca", "Maya", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara",
    "Umar", "Vera", "Wen", "Xavier", "Yara", "Zane", "Alice", "Ben", "Carla", "David",
]  # fmt: skip
CITIES = [
    "Lisbon", "Porto", "Kyoto", "Oslo", "Lyon", "Tallinn", "Montreal", "Nairobi", "Lima",
    "Hanoi", "Krakow", "Seville", "Dublin", "Austin", "Adelaide", "Bergen", "Cusco", "Ghent",
]  # fmt: skip
THINGS = [
    "grilled sardines", "lentil soup", "green tea", "sourdough bread", "rock climbing",
    "the piano", "chess", "old maps", "trail running", "watercolours", "jazz records",
    "board games", "bonsai trees", "vintage bicycles", "science fiction", "pottery",
]  # fmt: skip
FACTS = [
    "moved to {city} last spring and is still finding the best bakeries",
    "works as a nurse at a small clinic in {city}",
    "has loved {thing} since childhood",
    "is planning a trip to {city} in the autumn",
    "gave up {thing} after a knee injury two years ago",
    "teaches chemistry at a secondary school in {city}",
    "asked me to remind them about the dentist appointment on Thursday",
    "bought a second-hand car that keeps breaking down near {city}",
    "spends every Sunday morning on {thing}",
    "is allergic to peanuts and always checks the labels",
    "wants to learn more about {thing} this year",
    "celebrated a birthday with friends in {city}",
    "finds {thing} relaxing after a long week",
    "is renovating an old flat in the centre of {city}",
    "started a small online shop selling prints of {thing}",
    "does not like crowded places and avoids the market in {city} on Saturdays",
    "keeps a notebook of recipes, mostly about {thing}",
    "reads a chapter before bed and prefers {thing} to television",
    "once missed a flight from {city} because of a strike",
    "volunteers at the library in {city} twice a month",
    "is saving money to buy a house outside {city}",
    "has a cat who sleeps on the bookshelf above the radiator",
    "got a new job at a design studio in {city}",
    "thinks {thing} is overrated but tries it anyway",
    "grew up near the harbour in {city}",
    "has a sister who studies medicine in {city}",
    "runs ten kilometres on most weekdays before work",
    "collects postcards from every city visited, {city} included",
    "is learning Portuguese with an app and a tutor from {city}",
    "lost a phone on the train to {city} and got it back a week later",
]
REPLIES = [
    "Thanks for telling me, I'll keep that in mind.",
    "That sounds lovely. How did it go?",
    "Noted. Is there anything you'd like me to remember about it?",
    "I'm sorry to hear that. Let me know if I can help.",
    "Great news! Congratulations.",
    "Interesting. What made you decide that?",
]


def sentences() -> list[str]:
    """All the distinct sentences of the templates (len(NAMES) x len(FACTS) x 2)."""
    out = []
    for variant in range(2):
        for f, fact in enumerate(FACTS):
            for n, name in enumerate(NAMES):
                city = CITIES[(n * 7 + f * 3 + variant * 5) % len(CITIES)]
                thing = THINGS[(n * 5 + f * 11 + variant * 3) % len(THINGS)]
                out.append(f"{name} {fact.format(city=city, thing=thing)}.")
    return list(dict.fromkeys(out))


def cache_dir() -> Path:
    path = Path(os.environ.get("MEMEX_BENCH_CACHE") or platformdirs.user_cache_dir("memex"))
    path = path / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_sentences(embedder: Embedder) -> tuple[list[str], np.ndarray]:
    """The sentences and their real embeddings (cached)."""
    texts = sentences()
    path = cache_dir() / f"step_anatomy-sentences-{embedder.name}-{len(texts)}.npy"
    if path.exists():
        vectors = np.load(path)
        if vectors.shape == (len(texts), embedder.dim):
            return texts, vectors
    started = time.perf_counter()
    vectors = np.concatenate(
        [embedder.embed(texts[i : i + 256]) for i in range(0, len(texts), 256)]
    ).astype(np.float32)
    np.save(path, vectors)
    print(f"embedded {len(texts)} sentences in {time.perf_counter() - started:.0f} s")
    return texts, vectors


def passage(i: int, texts: list[str], vectors: np.ndarray) -> tuple[str, bytes]:
    """Passage i: two sentences; its vector the normalised sum of theirs."""
    a, b = i % len(texts), (i * 7919 + 13) % len(texts)
    if b == a:
        b = (b + 1) % len(texts)
    vector = vectors[a] + vectors[b]
    vector /= np.linalg.norm(vector)
    return f"{texts[a]} {texts[b]}", vector_blob(vector)


# -- the memory file ---------------------------------------------------------------------------
class Precomputed:
    """An embedder that answers with the vectors the bench already has (recall.add then stores
    messages through the engine's own path without embedding each again); the real embedder
    for any other text."""

    def __init__(self, real: Embedder, vectors: dict[str, np.ndarray]) -> None:
        self.real, self.vectors = real, vectors
        self.name, self.dim = real.name, real.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        if all(t in self.vectors for t in texts):
            return np.stack([self.vectors[t] for t in texts])
        return self.real.embed(texts)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def build(path: Path, messages: int, passages: int, llm: LlamaClient, embedder: Embedder) -> None:
    """One agent with `messages` recall messages and `passages` archival passages, stored
    through the engine's API (recall.add, recall.evict, summaries.add, archival.insert_many)."""
    texts, vectors = embedded_sentences(embedder)
    started = time.perf_counter()
    store = open_store(path, embedder=embedder)
    agent = MemGPTAgent(PERSONA, store, llm, name=AGENT)
    agent.edit_core_memory(
        "human", "Name: Ada. Lives in Lisbon. Works as a nurse. Likes green tea and chess."
    )
    known = dict(zip(texts, vectors, strict=True))
    known.update((reply, vectors[i * 97 % len(texts)]) for i, reply in enumerate(REPLIES))
    store.use_embedder(Precomputed(embedder, known))  # type: ignore[arg-type]
    begin = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)
    times = []
    with store.atomic():
        for i in range(messages):
            turn, kind = divmod(i, 3)
            call = result = None
            if kind == 0:
                role, content = "user", texts[(turn * 31) % len(texts)]
            elif kind == 1:
                call = {
                    "thought": "Reply.",
                    "tool": "send_message",
                    "arguments": {"message": REPLIES[turn % len(REPLIES)]},
                    "request_heartbeat": False,
                }
                role, content = "assistant", json.dumps(call)
            else:
                result = {"tool": "send_message", "status": "OK", "message": "None"}
                role, content = "tool", json.dumps(result)
            tokens = llm.count_message_tokens(ChatMessage(role, content))  # type: ignore[arg-type]
            message = agent.recall.add(
                agent.session_id, role, content, tokens, tool_call=call, tool_result=result
            )
            at = begin + dt.timedelta(minutes=50 * turn + kind)
            times.append((at.isoformat(timespec="microseconds"), message.id))
        store.conn.executemany("UPDATE messages SET created_at = ? WHERE id = ?", times)
    store.use_embedder(embedder)
    ids = [message_id for _, message_id in times]
    paged = ids[: len(ids) - IN_CONTEXT]
    if paged:
        agent.recall.evict(paged)
        agent.summaries.add(
            "Ada is a nurse in Lisbon who likes green tea and chess. Over the past year she "
            "told me about her friends' moves, jobs, trips and hobbies; the details are in "
            "recall and archival memory.",
            paged[0],
            paged[-1],
            llm.name,
        )
    batch = 10_000
    for start in range(0, passages, batch):
        pairs = [passage(i, texts, vectors) for i in range(start, min(passages, start + batch))]
        agent.archival.insert_many([p[0] for p in pairs], vectors=[p[1] for p in pairs])
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    print(
        f"built {path.name}: {messages} messages, {passages} passages in "
        f"{time.perf_counter() - started:.0f} s"
    )


def schema_fingerprint() -> str:
    """The schema a new memory file gets: a cached file is rebuilt when it changes."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "schema.db")
        rows = store.query("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        store.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:10]


def memory_file(messages: int, passages: int, llm: LlamaClient, embedder: Embedder) -> Path:
    name = f"step_anatomy-{schema_fingerprint()}-{messages}m-{passages}p-{embedder.name}.db"
    path = cache_dir() / name
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        for leftover in partial.parent.glob(partial.name + "*"):
            leftover.unlink()
        build(partial, messages, passages, llm, embedder)
        for suffix in ("-wal", "-shm", ".lock"):
            Path(str(partial) + suffix).unlink(missing_ok=True)
        partial.rename(path)
    return path


# -- the steps ---------------------------------------------------------------------------------
class Steered(PassedOn):
    """The real client; each model call's grammar is narrowed to the tool the plan names next
    (the model still writes the whole reply). Everything else is the real client's."""

    def __init__(self, inner: LlamaClient) -> None:
        self.inner = inner
        self.plan: list[str] = []
        self._schemas = {s.name: reply_schema([s]) for s in tool_specs()}

    def side_client(self) -> LlamaClient:
        return self.inner.side_client()

    def complete(
        self,
        messages: list[ChatMessage],
        reply_schema: dict[str, Any] | None,
        max_tokens: int,
        on_text: TextSink | None = None,
    ) -> Completion:
        if reply_schema is not None and self.plan:
            reply_schema = self._schemas[self.plan.pop(0)]
        return self.inner.complete(messages, reply_schema, max_tokens, on_text=on_text)


STEPS = {
    "search": (
        "Do you remember what Greta told you about her trip? Search your archival memory.",
        ["archival_memory_search", "send_message", "send_message"],
    ),
    "plain": ("Thanks, that's all for now. Have a nice evening!", ["send_message"]),
}


def run_once(source: Path, llm: LlamaClient, embedder: Embedder) -> dict[str, Any]:
    """Warm-up, then one step of each kind, on a fresh copy of the memory file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "memex.db"
        shutil.copyfile(source, path)
        store = open_store(path, embedder=embedder)
        client = Steered(llm)
        agent = MemGPTAgent(PERSONA, store, client, name=AGENT)  # type: ignore[arg-type]
        client.plan = ["archival_memory_search", "send_message", "send_message"]
        agent.step("Hello again! Can you look up what Luca said about Porto?")  # warm-up
        out: dict[str, Any] = {}
        for kind, (text, plan) in STEPS.items():
            client.plan = list(plan)
            result = agent.step(text)
            tools = [c.name for c in result.tool_calls]
            out[kind] = {
                "timings": result.timings,
                "tools": tools,
                "calls": result.model_calls,
                "search_hits": next(
                    (op.summary for op in result.memory_operations if "searched" in op.summary),
                    "",
                ),
            }
        counts = (agent.recall.count(), agent.archival.count())
        store.close()
    out["counts"] = counts
    return out


# -- the report --------------------------------------------------------------------------------
def mean_timings(samples: list[StepTimings]) -> StepTimings:
    names = dict.fromkeys(n for t in samples for n in t.phases)
    return StepTimings(
        statistics.fmean(t.wall_s for t in samples),
        {n: statistics.fmean(t.seconds(n) for t in samples) for n in names},
    )


def report(
    measured: dict[str, tuple[str, list[dict[str, Any]]]], args: argparse.Namespace, threads: int
) -> str:
    kinds = list(STEPS)
    model_name, runs = measured[args.model]
    means = {k: mean_timings([r[k]["timings"] for r in runs]) for k in kinds}
    command = f"python -m bench.step_anatomy --runs {args.runs}"
    command += f" --threads {args.threads}" if args.threads else ""
    command += f" --model {args.model}" if args.model != "chat" else ""
    command += f" --compare {args.compare}" if args.compare else ""
    lines = [
        BEGIN,
        f"## Step anatomy: {args.messages:,} recall messages, {args.passages:,} archival passages",
        "",
        f"`{command} --write`, {dt.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        f'{threads} model threads, chat model {model_name} ("{args.model}"), n_ctx {N_CTX}, '
        f"{IN_CONTEXT} messages in the window. Mean of {len(runs)} "
        "runs, each on a fresh copy of the memory file after a warm-up step; the figures are "
        "each step's own `timings` (engine.timing), so the rows add up to the step.",
        "",
        "| phase | " + " | ".join(f"{k} step ms | %" for k in kinds) + " |",
        "|---|" + "---|---|" * len(kinds),
    ]
    for name, _ in means[kinds[0]].rows():
        label = LABELS.get(name, name)
        model = " (model)" if name in StepTimings.MODEL_PHASES else ""
        cells = []
        for k in kinds:
            s = means[k].seconds(name)
            cells.append(f"{1000 * s:.1f} | {100 * s / means[k].wall_s:.1f}")
        lines.append(f"| {label}{model} | " + " | ".join(cells) + " |")
    for title, fn in (
        ("**model** (the rows marked model)", lambda t: t.model_s),
        ("**engine overhead** (the rest)", lambda t: t.engine_s),
        ("**step (wall)**", lambda t: t.wall_s),
    ):
        cells = [
            f"{1000 * fn(means[k]):.1f} | {100 * fn(means[k]) / means[k].wall_s:.1f}" for k in kinds
        ]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines.append("")
    for k in kinds:
        overheads = [r[k]["timings"].engine_s for r in runs]
        shares = [r[k]["timings"].engine_s / r[k]["timings"].wall_s for r in runs]
        worst_ms, worst_share = 1000 * max(overheads), max(shares)
        ok = worst_ms < GOAL_MS and worst_share < GOAL_SHARE
        calls = runs[-1][k]["calls"]
        lines.append(
            f"- {k} step (tools {', '.join(runs[-1][k]['tools'])}; "
            f"{sum(c.completion_tokens for c in calls)} tokens generated in {len(calls)} model "
            f"calls): engine overhead {', '.join(f'{1000 * o:.1f}' for o in overheads)} ms, "
            f"{', '.join(f'{100 * s:.2f}' for s in shares)}% of the step; worst "
            f"{worst_ms:.1f} ms and {100 * worst_share:.2f}%: **goals (< {GOAL_MS:.0f} ms, "
            f"< {100 * GOAL_SHARE:.0f}%) {'met' if ok else 'MISSED'}**"
        )
    hits = runs[-1]["search"]["search_hits"]
    messages, passages = runs[-1]["counts"]
    lines += [
        f"- the search: {hits}; the file held {messages:,} messages and {passages:,} passages "
        "at the end of the run",
        "",
    ]
    lines += model_comparison(measured)
    lines.append(END)
    return "\n".join(lines)


def model_comparison(measured: dict[str, tuple[str, list[dict[str, Any]]]]) -> list[str]:
    """The same steps with each chat model, side by side (step time, where it went, speed)."""
    if len(measured) < 2:
        return []
    models = list(measured)
    lines = [
        "The same runs with each chat model (mean ms of the step; decoding speed in tokens/s):",
        "",
        "| step | " + " | ".join(f"{m} ({measured[m][0]})" for m in models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for kind in STEPS:
        rows: dict[str, list[str]] = {"wall": [], "prompt": [], "decode": [], "speed": []}
        for model in models:
            runs = measured[model][1]
            mean = mean_timings([r[kind]["timings"] for r in runs])
            tokens = statistics.fmean(
                sum(c.completion_tokens for c in r[kind]["calls"]) for r in runs
            )
            decoding = mean.seconds("generation")
            rows["wall"].append(f"{1000 * mean.wall_s:.0f}")
            rows["prompt"].append(f"{1000 * mean.seconds('prompt_eval'):.0f}")
            rows["decode"].append(f"{1000 * decoding:.0f} ({tokens:.0f} tokens)")
            rows["speed"].append(f"{tokens / decoding:.1f}" if decoding else "-")
        lines += [
            f"| {kind} step (wall) | " + " | ".join(rows["wall"]) + " |",
            f"| {kind}: prompt evaluation | " + " | ".join(rows["prompt"]) + " |",
            f"| {kind}: decoding | " + " | ".join(rows["decode"]) + " |",
            f"| {kind}: decoding tokens/s | " + " | ".join(rows["speed"]) + " |",
        ]
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument(
        "--threads", type=int, default=None, help="model threads (default: every core)"
    )
    parser.add_argument("--model", default="chat", help='the chat model: "chat" (the default)')
    parser.add_argument(
        "--compare", default=None, help='another chat model run the same way after it ("fast")'
    )
    parser.add_argument("--write", action="store_true", help="write the results to BENCHMARKS.md")
    args = parser.parse_args(argv)
    embedder = default_embedder()
    measured = {}
    for model in [args.model] + ([args.compare] if args.compare else []):
        llm = LlamaClient(model_path(model), n_ctx=N_CTX, n_threads=args.threads)
        try:
            source = memory_file(args.messages, args.passages, llm, embedder)
            runs = []
            for i in range(args.runs):
                runs.append(run_once(source, llm, embedder))
                print(f"{model}: run {i + 1}/{args.runs} done", file=sys.stderr)
            measured[model] = (llm.name, runs)
        finally:
            llm.close()
    section = report(measured, args, args.threads or available_cpus())
    print(section)
    if args.write:
        write_section(section, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
