"""The store: one file, sqlite-vec and FTS5 loaded, migrations recorded, bad files refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.errors import FileInUse, SchemaTooNew, StoreError
from engine.store.db import Store, open_store
from engine.store.migrations import LATEST_VERSION
from tests.engine.store.old_memex import add_sam, older_memex


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


# -- one Memex per file ---------------------------------------------------------------------

HOLDER = """
import sys, time
from engine.store.db import open_store
store = open_store(sys.argv[1])
with store.atomic() as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS beats(n INTEGER)")
print("open", flush=True)
n = 0
while True:  # commits as fast as it can until it is told to stop or is killed
    n += 1
    with store.atomic() as conn:
        conn.execute("INSERT INTO beats VALUES (?)", (n,))
    if n == int(sys.argv[2]):
        store.close()
        print("closed", flush=True)
        time.sleep(60)
"""


def _holder(path: Path, close_after: int = 10**9) -> subprocess.Popen[str]:
    """Another Memex process with `path` open, writing; prints "open" once it is."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(close_after)],
        cwd=Path(__file__).resolve().parents[3],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "open"
    return process


def test_a_second_store_on_an_open_file_is_told_it_is_in_use(tmp_path: Path) -> None:
    path = tmp_path / "memex.db"
    first = open_store(path)
    start = time.monotonic()
    with pytest.raises(FileInUse, match="open in another Memex") as caught:
        open_store(path, wait_s=0.5)
    assert time.monotonic() - start >= 0.5  # it waited before giving up
    assert str(path) in str(caught.value)
    first.close()
    open_store(path, wait_s=0).close()  # free again once the first one closed


def test_another_process_with_the_file_open_keeps_it_to_itself(tmp_path: Path) -> None:
    path = tmp_path / "memex.db"
    holder = _holder(path)
    try:
        with pytest.raises(FileInUse):
            open_store(path, wait_s=1.0)
    finally:
        holder.kill()  # mid-write: a crash, not a clean close
        holder.wait()
    # the lock went with the process: no stale lock, and every commit it made is intact
    store = open_store(path, wait_s=0)
    try:
        assert store.query("PRAGMA integrity_check") == [("ok",)]
        (count, top) = store.query_one("SELECT count(*), max(n) FROM beats")
        assert count == top > 0
    finally:
        store.close()


def test_opening_waits_for_a_memex_that_is_closing(tmp_path: Path) -> None:
    path = tmp_path / "memex.db"
    holder = _holder(path, close_after=2000)
    try:
        store = open_store(path, wait_s=60)  # the holder closes after its 2,000th commit
        assert holder.stdout is not None and holder.stdout.readline().strip() == "closed"
        assert store.query_one("SELECT count(*) FROM beats") == (2000,)
        store.close()
    finally:
        holder.kill()
        holder.wait()


def test_a_symlink_to_an_open_file_meets_the_same_lock(tmp_path: Path) -> None:
    path = tmp_path / "memex.db"
    link = tmp_path / "elsewhere" / "link.db"
    link.parent.mkdir()
    first = open_store(path)
    try:
        link.symlink_to(path)
        with pytest.raises(FileInUse):
            open_store(link, wait_s=0.2)
    finally:
        first.close()


