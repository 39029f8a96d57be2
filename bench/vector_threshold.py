"""Where an embedder's "no match" line lies: cosine distances from questions to the turns that
answer them, and to the turns of another conversation. Real embedders, no chat model.

    python -m bench.vector_threshold PATH [--embedders minilm,embed] [--questions 80]

PATH is the LoCoMo dev set (CC BY-NC, read from PATH, never copied here). Conversations 0 and 2
are asked, against their evidence turns (related) and every turn of conversations 1 and 3
(unrelated). For each threshold it prints the share of related texts kept and of unrelated
ones let through; engine.store.profiles sets each model's max_distance from it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.memory_qa import locomo_turns
from engine.store.embed import Embedder
from models.fetch import model_path

PAIRS = ((0, 1), (2, 3))  # (asked, unrelated)
THRESHOLDS = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)


def distances(
    embedder: Embedder, data: list[dict], questions: int
) -> tuple[np.ndarray, np.ndarray]:
    related: list[float] = []
    unrelated: list[float] = []
    for asked, other in PAIRS:
        turns = locomo_turns(data[asked])
        vectors = embedder.embed([t.passage for t in turns])
        others = embedder.embed([t.passage for t in locomo_turns(data[other])])
        row_of = {t.dia_id: i for i, t in enumerate(turns)}
        qas = [q for q in data[asked]["qa"] if q["category"] in (1, 2, 3, 4)][:questions]
        for qa in qas:
            query = embedder.embed_query(qa["question"])
            related += [
                1 - float(vectors[row_of[e]] @ query) for e in qa["evidence"] if e in row_of
            ]
            unrelated += (1 - others @ query).tolist()
    return np.asarray(related), np.asarray(unrelated)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--embedders", default="minilm,embed")
    parser.add_argument("--questions", type=int, default=80, help="per asked conversation")
    args = parser.parse_args(argv)
    data = json.loads(args.path.read_text())
    print("| embedder | threshold | related kept | unrelated let through |")
    print("|---|---|---|---|")
    for key in args.embedders.split(","):
        embedder = Embedder(model_path(key))
        try:
            related, unrelated = distances(embedder, data, args.questions)
        finally:
            embedder.close()
        for t in THRESHOLDS:
            print(f"| {key} | {t} | {np.mean(related <= t):.3f} | {np.mean(unrelated <= t):.3f} |")
        median = np.median(unrelated)
        print(f"| {key} | median unrelated {median:.3f} | n={len(related)} | n={len(unrelated)} |")


if __name__ == "__main__":
    main()
