"""Nearest vectors: sign bits scanned in memory, candidates re-scored exactly from the table."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import engine.memory.vectors as vectors_module
from engine.memory.archival import PASSAGE_INDEX, ArchivalMemory
from engine.memory.search import vector_blob
from engine.store.db import Store, open_store
from engine.store.migrations import FIRST_EMBEDDING_MODEL

TABLE = PASSAGE_INDEX.vectors


def _agent(store: Store, name: str = "a") -> int:
    with store.atomic() as conn:
        conn.execute(
            "INSERT INTO agents(name, persona_json, created_at) VALUES (?, '{}', 'x')", (name,)
        )
        return conn.last_insert_rowid()


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, 384)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _fill(store: Store, agent_id: int, rows: np.ndarray) -> list[int]:
    archive = ArchivalMemory(store, agent_id)
    texts = [f"passage {i}" for i in range(len(rows))]
    return archive.insert_many(texts, vectors=[vector_blob(r) for r in rows])


def test_query_bits_are_the_bits_sqlite_vec_stores(store: Store, embedder) -> None:
    agent = _agent(store)
    vector = embedder.embed_one("The quick brown fox jumps over the lazy dog.")
    [passage] = _fill(store, agent, vector[None, :])
    (stored,) = store.query_one("SELECT bits FROM passage_vectors WHERE id = ?", (passage,))
    assert np.packbits(vector > 0, bitorder="little").tobytes() == stored


def test_nearest_is_exact_while_every_row_is_a_candidate(store: Store) -> None:
    agent = _agent(store)
    rows = _unit(np.random.default_rng(1), 300)
    _fill(store, agent, rows)
    for query in _unit(np.random.default_rng(2), 5):
        got = TABLE.nearest(store, agent, query, 10)
        want = TABLE.exact(store, agent, query, 10)
        assert [i for i, _ in got] == [i for i, _ in want]
        assert np.allclose([d for _, d in got], [d for _, d in want], atol=1e-5)


def test_an_embedder_with_less_telling_bits_rescores_more_candidates(store: Store) -> None:
    usual = vectors_module.candidates_for(100, 100_000)
    assert usual == 632  # 2 * sqrt(100k): more than 500, and 5 per neighbour wanted
    assert vectors_module.candidates_for(100, 100_000, 4) == 4 * usual
    assert vectors_module.candidates_for(100, 1_000, 4) == 1_000  # never more than the rows
    assert store.embedder.profile.sign_bit_oversample == 4  # nomic-embed-text-v1.5's


def test_nearest_finds_the_exact_neighbours_past_the_candidate_count(
    store: Store, embedder, monkeypatch
) -> None:
    """With fewer candidates than rows the bits choose them: on real sentence embeddings the
    true nearest still come back."""
    monkeypatch.setattr(vectors_module, "candidates_for", lambda k, total, oversample: 40)
    agent = _agent(store)
    topics = ["cats", "rain", "trains", "bread", "chess", "rivers", "guitars", "taxes"]
    texts = [
        f"A note about {t}, number {i}, written on day {i % 7}." for t in topics for i in range(25)
    ]
    _fill(store, agent, embedder.embed(texts))
    hits = 0
    for topic in topics:
        query = embedder.embed_one(f"something about {topic}")
        got = [i for i, _ in TABLE.nearest(store, agent, query, 5)]
        want = [i for i, _ in TABLE.exact(store, agent, query, 5)]
        hits += len(set(got) & set(want))
    assert hits >= 0.9 * 5 * len(topics)


def test_new_deleted_and_changed_rows_are_seen_at_once(store: Store, embedder) -> None:
    agent = _agent(store)
    archive = ArchivalMemory(store, agent)
    first = archive.insert("My sister Anna lives in Lisbon.")
    query = embedder.embed_one("Where does Anna live?")
    assert TABLE.nearest(store, agent, query, 3)[0][0] == first

    second = archive.insert("Anna moved from Lisbon to Porto last spring.")
    assert {i for i, _ in TABLE.nearest(store, agent, query, 3)} == {first, second}

    archive.delete(first)
    assert [i for i, _ in TABLE.nearest(store, agent, query, 3)] == [second]

    archive.update(second, "The dentist appointment is on Tuesday.")
    [(found, distance)] = TABLE.nearest(store, agent, query, 3)
    assert found == second
    assert distance == pytest.approx(TABLE.exact(store, agent, query, 1)[0][1], abs=1e-5)


def test_rows_of_an_open_transaction_are_searchable_and_never_kept_after_a_rollback(
    store: Store,
) -> None:
    agent = _agent(store)
    rng = np.random.default_rng(3)
    kept = _fill(store, agent, _unit(rng, 20))
    query = _unit(rng, 1)[0]
    TABLE.nearest(store, agent, query, 5)  # the snapshot now holds the committed rows

    class Abort(Exception):
        pass

    with pytest.raises(Abort), store.atomic():
        [doomed] = _fill(store, agent, query[None, :])
        assert TABLE.nearest(store, agent, query, 1) == [(doomed, pytest.approx(0.0, abs=1e-6))]
        raise Abort
    assert doomed not in {i for i, _ in TABLE.nearest(store, agent, query, 50)}

    # the rolled-back id is given again to a different vector: it is found for that vector
    other = -query
    [reused] = _fill(store, agent, other[None, :])
    assert reused == doomed
    assert TABLE.nearest(store, agent, other, 1)[0][0] == reused
    assert reused not in {i for i, _ in TABLE.nearest(store, agent, query, 5)}
    assert set(kept) <= {i for i, _ in TABLE.nearest(store, agent, query, 50)}


def test_agents_never_see_each_others_vectors(store: Store) -> None:
    rng = np.random.default_rng(4)
    first, second = _agent(store, "a"), _agent(store, "b")
    mine = set(_fill(store, first, _unit(rng, 30)))
    theirs = set(_fill(store, second, _unit(rng, 30)))
    query = _unit(rng, 1)[0]
    assert {i for i, _ in TABLE.nearest(store, first, query, 100)} == mine
    assert {i for i, _ in TABLE.nearest(store, second, query, 100)} == theirs


def test_a_zero_or_broken_query_finds_nothing(store: Store) -> None:
    agent = _agent(store)
    _fill(store, agent, _unit(np.random.default_rng(5), 5))
    assert TABLE.nearest(store, agent, np.zeros(384, np.float32), 5) == []
    assert TABLE.nearest(store, agent, np.full(384, np.nan, np.float32), 5) == []
    assert TABLE.nearest(store, agent, _unit(np.random.default_rng(6), 1)[0], 0) == []


def test_a_vector_of_the_wrong_width_is_refused_by_the_table(store: Store) -> None:
    import apsw

    agent = _agent(store)
    for width in (96, 100, 385):
        with pytest.raises(apsw.Error):
            _fill(store, agent, np.ones((1, width), np.float32))
    assert ArchivalMemory(store, agent).count() == 0


def test_readers_in_threads_while_a_writer_appends(store: Store) -> None:
    agent = _agent(store)
    rng = np.random.default_rng(7)
    _fill(store, agent, _unit(rng, 200))
    batches = [_unit(rng, 50) for _ in range(10)]
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for query in _unit(np.random.default_rng(8), 40):
                found = TABLE.nearest(store, agent, query, 10)
                assert len(found) == 10
                assert all(a[1] <= b[1] for a, b in zip(found, found[1:], strict=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    for batch in batches:
        _fill(store, agent, batch)
    for thread in readers:
        thread.join()
    assert errors == []
    query = batches[-1][0]
    assert TABLE.nearest(store, agent, query, 1)[0][1] == pytest.approx(0.0, abs=1e-6)


def test_a_closed_and_reopened_file_reloads_its_vectors(tmp_path: Path, embedder) -> None:
    path = tmp_path / "m.db"
    rng = np.random.default_rng(9)
    rows = _unit(rng, 50)
    with open_store(path, embedder=embedder) as store:
        agent = _agent(store)
        ids = _fill(store, agent, rows)
        TABLE.nearest(store, agent, rows[0], 1)
    with open_store(path, embedder=embedder) as store:
        assert TABLE.nearest(store, agent, rows[7], 1)[0][0] == ids[7]


def test_a_file_of_schema_v3_keeps_its_vectors_in_the_new_tables(
    tmp_path: Path, minilm, monkeypatch
) -> None:
    """Vectors written into sqlite-vec's vec0 tables (schema v3) move to the plain tables whole,
    for messages and passages; the upgrade backs the file up first. Rows of v3 were embedded by
    all-MiniLM-L6-v2, and say so after the upgrade."""
    from engine.memory.recall import MESSAGE_INDEX
    from tests.engine.store.old_memex import older_memex

    path = tmp_path / "old.db"
    rows = _unit(np.random.default_rng(10), 3)
    with older_memex(monkeypatch, 3), open_store(path, embedder=minilm) as store:
        agent = _agent(store)
        with store.atomic() as conn:
            conn.execute("INSERT INTO sessions(agent_id, started_at) VALUES (?, 'x')", (agent,))
            for i, row in enumerate(rows, start=1):
                conn.execute(
                    "INSERT INTO passages(agent_id, text, embedding_model, created_at)"
                    " VALUES (?, ?, ?, 'x')",
                    (agent, f"passage {i}", minilm.name),
                )
                conn.execute(
                    "INSERT INTO passage_vectors(rowid, agent_id, embedding) VALUES (?, ?, ?)",
                    (i, agent, vector_blob(row)),
                )
                conn.execute(
                    "INSERT INTO messages(agent_id, session_id, role, content, search_text,"
                    " token_count, created_at) VALUES (?, 1, 'user', 'hi', 'hi', 1, 'x')",
                    (agent,),
                )
                conn.execute(
                    "INSERT INTO message_vectors(rowid, agent_id, embedding) VALUES (?, ?, ?)",
                    (i, agent, vector_blob(-row)),
                )
    with open_store(path, embedder=minilm) as store:
        assert store.schema_version >= 4
        assert (tmp_path / "old.db.v3.bak").exists()
        for table in ("passage_vectors", "message_vectors"):
            models = {r[0] for r in store.query(f"SELECT DISTINCT model FROM {table}")}
            assert models == {FIRST_EMBEDDING_MODEL} == {minilm.name}
        for i, row in enumerate(rows, start=1):
            assert TABLE.nearest(store, agent, row, 1) == [(i, pytest.approx(0.0, abs=1e-6))]
            found = MESSAGE_INDEX.vectors.nearest(store, agent, -row, 1)
            assert found == [(i, pytest.approx(0.0, abs=1e-6))]
        stored = store.query("SELECT embedding FROM passage_vectors ORDER BY id")
        assert [r[0] for r in stored] == [vector_blob(r) for r in rows]
