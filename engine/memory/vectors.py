"""Nearest neighbours over one tier's embeddings, fast at a million passages.

The vectors live in a plain table of the Memex file (`id, agent_id, embedding, bits`; migration
4), where `bits` is sqlite-vec's `vec_quantize_binary` of the embedding: one sign bit per
dimension, 48 bytes for MiniLM's 384. A search:

1. scans every bit string of the agent in memory (Hamming distance to the query's bits, NumPy's
   popcount over 64-bit words; about 35 ms at 1M passages on one core),
2. reads the float32 vectors of the best `candidates_for(k)` of them by primary key and ranks
   those by exact cosine distance.

Why not sqlite-vec's vec0 KNN: the PyPI wheel scans unvectorised float32, 48 ms at 100k and
about half a second at 1M, and a vec0 row lookup costs about 70 us. Why not all float32 vectors
in memory: 1.5 GB at 1M. The bits take 56 MB a million (ids included).

The bits in memory are a snapshot of committed rows, one per (file, table, agent), read through
the store's second, read-only connection (`Store.committed_reads`), so nothing a step may yet
roll back ever enters it. Rows committed since are appended on the next search; a delete or
update (counted per agent in `vector_rewrites` by triggers) reloads it. Rows only the open
transaction can see (a step that saved a passage and now searches) are re-scored beside the
candidates. The re-scoring reads the store's own connection: a deleted row never comes back,
and every distance returned is exact. `warm_in_background` loads an agent's bits when it is
opened, before its first search.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import apsw
import numpy as np

from engine.errors import StoreError
from engine.llm.llama import available_cpus
from engine.store.migrations import EMBEDDING_DIM

if TYPE_CHECKING:
    from engine.store.db import Store

WORDS = EMBEDDING_DIM // 64  # 64-bit words of sign bits per vector

# Candidates re-scored exactly: 5 per neighbour wanted, at least 500, and twice the square root
# of the rows (recall grows with it). Measured on real MiniLM embeddings of real sentences
# (bench/archival_scale.py): recall@10 against exact search 0.993 at 100k rows with 500
# candidates (1.000 with 632), 0.991 at 1M with 2,000 (0.964 with 500).
OVERSAMPLE = 5
MIN_CANDIDATES = 500


def candidates_for(k: int, total: int, oversample: int = 1) -> int:
    """Rows re-scored exactly for the `k` nearest of `total`; `oversample` times as many for an
    embedder whose sign bits tell less (engine.store.profiles)."""
    usual = max(MIN_CANDIDATES, k * OVERSAMPLE, int(2 * math.sqrt(total)))
    return min(total, usual * oversample)


_LOAD_CHUNK = 65_536  # rows read into the snapshot at a time


@dataclass
class _Snapshot:
    """The committed bits of one agent's vectors: rows [0, n) of `ids` and `bits`."""

    ids: np.ndarray  # int64, capacity >= n
    bits: np.ndarray  # uint64 (capacity, WORDS)
    n: int
    max_id: int
    rewrites: int

    def append(self, ids: list[int], bits: bytes) -> _Snapshot:
        """A snapshot with rows added. Readers of the old one keep seeing its first n rows:
        new rows go past them (into spare capacity, or a bigger copy)."""
        extra = len(ids)
        need = self.n + extra
        ids_arr, bits_arr = self.ids, self.bits
        if need > len(ids_arr):
            capacity = max(need, 2 * len(ids_arr), 1024)
            ids_arr = np.empty(capacity, dtype=np.int64)
            bits_arr = np.empty((capacity, WORDS), dtype=np.uint64)
            ids_arr[: self.n] = self.ids[: self.n]
            bits_arr[: self.n] = self.bits[: self.n]
        ids_arr[self.n : need] = ids
        bits_arr[self.n : need] = np.frombuffer(bits, dtype=np.uint64).reshape(extra, WORDS)
        return _Snapshot(ids_arr, bits_arr, need, max(self.max_id, ids[-1]), self.rewrites)


_EMPTY = _Snapshot(np.empty(0, np.int64), np.empty((0, WORDS), np.uint64), 0, 0, 0)

