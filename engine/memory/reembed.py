"""Vectors made by another embedding model, made again by the store's own.

Every vector records the model that made it (migration 5), and a search compares only those of
the model in use (engine.memory.vectors): another model's vectors mean nothing next to its
query. When the embedder changes (a new default, or one chosen in Settings), the texts of the
other vectors are embedded again, a batch at a time, each batch its own transaction: stopped
anywhere, nothing is lost and the next run goes on from there. Until then, word search still
finds those texts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.memory.archival import PASSAGE_INDEX
from engine.memory.recall import MESSAGE_INDEX, embedded_text
from engine.memory.search import vector_blob
from engine.memory.vectors import VectorTable
from engine.store.db import Store

BATCH = 32  # texts a call embeds: about a second of nomic-embed on two cores
_TOP = 2**63 - 1  # above every id


@dataclass(frozen=True)
class _Tier:
    vectors: VectorTable
    # (model, below, limit) -> (id, text, created_at) of vectors another model made
    texts_sql: str
    record_sql: str | None = None  # (id, model): where else the tier records the model
    dated: bool = False  # a vector is of its text after its day (engine.memory.recall)

    def embedded(self, text: str, created_at: str) -> str:
        return embedded_text(text, created_at) if self.dated else text


_TIERS = (
    _Tier(
        MESSAGE_INDEX.vectors,
        "SELECT v.id, coalesce(m.search_text, m.content), m.created_at FROM message_vectors v"
        " JOIN messages m ON m.id = v.id WHERE v.id < ?2 AND v.model != ?1"
        " ORDER BY v.id DESC LIMIT ?3",
        dated=True,
    ),
    _Tier(
        PASSAGE_INDEX.vectors,
        "SELECT v.id, p.text, p.created_at FROM passage_vectors v"
        " JOIN passages p ON p.id = v.id WHERE v.id < ?2 AND v.model != ?1"
        " ORDER BY v.id DESC LIMIT ?3",
        "UPDATE passages SET embedding_model = ?2 WHERE id = ?1",
    ),
)


def stale_vectors(store: Store) -> int:
    """How many vectors of the file another model than the store's embedder made."""
    model = store.embedder.name
    total = 0
    for tier in _TIERS:
        sql = f"SELECT count(*) FROM {tier.vectors.table} WHERE model != ?"
        total += int(store.query(sql, (model,))[0][0])
    return total


@dataclass(frozen=True)
class Progress:
    """Where the work stands: per tier, the lowest id made again so far (it goes newest first),
    so the next batch seeks there by primary key instead of passing over the rows done (at a
    million rows, scanning from the top again for every batch would be quadratic)."""

    below: tuple[int, ...] = (_TOP,) * len(_TIERS)


def reembed(
    store: Store, limit: int = BATCH, progress: Progress | None = None
) -> tuple[int, Progress]:
    """Embed again up to `limit` texts whose vectors another model made (the newest first: the
    ones most likely searched for), from where `progress` stands (None: the start); returns
    how many, 0 when none is left, and where it stands now."""
    model = store.embedder.name
    below = list((progress or Progress()).below)
    done = 0
    for index, tier in enumerate(_TIERS):
        if done >= limit:
            break
        rows = store.query(tier.texts_sql, (model, below[index], limit - done))
        if not rows:
            continue
        vectors = store.embedder.embed([tier.embedded(text, when) for _, text, when in rows])
        with store.atomic() as conn:
            for (row_id, _, _), vector in zip(rows, vectors, strict=True):
                conn.execute(tier.vectors.update_sql, (vector_blob(vector), model, row_id))
                if tier.record_sql is not None:
                    conn.execute(tier.record_sql, (row_id, model))
        below[index] = min(row[0] for row in rows)
        done += len(rows)
    return done, Progress(tuple(below))


def reembed_all(store: Store, report: Callable[[int, int], None] | None = None) -> int:
    """Embed again every text another model's vector stands for, reporting (done, total) after
    each batch; returns how many."""
    total = stale_vectors(store)
    done, progress = 0, Progress()
    while True:
        batch, progress = reembed(store, progress=progress)
        if not batch:
            return done
        done += batch
        if report is not None:
            report(done, total)
