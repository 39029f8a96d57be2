"""The store: one file, sqlite-vec and FTS5 loaded, migrations recorded, bad files refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.errors import SchemaTooNew, StoreError
from engine.store.db import Store, open_store
from engine.store.migrations import LATEST_VERSION


def test_fresh_file_is_migrated_and_recorded(store: Store) -> None:
    rows = store.query("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, LATEST_VERSION + 1))
    assert store.query_one("PRAGMA journal_mode")[0] == "wal"
    assert store.query_one("PRAGMA foreign_keys")[0] == 1
    assert store.query_one("SELECT vec_version()")[0].startswith("v")


def test_file_is_private_to_the_user(store: Store) -> None:
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600


def test_reopen_keeps_data(tmp_path: Path, embedder) -> None:
    path = tmp_path / "m.db"
    with open_store(path, embedder=embedder) as s, s.atomic() as conn:
        conn.execute("INSERT INTO agents(name, persona_json, created_at) VALUES ('a', '{}', 'x')")
    with open_store(path, embedder=embedder) as s:
        assert s.query_one("SELECT name FROM agents")[0] == "a"
        assert s.query_one("SELECT count(*) FROM schema_migrations")[0] == LATEST_VERSION


def test_newer_schema_is_refused_and_file_untouched(tmp_path: Path, embedder) -> None:
    path = tmp_path / "m.db"
    with open_store(path, embedder=embedder) as s, s.atomic() as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew, match="newer Memex"):
        open_store(path, embedder=embedder)
    assert path.read_bytes() == before


def test_random_bytes_file_gets_a_clear_error(tmp_path: Path, embedder) -> None:
    path = tmp_path / "junk.db"
    junk = os.urandom(8192)
    path.write_bytes(junk)
    with pytest.raises(StoreError, match="not a Memex database"):
        open_store(path, embedder=embedder)
    assert path.read_bytes() == junk


def test_atomic_rolls_back_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.atomic() as conn:
        conn.execute("INSERT INTO agents(name, persona_json, created_at) VALUES ('b', '{}', 'x')")
        raise RuntimeError("boom")
    assert store.query_one("SELECT count(*) FROM agents")[0] == 0


def test_block_over_limit_is_refused_by_the_schema_too(store: Store) -> None:
    with pytest.raises(Exception, match="CHECK"), store.atomic() as conn:
        conn.execute(
            "INSERT INTO blocks(label, value, char_limit, created_at, updated_at)"
            " VALUES ('x', 'abcdef', 3, 'x', 'x')"
        )
