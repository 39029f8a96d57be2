"""Archival memory at scale, measured side by side in one run:

    python -m bench.archival_scale [--sizes 100000 1000000] [--queries 100] [--write]

For each size, a memory file with that many passages for one agent (built once and cached in
the benchmark cache folder, see bench/corpus.py), then for held-out real sentences as queries:

- archival_memory_search end to end (queries: the first six words of held-out sentences,
  as long as the model's own queries) (the tool the model calls: embedding the query, BM25,
  nearest vectors, fusion, reading the passages, the text the model gets): p50 / p95;
- its parts: query embedding, BM25, nearest vectors;
- the vector part against exact search: recall@10 of `VectorTable.nearest` against the true
  10 nearest by cosine (NumPy over every vector), and its latency against sqlite-vec's vec0
  KNN over the same vectors (the previous engine) and a NumPy float32 matrix product;
- the first search after opening the file (loading the sign bits into memory).

Then ingest: 10,000 new passages (--ingest) through ArchivalMemory.insert_many in batches (embedding
included), passages per second; and peak memory (RSS) of a process with the default chat model
and embedder loaded, the 100k file open and searched, and one step taken.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import apsw
import numpy as np
import sqlite_vec

from bench import corpus
from bench.report import write_section
from engine import MemGPTAgent, Persona
from engine.llm.scripted import ScriptedClient
from engine.memory.archival import PASSAGE_INDEX, ArchivalMemory
from engine.memory.search import VECTOR_CANDIDATES, vector_blob
from engine.store.db import open_store
from engine.store.embed import default_embedder

BEGIN, END = "<!-- archival_scale:begin -->", "<!-- archival_scale:end -->"
AGENT = "scale"
REAL_SENTENCES = 100_000  # real embeddings; past this, pairs of them (bench/corpus.py)
INGEST = 10_000
INGEST_BATCH = 256
QUERY_WORDS = 6


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# -- building the files -----------------------------------------------------------------------
def build_file(size: int, texts: list[str], vectors: np.ndarray, embedder: object) -> Path:
    path = corpus.cache_dir() / f"archival-{size}-real{len(texts)}-{corpus.model_tag(embedder)}.db"
    done = path.with_suffix(".done")
    if done.exists():
        return path
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    started = time.perf_counter()
    with open_store(path, embedder=embedder) as store:  # type: ignore[arg-type]
        agent = MemGPTAgent(Persona("Sam", "helpful"), store, ScriptedClient(), name=AGENT)
        archive = ArchivalMemory(store, agent.agent_id)
        for chunk_texts, chunk_vectors in corpus.passages(size, texts, vectors):
            archive.insert_many(chunk_texts, vectors=[vector_blob(v) for v in chunk_vectors])
            print(f"  {path.name}: {archive.count()}/{size}", file=sys.stderr, flush=True)
    done.write_text(f"{time.perf_counter() - started:.1f}\n")
    return path


def vec0_file(size: int, texts: list[str], vectors: np.ndarray, model: str) -> Path:
    """The same vectors in a sqlite-vec vec0 table, as the engine stored them before."""
    path = corpus.cache_dir() / f"vec0-{size}-real{len(texts)}-{model}.db"
    done = path.with_suffix(".done")
    if done.exists():
        return path
    path.unlink(missing_ok=True)
    conn = _vec_connection(path)
    conn.execute(
        "CREATE VIRTUAL TABLE v USING vec0(agent_id INTEGER PARTITION KEY,"
        " embedding float[384] distance_metric=cosine)"
    )
    rowid = 0
    for _, chunk_vectors in corpus.passages(size, texts, vectors):
        with conn:
            for vector in chunk_vectors:
                rowid += 1
                conn.execute(
                    "INSERT INTO v(rowid, agent_id, embedding) VALUES (?, 1, ?)",
                    (rowid, vector_blob(vector)),
                )
    conn.close()
    done.write_text("ok\n")
    return path


def _vec_connection(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    return conn


def all_vectors(size: int, texts: list[str], vectors: np.ndarray) -> np.ndarray:
    return np.concatenate([v for _, v in corpus.passages(size, texts, vectors)])


# -- measuring --------------------------------------------------------------------------------
def measure_size(
    size: int,
    texts: list[str],
    vectors: np.ndarray,
    queries: list[str],
    query_vectors: np.ndarray,
    embedder: object,
) -> dict[str, object]:
    path = build_file(size, texts, vectors, embedder)
    truth_matrix = all_vectors(size, texts, vectors)
    result: dict[str, object] = {"size": size}
    with open_store(path, embedder=embedder) as store:  # type: ignore[arg-type]
        agent = MemGPTAgent(None, store, ScriptedClient(), name=AGENT)
        ids = np.array(
            [r[0] for r in store.query("SELECT id FROM passages ORDER BY id")], dtype=np.int64
        )
        table = PASSAGE_INDEX.vectors
        started = time.perf_counter()
        table.nearest(store, agent.agent_id, query_vectors[0], VECTOR_CANDIDATES)
        result["first_search_s"] = time.perf_counter() - started

        # each measure in its own pass: NumPy's BLAS threads spin on after the exact search
        # and would slow whatever ran next
        tool = []
        for query in queries:
            started = time.perf_counter()
            agent.tools.archival_memory_search(query, 10)
            tool.append(time.perf_counter() - started)
        embed, text, nearest = [], [], []
        for query, qv in zip(queries, query_vectors, strict=True):
            started = time.perf_counter()
            store.embedder.embed_query(query)
            embed.append(time.perf_counter() - started)
            started = time.perf_counter()
            PASSAGE_INDEX.text_hits_for(store, agent.agent_id, query)
            text.append(time.perf_counter() - started)
            started = time.perf_counter()
            table.nearest(store, agent.agent_id, qv, VECTOR_CANDIDATES)
            nearest.append(time.perf_counter() - started)
        numpy_s, recalls = [], []
        for qv in query_vectors:
            found = table.nearest(store, agent.agent_id, qv, VECTOR_CANDIDATES)
            started = time.perf_counter()
            scores = truth_matrix @ qv
            best = np.argpartition(-scores, 10)[:10]
            numpy_s.append(time.perf_counter() - started)
            truth = set(ids[best].tolist())
            recalls.append(len(truth & {i for i, _ in found[:10]}) / 10)

    conn = _vec_connection(vec0_file(size, texts, vectors, corpus.model_tag(embedder)))
    vec0 = []
    for qv in query_vectors[: min(len(query_vectors), 20)]:
        started = time.perf_counter()
        conn.execute(
            "SELECT rowid, distance FROM v WHERE embedding MATCH ? AND agent_id = 1 AND k = ?",
            (vector_blob(qv), VECTOR_CANDIDATES),
        ).fetchall()
        vec0.append(time.perf_counter() - started)
    conn.close()
    result.update(
        tool_p50=percentile(tool, 50),
        tool_p95=percentile(tool, 95),
        embed_p50=percentile(embed, 50),
        text_p50=percentile(text, 50),
        text_p95=percentile(text, 95),
        nearest_p50=percentile(nearest, 50),
        nearest_p95=percentile(nearest, 95),
        numpy_p50=percentile(numpy_s, 50),
        vec0_p50=percentile(vec0, 50),
        recall_at_10=float(np.mean(recalls)),
        recall_min=float(np.min(recalls)),
    )
    return result


def measure_ingest(texts: list[str], embedder: object, tmp: Path) -> dict[str, float]:
    """Passages per second through insert_many in batches, embedding included."""
    path = tmp / "ingest.db"
    path.unlink(missing_ok=True)
    with open_store(path, embedder=embedder) as store:  # type: ignore[arg-type]
        agent = MemGPTAgent(Persona("Sam", "helpful"), store, ScriptedClient(), name="ingest")
        archive = ArchivalMemory(store, agent.agent_id)
        started = time.perf_counter()
        for start in range(0, len(texts), INGEST_BATCH):
            archive.insert_many(texts[start : start + INGEST_BATCH])
        batched = time.perf_counter() - started
        one = texts[:100]
        started = time.perf_counter()
        for passage in one:
            archive.insert(passage)
        single = time.perf_counter() - started
        apart = texts[:2000]
        store_only = time.perf_counter()
        vectors = [vector_blob(v) for v in store.embedder.embed(apart)]  # type: ignore[attr-defined]
        embed_s = time.perf_counter() - store_only
        started = time.perf_counter()
        archive.insert_many(apart, vectors=vectors)
        write_s = time.perf_counter() - started
    return {
        "batched_per_s": len(texts) / batched,
        "single_per_s": len(one) / single,
        "embed_per_s": len(apart) / embed_s,
        "write_per_s": len(apart) / write_s,
    }


def measure_rss(path: Path) -> dict[str, float]:
    """Peak RSS (VmHWM) of a fresh process: default models loaded, the file open, a search,
    a step. Linux only (/proc)."""
    script = f"""
