"""Hybrid search shared by recall and archival: FTS5 BM25 fused with sqlite-vec KNN, and paging."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
        return (
            f"Showing {first}-{first + len(self.ids) - 1} of {self.total} {what}, "
            f"page {self.page + 1}/{self.pages}."
        )


def paginate(ranked: list[int], limit: int, page: int) -> Page:
    start = page * limit
    return Page(ids=ranked[start : start + limit], total=len(ranked), page=page, limit=limit)
