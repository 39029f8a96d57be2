"""Retrieval quality: does the search find the evidence? Real embedder, real memory file, no chat model.

    python -m bench.retrieval PATH [--methods bm25,vector,hybrid] [--conversations 0,1,...]
        [--embedder embed|minilm] [--tier archival|recall]

PATH is the LoCoMo dev set (CC BY-NC, read from PATH, never copied here). Each conversation's
turns go into a memory file as bench.memory_qa stores them: with `--tier archival` (the
default) as archival passages "[date] Speaker: text", searched as archival_memory_search
searches; with `--tier recall` as the agent's past messages "Speaker: text" (the first speaker
the user, the other the assistant, each dated), searched as conversation_search searches.
Every question of categories 1-4 is searched, and a hit is an evidence turn among the first k
results. Prints R@1/5/10 and MRR per method and category, and the query time.

Methods:
- bm25: FTS5 BM25 alone (the engine's word search, its selective words);
- vector: nearest embeddings alone (sqlite-vec);
- rrf60: the two fused by reciprocal rank with Cormack et al.'s constant 60, nothing more (the
  engine's search until 2026-12-04);
- fused: the same with the engine's constant (engine.memory.search.RRF_K);
- near1: the fusion, each passage then gaining 0.25 of the better score of the passages just
  before and after it in one text (the engine's search from 2026-12-04 to 2026-12-07);
- near2: the same, and 0.1 of the better of the passages two places away;
- text20: near2, and each passage then gaining 0.2 of the best score of its text (the
  engine's search of 2026-12-07);
- hybrid: what the tier's search ranks by (engine.memory.search.HybridIndex.ranked): near2,
  and each passage then gaining a share of the best score of its text (engine.memory.search,
  NEIGHBOUR_SHARES and TEXT_SHARE: 0.4).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.memory_qa import Turn, locomo_turns, turns_into_recall
from engine.memory.archival import PASSAGE_INDEX, ArchivalMemory
from engine.memory.recall import MESSAGE_INDEX, RecallMemory
from engine.memory.search import HybridIndex, best_first, fuse, fused_scores, with_context
from engine.store.db import Store, now_iso, open_store
from engine.store.embed import Embedder
from models.fetch import model_path

CUTOFFS = (1, 5, 10)
TIERS = ("archival", "recall")


@dataclass(frozen=True)
class Searched:
    """One agent's tier in a memory file, as the methods search it."""

    store: Store
    agent_id: int
    index: HybridIndex


Method = Callable[[Searched, str], list[int]]


def _bm25(tier: Searched, query: str) -> list[int]:
    return tier.index.text_hits_for(tier.store, tier.agent_id, query)


def _vector(tier: Searched, query: str) -> list[int]:
    vector = tier.store.embedder.embed_query(query)
    return tier.index.vector_hits_for(tier.store, tier.agent_id, vector)


def _rrf60(tier: Searched, query: str) -> list[int]:
    return fuse(_bm25(tier, query), _vector(tier, query), k=60)


def _fused(tier: Searched, query: str) -> list[int]:
    return fuse(_bm25(tier, query), _vector(tier, query))


def _in_text(shares: tuple[float, ...], text_share: float) -> Method:
    def ranked(tier: Searched, query: str) -> list[int]:
        scores = fused_scores(_bm25(tier, query), _vector(tier, query))
        texts = tier.index.texts(tier.store, scores)
        return best_first(with_context(scores, texts, shares, text_share))

    return ranked


def _hybrid(tier: Searched, query: str) -> list[int]:
    return tier.index.ranked(tier.store, tier.agent_id, query)


METHODS: dict[str, Method] = {
    "bm25": _bm25,
    "vector": _vector,
    "rrf60": _rrf60,
    "fused": _fused,
    "near1": _in_text((0.25,), 0.0),
    "near2": _in_text((0.25, 0.1), 0.0),
    "text20": _in_text((0.25, 0.1), 0.2),
    "hybrid": _hybrid,
}


def _new_agent(store: Store) -> tuple[int, int]:
    """A bench agent and a session of it."""
    with store.atomic() as conn:
        conn.execute(
            "INSERT INTO agents(name, persona_json, created_at) VALUES ('bench', ?, ?)",
            (json.dumps({"name": "bench", "description": ""}), now_iso()),
        )
        agent_id = int(conn.last_insert_rowid())
        conn.execute(
            "INSERT INTO sessions(agent_id, started_at) VALUES (?, ?)", (agent_id, now_iso())
        )
        return agent_id, int(conn.last_insert_rowid())


