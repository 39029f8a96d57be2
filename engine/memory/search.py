"""Hybrid search shared by recall and archival: FTS5 BM25 fused with nearest vectors, and paging."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine import timing
from engine.memory.vectors import VectorTable

if TYPE_CHECKING:
    from engine.store.db import Store

# Reciprocal-rank-fusion constant: an id's score from a list is 1 / (RRF_K + rank). Cormack et
# al.'s 60 suits long lists of many systems; with two lists the top ranks carry the answer, and
# a small constant keeps their lead (bench/retrieval.py, LoCoMo: R@10 0.725 -> 0.757 with
# MiniLM, 0.80 -> 0.82 with nomic-embed, at 10 against 60; 5 and 20 do no better).
RRF_K = 10
# BM25 scores every document holding any query word: "the" alone is in most of them. Words are
# kept rarest first while the documents they reach stay under this budget (the rarest word is
# always kept): the common words dropped are those BM25 weighs least. 22 ms -> 0.8 ms for a
# 9-word query at 10k passages; the budget bounds it at any size. At 100k passages BM25 takes
# 4.8 ms with a budget of 5,000, 2.1 ms with 2,000 (bench/archival_scale.py queries).
TEXT_DOCUMENT_BUDGET = 2_000
TEXT_HITS = 1_000  # documents BM25 returns for fusion
VECTOR_CANDIDATES = 100  # nearest neighbours considered per query
# A conversation's turn, or a document's part, means little alone: the answer to a question is
# often the reply to the turn that matched it, or said a few turns on in the same talk. So an
# entry gains shares of the scores around it in its text (HybridIndex.thread_sql: one thread,
# found entries stored within NEIGHBOUR_GAP of each other):
# - NEIGHBOUR_SHARES[d - 1] of the better score of the entries d places before and after it;
# - TEXT_SHARE of the best score in its text: the talk or document that matched most.
# bench/retrieval.py, LoCoMo's 760 questions: R@5 0.738 -> 0.758, R@10 0.824 -> 0.847 against
# one neighbour each side at 0.25 and no share of the text (R@10 0.684 -> 0.724 came from that
# one neighbour, with MiniLM); each of the two additions alone gave about half of it. A share
# of 0.4 of the text instead of 0.2: R@10 0.847 -> 0.859 (single-hop questions 0.876 -> 0.897,
# the others the same), in both tiers, rising evenly from 0.2 to 0.5 and in 4 of the 5 talks.
NEIGHBOUR_SHARES = (0.25, 0.1)
TEXT_SHARE = 0.4
NEIGHBOUR_GAP = dt.timedelta(hours=1)  # entries stored further apart are not one text
_WORD = re.compile(r"\w+", re.UNICODE)
_BESIDE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memex-query-embed")


def fts_query(text: str) -> str | None:
    """A safe FTS5 MATCH expression: every word quoted, any word may match (OR)."""
    words = list(dict.fromkeys(_WORD.findall(text.lower())))
    return _any_of(words) if words else None


def _any_of(words: Sequence[str]) -> str:
    """An FTS5 MATCH expression for any of `words`, each quoted (no FTS5 syntax gets through)."""
    return " OR ".join(f'"{w}"' for w in words)


def selective_words(store: Store, fts_table: str, words: Sequence[str]) -> tuple[list[str], bool]:
    """The words of a query worth a BM25 search, rarest first (see TEXT_DOCUMENT_BUDGET), and
    whether they reach few enough documents to rank them all by BM25."""
    unique = list(dict.fromkeys(words))
    if not unique:
        return [], True
    held = {word: _documents_holding(store, fts_table, word) for word in unique}
    ranked = sorted(unique, key=held.__getitem__)
    kept, reached = [ranked[0]], held[ranked[0]]
    for word in ranked[1:]:
        if reached + held[word] > TEXT_DOCUMENT_BUDGET:
            break
        kept.append(word)
        reached += held[word]
    return kept, reached <= TEXT_DOCUMENT_BUDGET


def _documents_holding(store: Store, fts_table: str, word: str) -> int:
    """How many documents hold `word`, counted up to one past the budget (a common word's
    posting list is read no further than that)."""
    row = store.query_one(
        f"SELECT count(*) FROM (SELECT 1 FROM {fts_table} WHERE {fts_table} MATCH ? LIMIT ?)",
        (f'"{word}"', TEXT_DOCUMENT_BUDGET + 1),
    )
    return int(row[0]) if row else 0


def vector_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def fused_scores(
    text_ids: Sequence[int], vector_ids: Sequence[int], k: int = RRF_K
) -> dict[int, float]:
    """Reciprocal rank fusion of two ranked id lists: each id's score."""
    scores: dict[int, float] = {}
    for ranked in (text_ids, vector_ids):
        for rank, item in enumerate(ranked):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank + 1)
    return scores


def best_first(scores: dict[int, float]) -> list[int]:
    """The ids by score, best first; of equal scores the newest first."""
    return sorted(scores, key=lambda item: (-scores[item], -item))


def fuse(text_ids: Sequence[int], vector_ids: Sequence[int], k: int = RRF_K) -> list[int]:
    """Reciprocal rank fusion of two ranked id lists, best first."""
    return best_first(fused_scores(text_ids, vector_ids, k))