# Per open Store: (table, agent id, model) -> snapshot. Weak, so a closed Store's memory goes with it.
_snapshots: weakref.WeakKeyDictionary[Store, dict[tuple[str, int, str], _Snapshot]] = (
    weakref.WeakKeyDictionary()
)
_snapshots_lock = threading.Lock()
_loading_lock = threading.Lock()  # one load at a time: appends share the arrays' spare room
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VectorTable:
    """One tier's vectors (`message_vectors`, `passage_vectors`)."""

    table: str

    @property
    def insert_sql(self) -> str:
        """Stores one vector: parameters (id, agent id, float32 bytes, embedding model)."""
        return (
            f"INSERT INTO {self.table}(id, agent_id, embedding, bits, model)"
            " VALUES (?1, ?2, ?3, vec_quantize_binary(?3), ?4)"
        )

    @property
    def update_sql(self) -> str:
        """Replaces one vector: parameters (float32 bytes, embedding model, id)."""
        return (
            f"UPDATE {self.table} SET embedding = ?1, bits = vec_quantize_binary(?1), model = ?2"
            " WHERE id = ?3"
        )

    def nearest(
        self, store: Store, agent_id: int, vector: np.ndarray, k: int
    ) -> list[tuple[int, float]]:
        """The `k` nearest rows of `agent_id` to `vector`: (id, cosine distance), nearest first.
        Only rows embedded by the store's embedder are compared: another model's vectors mean
        nothing next to its query (engine.memory.reembed brings them over)."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if k <= 0 or not np.isfinite(query).all() or not query.any():
            return []
        model = store.embedder.name
        query_bits = np.packbits(query > 0, bitorder="little").view(np.uint64)
        snapshot, pending = self._current(store, agent_id, model)
        oversample = store.embedder.profile.sign_bit_oversample
        ids = _closest_by_bits(snapshot, query_bits, candidates_for(k, snapshot.n, oversample))
        if pending:
            ids = np.concatenate([ids, np.asarray(pending, dtype=np.int64)])
        return self._rescored(store, agent_id, model, ids, query, k)

    def exact(
        self, store: Store, agent_id: int, vector: np.ndarray, k: int
    ) -> list[tuple[int, float]]:
        """The true `k` nearest of the store's embedder's rows, by sqlite-vec's cosine distance
        over every row (slow: for checking `nearest`)."""
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        rows = store.query(
            f"SELECT id, vec_distance_cosine(embedding, ?) AS d FROM {self.table}"
            " WHERE agent_id = ? AND model = ? ORDER BY d, id LIMIT ?",
            (blob, agent_id, store.embedder.name, k),
        )
        return [(int(i), float(d)) for i, d in rows]

    def forget(self, store: Store) -> None:
        """Drop this Store's snapshots of the table (the next search reloads)."""
        with _snapshots_lock:
            for key in [key for key in _snapshots.get(store, {}) if key[0] == self.table]:
                del _snapshots[store][key]

    # -- internals ---------------------------------------------------------------------------

    def warm(self, store: Store, agent_id: int) -> None:
        """Load the agent's bits now (a second or so at a million rows), so the first search
        does not wait for them. Safe on any thread; a store closed meanwhile ends it quietly."""
        try:
            self._refreshed(store, agent_id, store.embedder.name)
        except (apsw.Error, StoreError) as exc:
            log.debug("vector warm-up of %s stopped: %s", self.table, exc)

    def warm_in_background(self, store: Store, agent_id: int) -> None:
        threading.Thread(
            target=self.warm, args=(store, agent_id), name="memex-vector-warm", daemon=True
        ).start()

    def _current(self, store: Store, agent_id: int, model: str) -> tuple[_Snapshot, list[int]]:
        """The agent's snapshot of committed rows of `model`, brought up to date; plus the ids
        of rows past it that only the open transaction of the store's connection can see (a
        step that inserted and now searches)."""
        snapshot = self._refreshed(store, agent_id, model)
        with store._lock:
            if not store.conn.in_transaction:
                return snapshot, []
            rows = store.conn.execute(
                f"SELECT id FROM {self.table} WHERE agent_id = ? AND model = ? AND id > ?",
                (agent_id, model, snapshot.max_id),
            ).fetchall()
        return snapshot, [r[0] for r in rows]

    def _refreshed(self, store: Store, agent_id: int, model: str) -> _Snapshot:
        key = (self.table, agent_id, model)
        with _loading_lock, store.committed_reads() as reader:
            with _snapshots_lock:
                snapshot = _snapshots.setdefault(store, {}).get(key, _EMPTY)
            row = reader.execute(
                "SELECT count FROM vector_rewrites WHERE tbl = ? AND agent_id = ?",
                (self.table, agent_id),
            ).fetchone()
            rewrites = row[0] if row else 0
            if rewrites != snapshot.rewrites:
                snapshot = _Snapshot(_EMPTY.ids, _EMPTY.bits, 0, 0, rewrites)
            cursor = reader.execute(
                f"SELECT id, bits FROM {self.table}"
                " WHERE agent_id = ? AND model = ? AND id > ? ORDER BY id",
                (agent_id, model, snapshot.max_id),
            )
            while rows := list(itertools.islice(cursor, _LOAD_CHUNK)):  # bounded peak memory
                snapshot = snapshot.append([r[0] for r in rows], b"".join(r[1] for r in rows))
            with _snapshots_lock:
                _snapshots[store][key] = snapshot
        return snapshot

    def distances(
        self, store: Store, agent_id: int, ids: Sequence[int], query: np.ndarray
    ) -> dict[int, float]:
        """The cosine distance to `query` of each of these rows the store's embedder made
        (one another model made has none yet: engine.memory.reembed), by id."""
        ranked = self._rescored(
            store, agent_id, store.embedder.name, np.asarray(ids, dtype=np.int64), query, len(ids)
        )
        return dict(ranked)

    def _rescored(
        self, store: Store, agent_id: int, model: str, ids: np.ndarray, query: np.ndarray, k: int
    ) -> list[tuple[int, float]]:
        if len(ids) == 0:
            return []
        rows = store.query(
            f"SELECT id, embedding FROM {self.table}"
            " WHERE id IN (SELECT value FROM json_each(?)) AND agent_id = ? AND model = ?",
            (_json_ids(ids), agent_id, model),
        )
        if not rows:
            return []
        found = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        vectors = vectors.reshape(len(rows), -1)
        norms = np.linalg.norm(vectors, axis=1) * float(np.linalg.norm(query))
        distances = 1.0 - (vectors @ query) / np.maximum(norms, 1e-12)
        order = np.lexsort((found, distances))[:k]
        return [(int(found[i]), float(distances[i])) for i in order]