def test_read_only_file_is_refused_before_anything_is_made_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "memex.db"
    open_store(path).close()
    before = sorted(p.name for p in tmp_path.iterdir())
    real_access = os.access
    # chmod does not stop root (CI); what the check asks the OS is faked instead
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != path and real_access(p, mode))
    with pytest.raises(StoreError, match="is read-only: Memex writes every message to it"):
        open_store(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_folder_that_cannot_be_made_says_so(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create the folder .*a-file"):
        open_store(tmp_path / "a-file" / "memex.db")


def test_a_folder_is_not_a_memory_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is not a file"):
        open_store(tmp_path)


def test_a_file_of_schema_v2_upgrades_to_the_graph_and_keeps_everything(
    tmp_path: Path, embedder, monkeypatch
) -> None:
    """A file written before the knowledge graph (schema v2): the upgrade backs it up, keeps
    every message and edit, and the old agent gets facts, shared blocks and reviews."""
    from engine import MemGPTAgent
    from engine.llm.scripted import ScriptedClient

    path = tmp_path / "old.db"
    with older_memex(monkeypatch, 2):
        store = open_store(path, embedder=embedder)
        assert store.query("SELECT name FROM sqlite_master WHERE name = 'facts'") == []
        with store.atomic() as conn:  # what a v2 Memex wrote: an agent, a block, an edit
            add_sam(conn)
            conn.execute(
                "INSERT INTO block_history(block_id, before, after, actor, created_at)"
                " VALUES (1, '', 'Name: Ada.', 'tool:core_memory_append', '2026-01-01')"
            )
        store.close()

    store = open_store(path, embedder=embedder)
    try:
        assert store.schema_version == LATEST_VERSION
        assert (tmp_path / "old.db.v2.bak").exists()
        agent = MemGPTAgent(None, store, ScriptedClient(), name="sam")
        assert agent.core_memory["human"] == "Name: Ada."
        [edit] = agent.memory.history("human")
        assert (edit.actor, edit.agent) == ("tool:core_memory_append", None)
        agent.graph.insert("Ada", "works_at", "Acme")
        assert [f.object for f in agent.graph.search("Ada")] == ["Acme"]
        assert agent.consolidator.reviewed_through() == 0
    finally:
        store.close()


def test_a_file_of_schema_v4_records_that_minilm_made_its_vectors(
    tmp_path: Path, minilm, monkeypatch
) -> None:
    """Before migration 5 no vector said which model made it: all-MiniLM-L6-v2 made them, or
    the model a passage names (one chosen in Settings)."""
    import numpy as np

    path = tmp_path / "old.db"
    vector = minilm.embed_one("a passage").astype(np.float32).tobytes()
    with older_memex(monkeypatch, 4):
        store = open_store(path, embedder=minilm)
        with store.atomic() as conn:
            add_sam(conn)
            for text, model in (("kept", "all-MiniLM-L6-v2"), ("chosen", "my-own-384")):
                conn.execute(
                    "INSERT INTO passages(agent_id, text, embedding_model, created_at)"
                    " VALUES (1, ?, ?, '2026-01-01')",
                    (text, model),
                )
                conn.execute(
                    "INSERT INTO passage_vectors(id, agent_id, embedding, bits)"
                    " VALUES (?, 1, ?, vec_quantize_binary(?))",
                    (conn.last_insert_rowid(), vector, vector),
                )
        store.close()
    store = open_store(path, embedder=minilm)
    try:
        rows = store.query("SELECT id, model FROM passage_vectors ORDER BY id")
        assert rows == [(1, "all-MiniLM-L6-v2"), (2, "my-own-384")]
        index = store.query("SELECT sql FROM sqlite_master WHERE name = 'passage_vectors_bits'")
        assert "agent_id, model, id, bits" in index[0][0]
    finally:
        store.close()


def test_a_file_of_schema_v5_finds_its_messages_by_the_day_they_were_said(
    tmp_path: Path, embedder, monkeypatch
) -> None:
    """Migration 6 indexes every message again, its words and its day each in a column: the
    old messages are found by either, a word check reads the words alone, and a message
    deleted after the upgrade leaves the index."""
    from engine.memory.recall import MESSAGE_INDEX, RecallMemory

    path = tmp_path / "old.db"
    with older_memex(monkeypatch, 5):
        store = open_store(path, embedder=embedder)
        with store.atomic() as conn:
            add_sam(conn)
            conn.execute("INSERT INTO sessions(agent_id, started_at) VALUES (1, '2023-05-08')")
            for text, when in (
                ("The kiln fired well.", "2023-05-08T09:00:00.000000+00:00"),
                ("Glaze arrived.", "2023-06-01T09:00:00.000000+00:00"),
            ):
                conn.execute(
                    "INSERT INTO messages(agent_id, session_id, role, content, search_text,"
                    " token_count, created_at) VALUES (1, 1, 'user', ?, ?, 3, ?)",
                    (text, text, when),
                )
        store.close()
    store = open_store(path, embedder=embedder)
    try:
        recall = RecallMemory(store, 1)
        kiln, glaze = 1, 2

        def found(query: str) -> list[int]:
            return MESSAGE_INDEX.text_hits_for(store, 1, query)

        assert found("kiln") == [kiln] and found("May") == [kiln] and found("June") == [glaze]
        assert recall.holds_word("kiln") and not recall.holds_word("june")
        with store.atomic() as conn:
            conn.execute("DELETE FROM messages WHERE id = ?", (kiln,))
        assert found("kiln") == [] and found("May") == [] and found("June") == [glaze]
    finally:
        store.close()