def run(
    path: Path,
    methods: list[str],
    conversations: list[int] | None,
    embedder_key: str = "embed",
    tier: str = "archival",
) -> dict[str, Any]:
    data = json.loads(path.read_text())
    embedder = Embedder(model_path(embedder_key))
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="memex-retrieval-") as tmp:
            for index, sample in enumerate(data):
                if conversations is not None and index not in conversations:
                    continue
                rows += _conversation(Path(tmp) / f"c{index}.db", sample, methods, embedder, tier)
                print(f"  conversation {index}: {len(rows)} questions", file=sys.stderr)
    finally:
        embedder.close()
    return {
        "embedder": embedder_key,
        "tier": tier,
        "methods": methods,
        "questions": len(rows),
        "summary": summarise(rows, methods),
    }


def _store_turns(
    store: Store, turns: list[Turn], user: str, tier: str
) -> tuple[Searched, dict[int, str]]:
    """One conversation's turns stored in `tier` of a new agent (in recall, `user`'s turns as
    the user's messages); the tier searched and row id -> dia_id."""
    agent_id, session_id = _new_agent(store)
    if tier == "archival":
        ids = ArchivalMemory(store, agent_id).insert_many(
            [t.passage for t in turns], source="locomo", created_at=[t.when for t in turns]
        )
        return Searched(store, agent_id, PASSAGE_INDEX), dict(
            zip(ids, (t.dia_id for t in turns), strict=True)
        )
    # no chat model here to count tokens, and the search does not read the count
    recall = RecallMemory(store, agent_id)
    dia_of = turns_into_recall(recall, session_id, turns, user, lambda role, text: 0)
    return Searched(store, agent_id, MESSAGE_INDEX), dia_of


def _conversation(
    path: Path, sample: dict[str, Any], methods: list[str], embedder: Embedder, tier: str
) -> list[dict[str, Any]]:
    store = open_store(path, embedder=embedder)
    try:
        user = sample["conversation"]["speaker_a"]
        searched, dia_of = _store_turns(store, locomo_turns(sample), user, tier)
        rows = []
        for qa in sample["qa"]:
            if qa.get("category") not in (1, 2, 3, 4) or not qa.get("evidence"):
                continue
            row: dict[str, Any] = {"category": qa["category"]}
            evidence = set(qa["evidence"])
            for name in methods:
                start = time.perf_counter()
                ranked = METHODS[name](searched, qa["question"])
                row[f"{name}_ms"] = (time.perf_counter() - start) * 1000
                dias = [dia_of.get(i) for i in ranked]
                row[name] = next((r for r, d in enumerate(dias, 1) if d in evidence), None)
            rows.append(row)
        return rows
    finally:
        store.close()


def summarise(rows: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    def stats(group: list[dict[str, Any]], name: str) -> dict[str, float]:
        n = len(group) or 1
        ranks = [r[name] for r in group]
        out = {f"r{k}": sum(1 for x in ranks if x is not None and x <= k) / n for k in CUTOFFS}
        out["mrr"] = sum(1 / x for x in ranks if x is not None) / n
        out["p50_ms"] = statistics.median(r[f"{name}_ms"] for r in group) if group else 0.0
        return out

    by_category: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row)
    return {
        name: {
            "all": stats(rows, name),
            **{str(c): stats(g, name) for c, g in sorted(by_category.items())},
        }
        for name in methods
    }


CATEGORY_NAMES = {"1": "multi-hop", "2": "temporal", "3": "open-domain", "4": "single-hop"}


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['questions']} questions, embedder {result.get('embedder', 'embed')}, tier "
        f"{result.get('tier', 'archival')}",
        "| method | group | R@1 | R@5 | R@10 | MRR | p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, groups in result["summary"].items():
        for group, s in groups.items():
            label = CATEGORY_NAMES.get(group, group)
            lines.append(
                f"| {name} | {label} | {s['r1']:.3f} | {s['r5']:.3f} | {s['r10']:.3f} "
                f"| {s['mrr']:.3f} | {s['p50_ms']:.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--conversations", default=None, help="indexes, e.g. 0,1")
    parser.add_argument("--embedder", default="embed", help='"embed" (default) or "minilm"')
    parser.add_argument("--tier", choices=TIERS, default="archival")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"--methods: unknown {sorted(unknown)}; known {sorted(METHODS)}")
    chosen = [int(c) for c in args.conversations.split(",")] if args.conversations else None
    result = run(args.path, methods, chosen, args.embedder, args.tier)
    print(json.dumps(result) if args.json else render(result))


if __name__ == "__main__":
    main()
