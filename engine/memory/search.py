"""Hybrid search shared by recall and archival: FTS5 BM25 fused with nearest vectors, and paging."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine import timing
from engine.memory.vectors import VectorTable

if TYPE_CHECKING:
    from engine.store.db import Store

RRF_K = 60  # reciprocal-rank-fusion constant (Cormack et al.)
# BM25 scores every document holding any query word: "the" alone is in most of them. Words are
# kept rarest first while the documents they reach stay under this budget (the rarest word is
# always kept): the common words dropped are those BM25 weighs least. 22 ms -> 0.8 ms for a
# 9-word query at 10k passages; the budget bounds it at any size. At 100k passages BM25 takes
# 4.8 ms with a budget of 5,000, 2.1 ms with 2,000 (bench/archival_scale.py queries).
TEXT_DOCUMENT_BUDGET = 2_000
TEXT_HITS = 1_000  # documents BM25 returns for fusion
VECTOR_CANDIDATES = 100  # nearest neighbours considered per query
MAX_VECTOR_DISTANCE = 0.75  # cosine distance past which a neighbour is not a match
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


def fuse(text_ids: Sequence[int], vector_ids: Sequence[int]) -> list[int]:
    """Reciprocal rank fusion of two ranked id lists, best first."""
    scores: dict[int, float] = {}
    for ranked in (text_ids, vector_ids):
        for rank, item in enumerate(ranked):
            scores[item] = scores.get(item, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores, key=lambda item: (-scores[item], -item))


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
    the order and limit are added per query.
    """

    text_sql: str
    fts_table: str
    vectors: VectorTable

    def ranked(self, store: Store, agent_id: int, query: str) -> list[int]:
        """Ids matching `query` by words or by meaning, fused by reciprocal rank."""
        # The query's embedding (the embedder, in C) and BM25 (SQLite, in C) both let go of the
        # GIL: on two cores they run side by side.
        embedding = _BESIDE.submit(store.embedder.embed_one, query)
        try:
            text_hits = self._text_hits(store, agent_id, query)
        finally:
            with timing.phase(timing.PHASE_EMBEDDING):  # the part of it BM25 did not hide
                vector = embedding.result()
        return fuse(text_hits, self._vector_hits(store, agent_id, vector))

    def _text_hits(self, store: Store, agent_id: int, query: str) -> list[int]:
        words, rankable = selective_words(store, self.fts_table, _WORD.findall(query.lower()))
        if not words:
            return []
        match = _any_of(words)
        # past the budget even for its rarest word, BM25 would score a large part of the
        # memory: the newest documents holding the word come first instead
        order = f"bm25({self.fts_table})" if rankable else "f.rowid DESC"
        sql = f"{self.text_sql} ORDER BY {order} LIMIT {TEXT_HITS}"
        return [r[0] for r in store.query(sql, (match, agent_id))]

    def _vector_hits(self, store: Store, agent_id: int, vector: np.ndarray) -> list[int]:
        nearest = self.vectors.nearest(store, agent_id, vector, VECTOR_CANDIDATES)
        return [i for i, distance in nearest if distance <= MAX_VECTOR_DISTANCE]