def _closest_by_bits(snapshot: _Snapshot, query_bits: np.ndarray, count: int) -> np.ndarray:
    """Ids of the `count` rows whose bits differ least from the query's."""
    n = snapshot.n
    if n == 0 or count <= 0:
        return np.empty(0, dtype=np.int64)
    if count >= n:
        return snapshot.ids[:n].copy()
    differing = np.empty(n, dtype=np.uint16)
    slices = [(start, min(n, start + _SCAN_SLICE)) for start in range(0, n, _SCAN_SLICE)]
    # NumPy lets go of the GIL: the slices are counted on every core at once
    list(
        _scan_pool().map(
            lambda s: _count_differing(snapshot.bits, query_bits, differing, *s), slices
        )
    )
    return snapshot.ids[_fewest(differing, count)]


_SCAN_SLICE = 65_536  # rows a scan step reads: its temporaries stay in the CPU's cache
_scan_executor: ThreadPoolExecutor | None = None


def _scan_pool() -> ThreadPoolExecutor:
    global _scan_executor
    with _snapshots_lock:
        if _scan_executor is None:
            _scan_executor = ThreadPoolExecutor(
                max_workers=available_cpus(), thread_name_prefix="memex-vector-scan"
            )
        return _scan_executor


def _count_differing(
    bits: np.ndarray, query_bits: np.ndarray, out: np.ndarray, start: int, stop: int
) -> None:
    per_word = np.bitwise_count(bits[start:stop] ^ query_bits)  # (rows, WORDS) uint8
    total = per_word[:, 0].astype(np.uint16)
    for word in range(1, WORDS):  # WORDS adds: faster than sum(axis=1) over so narrow an axis
        total += per_word[:, word]
    out[start:stop] = total


def _fewest(differing: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` smallest distances. Distances are small integers (0-384): a
    histogram finds the cut-off, and only the ties at it need sorting."""
    cumulative = np.cumsum(np.bincount(differing, minlength=WORDS * 64 + 1))
    cutoff = int(np.searchsorted(cumulative, count))
    within = np.flatnonzero(differing <= cutoff)
    if len(within) > count:
        within = within[np.argpartition(differing[within], count - 1)[:count]]
    return within


def _json_ids(ids: np.ndarray) -> str:
    return "[" + ",".join(map(str, ids.tolist())) + "]"