def texts_of(placed: dict[int, tuple[str, dt.datetime]]) -> list[list[int]]:
    """Ids grouped into the texts they belong to, given each one's (thread, stored at): one
    thread, split where two of them were stored more than NEIGHBOUR_GAP apart."""
    threads: dict[str, list[int]] = defaultdict(list)
    for item, (thread, _) in placed.items():
        threads[thread].append(item)
    texts: list[list[int]] = []
    for items in threads.values():
        items.sort(key=lambda item: (placed[item][1], item))
        texts.append([items[0]])
        for before, item in itertools.pairwise(items):
            if placed[item][1] - placed[before][1] > NEIGHBOUR_GAP:
                texts.append([])
            texts[-1].append(item)
    return texts


def with_context(
    scores: dict[int, float],
    texts: Sequence[Sequence[int]],
    neighbour_shares: Sequence[float] = NEIGHBOUR_SHARES,
    text_share: float = TEXT_SHARE,
) -> dict[int, float]:
    """Each id's score plus shares of the scores around it in its text (see NEIGHBOUR_SHARES):
    of its neighbours d places before and after it (ids next to each other in one text), then
    of the best of its text so scored. An id in no text keeps its score."""
    boosted = dict(scores)
    for text in texts:
        members = set(text)
        for item in text:
            for distance, share in enumerate(neighbour_shares, 1):
                near = (item - distance, item + distance)
                boosted[item] += share * max((scores[o] for o in near if o in members), default=0)
        best = max(boosted[item] for item in text)
        for item in text:
            boosted[item] += text_share * best
    return boosted


@dataclass(frozen=True)
class Page:
    """One page of ranked ids plus what the model needs to page on."""

    ids: list[int]
    total: int
    page: int
    limit: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.limit))

    def header(self, what: str) -> str:
        if self.total == 0:
            return f"No {what} found."
        if not self.ids:
            return f"Page {self.page + 1} is past the end: {self.total} {what}, {self.pages} pages."
        first = self.page * self.limit + 1
        text = (
            f"Showing {first}-{first + len(self.ids) - 1} of {self.total} {what}, "
            f"page {self.page + 1}/{self.pages}."
        )
        if self.page + 1 < self.pages:
            text += f" More: page={self.page + 1}, limit={self.limit}."
        return text


def paginate(ranked: list[int], limit: int, page: int) -> Page:
    start = page * limit
    return Page(ids=ranked[start : start + limit], total=len(ranked), page=page, limit=limit)


@dataclass(frozen=True)
class HybridIndex:
    """One searchable tier: an FTS5 query for BM25 ranking and a table of embeddings.

    `text_sql` takes (match expression, agent id) and returns ids, its FTS5 table aliased `f`;
    the order and limit are added per query. `thread_sql`, where a tier has it, takes a JSON
    array of ids and returns (id, thread, created_at) for them: entries of one thread stored
    within NEIGHBOUR_GAP of each other are one text, and ids next to each other in it are
    neighbours (see NEIGHBOUR_SHARES).
    """

    text_sql: str
    fts_table: str
    vectors: VectorTable
    thread_sql: str | None = None

    def ranked(self, store: Store, agent_id: int, query: str) -> list[int]:
        """Ids matching `query` by words or by meaning, fused by reciprocal rank."""
        # The query's embedding (the embedder, in C) and BM25 (SQLite, in C) both let go of the
        # GIL: on two cores they run side by side.
        embedding = _BESIDE.submit(store.embedder.embed_query, query)
        try:
            text_hits = self.text_hits_for(store, agent_id, query)
        finally:
            with timing.phase(timing.PHASE_EMBEDDING):  # the part of it BM25 did not hide
                vector = embedding.result()
        scores = fused_scores(text_hits, self.vector_hits_for(store, agent_id, vector))
        if self.thread_sql is not None:
            scores = with_context(scores, self.texts(store, scores))
        return best_first(scores)

    def texts(self, store: Store, ids: Iterable[int]) -> list[list[int]]:
        """`ids` grouped into the texts they belong to (see `thread_sql` and texts_of)."""
        if self.thread_sql is None:
            return []
        rows = store.query(self.thread_sql, (json.dumps(sorted(ids)),))
        return texts_of({r[0]: (r[1], dt.datetime.fromisoformat(r[2])) for r in rows})

    def text_hits_for(self, store: Store, agent_id: int, query: str) -> list[int]:
        words, rankable = selective_words(store, self.fts_table, _WORD.findall(query.lower()))
        if not words:
            return []
        match = _any_of(words)
        # past the budget even for its rarest word, BM25 would score a large part of the
        # memory: the newest documents holding the word come first instead
        order = f"bm25({self.fts_table})" if rankable else "f.rowid DESC"
        sql = f"{self.text_sql} ORDER BY {order} LIMIT {TEXT_HITS}"
        return [r[0] for r in store.query(sql, (match, agent_id))]

    def vector_hits_for(self, store: Store, agent_id: int, vector: np.ndarray) -> list[int]:
        nearest = self.vectors.nearest(store, agent_id, vector, VECTOR_CANDIDATES)
        # past the embedder's own threshold a neighbour is no match (engine.store.profiles)
        limit = store.embedder.profile.max_distance
        return [i for i, distance in nearest if distance <= limit]
