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
from engine.memory.recall import MESSAGE_INDEX
from engine.memory.search import vector_blob
from engine.memory.vectors import VectorTable
from engine.store.db import Store

BATCH = 32  # texts a call embeds: about a second of nomic-embed on two cores


@dataclass(frozen=True)
class _Tier:
    vectors: VectorTable
    texts_sql: str  # (model, limit) -> (id, text) of vectors another model made
    record_sql: str | None = None  # (id, model): where else the tier records the model


_TIERS = (
    _Tier(
        MESSAGE_INDEX.vectors,
        "SELECT v.id, coalesce(m.search_text, m.content) FROM message_vectors v"
        " JOIN messages m ON m.id = v.id WHERE v.model != ? ORDER BY v.id DESC LIMIT ?",
    ),
    _Tier(
        PASSAGE_INDEX.vectors,
        "SELECT v.id, p.text FROM passage_vectors v"
        " JOIN passages p ON p.id = v.id WHERE v.model != ? ORDER BY v.id DESC LIMIT ?",
        "UPDATE passages SET embedding_model = ?2 WHERE id = ?1",
    ),
)


def stale_vectors(store: Store) -> int:
    """How many vectors of the file another model than the store's embedder made."""
    model = store.embedder.name
    return sum(
        int(
            store.query_one(f"SELECT count(*) FROM {t.vectors.table} WHERE model != ?", (model,))[0]
        )
        for t in _TIERS
    )


def reembed(store: Store, limit: int = BATCH) -> int:
    """Embed again up to `limit` texts whose vectors another model made (the newest first: the
    ones most likely searched for); returns how many. 0 means none is left."""
    model = store.embedder.name
    done = 0
    for tier in _TIERS:
        if done >= limit:
            break
        rows = store.query(tier.texts_sql, (model, limit - done))
        if not rows:
            continue
        vectors = store.embedder.embed([text for _, text in rows])
        with store.atomic() as conn:
            for (row_id, _), vector in zip(rows, vectors, strict=True):
                conn.execute(tier.vectors.update_sql, (vector_blob(vector), model, row_id))
                if tier.record_sql is not None:
                    conn.execute(tier.record_sql, (row_id, model))
        done += len(rows)
    return done


def reembed_all(store: Store, progress: Callable[[int, int], None] | None = None) -> int:
    """Embed again every text another model's vector stands for, reporting (done, total) after
    each batch; returns how many."""
    total = stale_vectors(store)
    done = 0
    while batch := reembed(store):
        done += batch
        if progress is not None:
            progress(done, total)
    return done