import json
from engine import MemGPTAgent
from engine.llm.factory import default_llm_client
from engine.store.db import open_store
from engine.store.embed import default_embedder
def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {{k: int(fields[k].split()[0]) / 1024 for k in ("VmHWM", "RssAnon", "RssFile")}}
def rss(): return status()["VmHWM"]  # peak; ru_maxrss would count the parent's, before exec
out = {{"python": rss()}}
llm = default_llm_client(); embedder = default_embedder(); embedder.embed_one("warm up")
out["models"] = rss()
store = open_store({str(path)!r}, embedder=embedder)
agent = MemGPTAgent(None, store, llm, name={AGENT!r})
agent.tools.archival_memory_search("where did I put the spare keys", 10)
out["searched"] = rss()
agent.step("Hello! What do you remember about me?")
out["stepped"] = rss()
out["anon"], out["file"] = status()["RssAnon"], status()["RssFile"]
print(json.dumps(out))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=os.environ
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- report -----------------------------------------------------------------------------------
def report(
    sizes: list[dict[str, object]],
    ingest: dict[str, float] | None,
    rss: dict[str, float] | None,
    meta: dict[str, object],
) -> str:
    lines = [
        BEGIN,
        "## Archival memory at scale (`python -m bench.archival_scale --write`)",
        "",
        f"{meta['when']} · {meta['machine']} · {meta['queries']} held-out real sentences as"
        f" queries (their first {QUERY_WORDS} words) · passages: {meta['real']:,} real sentences with real"
        f" {meta['embedder']} embeddings,"
        " past that two real sentences each (vector: the normalised sum of theirs; cosine to"
        f" the real embedding of the pair {meta['fidelity']:.3f} on average) · each search"
        " timed once, in the first pass after the file is opened (its memory map still cold)",
        "",
        "| passages | archival_memory_search p50 / p95 ms | query embedding ms | BM25 p50 / p95 ms"
        " | nearest vectors p50 / p95 ms | recall@10 (min) | vec0 KNN ms | NumPy f32 ms"
        " | nearest / vec0 | first search s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sizes:
        ratio = float(r["nearest_p50"]) / float(r["vec0_p50"])  # type: ignore[arg-type]
        lines.append(
            f"| {int(r['size']):,} | {ms(r['tool_p50'])} / {ms(r['tool_p95'])}"  # type: ignore[arg-type]
            f" | {ms(r['embed_p50'])} | {ms(r['text_p50'])} / {ms(r['text_p95'])}"  # type: ignore[arg-type]
            f" | {ms(r['nearest_p50'])} / {ms(r['nearest_p95'])}"  # type: ignore[arg-type]
            f" | {r['recall_at_10']:.3f} ({r['recall_min']:.1f}) | {ms(r['vec0_p50'])}"
            f" | {ms(r['numpy_p50'])} | {ratio:.2f}x | {float(r['first_search_s']):.2f} |"  # type: ignore[arg-type]
        )
    if ingest:
        lines += [
            "",
            f"Ingest of {meta['ingest']:,} passages in batches of {INGEST_BATCH}, embedding included:"
            f" **{ingest['batched_per_s']:.0f} passages/s** (one at a time:"
            f" {ingest['single_per_s']:.0f}/s; embedding alone {ingest['embed_per_s']:.0f}/s;"
            f" writing alone {ingest['write_per_s']:.0f}/s).",
        ]
    if rss:
        lines += [
            "",
            f"Peak RSS: {rss['python']:.0f} MiB after imports, {rss['models']:.0f} MiB with the"
            f" default chat model and embedder loaded, {rss['searched']:.0f} MiB with the"
            f" 100,000-passage file open and searched, {rss['stepped']:.0f} MiB after one step"
            f" (then {rss['anon']:.0f} MiB private, {rss['file']:.0f} MiB mapped files: the"
            " model weights and the memory file, shared with the OS's file cache).",
        ]
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--real", type=int, default=REAL_SENTENCES)
    parser.add_argument("--ingest", type=int, default=INGEST, help="passages ingested")
    parser.add_argument("--no-ingest", action="store_true")
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    embedder = default_embedder()
    texts, vectors = corpus.embedded_sentences(args.real, embedder)
    held_out = corpus.cache_dir().joinpath("sentences.txt").read_text().splitlines()
    # never among the passages; cut to six words, the length of the model's own queries
    queries = [" ".join(s.split()[:QUERY_WORDS]) for s in held_out[-args.queries :]]
    query_vectors = np.stack([embedder.embed_query(q) for q in queries])
    fidelity = corpus.pair_fidelity(texts, vectors, embedder)
    print(f"pair stand-in fidelity: {fidelity:.3f}", file=sys.stderr)

    results = []
    for size in args.sizes:
        result = measure_size(size, texts, vectors, queries, query_vectors, embedder)
        print(json.dumps(result), file=sys.stderr, flush=True)
        results.append(result)

    ingest = None
    if not args.no_ingest:
        fresh = held_out[-args.queries - args.ingest : -args.queries]
        ingest = measure_ingest(fresh, embedder, corpus.cache_dir())
        print(json.dumps(ingest), file=sys.stderr)
    rss = None
    if not args.no_rss and 100_000 in args.sizes:
        rss = measure_rss(build_file(100_000, texts, vectors, embedder))
        print(json.dumps(rss), file=sys.stderr)

    meta = {
        "when": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "queries": len(queries),
        "real": min(args.real, max(args.sizes)),
        "fidelity": fidelity,
        "embedder": embedder.name,
        "ingest": args.ingest,
    }
    section = report(results, ingest, rss, meta)
    print(section)
    if args.write:
        write_section(section, BEGIN, END)


if __name__ == "__main__":
    main()
