"""Hybrid search shared by recall and archival: FTS5 BM25 fused with sqlite-vec KNN, and paging."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.store.db import Store

RRF_K = 60  # reciprocal-rank-fusion constant (Cormack et al.)
VECTOR_CANDIDATES = 100  # nearest neighbours considered per query
MAX_VECTOR_DISTANCE = 0.75  # cosine distance past which a neighbour is not a match
_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """A safe FTS5 MATCH expression: every word quoted, any word may match (OR)."""
    words = _WORD.findall(text.lower())
    if not words:
        return None
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


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
    """One searchable tier: an FTS5 query for BM25 ranking and a vec0 table of embeddings.

    `text_sql` takes (match expression, agent id) and returns ids best first.
    """

    text_sql: str
    vector_table: str

    def ranked(self, store: Store, agent_id: int, query: str) -> list[int]:
        """Ids matching `query` by words or by meaning, fused by reciprocal rank."""
        return fuse(
            self._text_hits(store, agent_id, query), self._vector_hits(store, agent_id, query)
        )

    def _text_hits(self, store: Store, agent_id: int, query: str) -> list[int]:
        match = fts_query(query)
        if match is None:
            return []
        return [r[0] for r in store.query(self.text_sql, (match, agent_id))]

    def _vector_hits(self, store: Store, agent_id: int, query: str) -> list[int]:
        vector = store.embedder.embed_one(query)
        rows = store.query(
            f"SELECT rowid, distance FROM {self.vector_table} WHERE embedding MATCH ?"
            " AND agent_id = ? AND k = ? ORDER BY distance",
            (vector_blob(vector), agent_id, VECTOR_CANDIDATES),
        )
        return [r[0] for r in rows if r[1] <= MAX_VECTOR_DISTANCE]
