"""Bad memory files: each is refused with a message that says what to do, and the user's data
is left exactly as it was (sha256 of the file and of its -wal, if any; no migration backup made
for a refused file). An older file is copied aside, byte for byte, before it is upgraded.

test_db.py has the first checks of these (random bytes, a newer schema, a v2 file upgraded);
this file uses real Memex files (an agent, its messages, passages and facts), cut, crashed and
dated, and left with their -wal (a Memex that crashed).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import apsw
import numpy as np
import pytest

import engine.store.db as db
from engine import MemGPTAgent, Persona
from engine.errors import SchemaTooNew, StoreError
from engine.llm.scripted import ScriptedClient, call
from engine.store.db import Store, open_store
from engine.store.migrations import LATEST_VERSION, MIGRATIONS
from tests.engine.store.old_memex import add_sam, older_memex

DAMAGED = "is not a Memex database or is damaged"
WHAT_TO_DO = "restore it from a backup or open another file with --db PATH"


def fill(store: Store, turns: int = 6) -> MemGPTAgent:
    """An agent with what a few days of use leave: messages, core edits, passages, facts."""
    replies = []
    for i in range(turns):
        replies += [
            call("core_memory_append", heartbeat=True, section="human", content=f"fact {i}"),
            call("send_message", message=f"Noted fact {i}. " + "Tell me more. " * 20),
        ]
    agent = MemGPTAgent(Persona("Sam", "helpful"), store, ScriptedClient(replies), name="sam")
    for i in range(turns):
        agent.step(f"Remember fact {i}: " + "the quick brown fox jumps over the lazy dog. " * 10)
    # one vector for all: embedding 40 passages would take most of the test's time
    vector = np.asarray(store.embedder.embed_one("lorem ipsum"), dtype=np.float32).tobytes()
    texts = [f"passage {i}: " + "lorem ipsum dolor " * 60 for i in range(40)]
    agent.archival.insert_many(texts, vectors=[vector] * len(texts))
    agent.graph.insert("Ada", "works_at", "Acme")
    return agent


def memex_file(path: Path, embedder) -> Path:
    with open_store(path, embedder=embedder) as store:
        fill(store)
    return path


@pytest.fixture(scope="module")
def real_file(tmp_path_factory, embedder) -> Path:
    """A real Memex file, closed cleanly (no -wal beside it); copy it before use."""
    return memex_file(tmp_path_factory.mktemp("real") / "memex.db", embedder)


def sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def state(path: Path) -> dict[str, str | None]:
    """The file, its -wal, and what else lies beside it (a backup would show here); the lock
    file Memex keeps beside an open file is not the user's data."""
    folder = {p.name: sha(p) for p in path.parent.iterdir() if not p.name.endswith(".lock")}
    folder.pop(path.name + "-shm", None)  # SQLite's shared-memory index, rebuilt from the WAL
    return {"file": sha(path), "wal": sha(Path(f"{path}-wal")), **folder}


def copy_while_open(store: Store, destination: Path) -> Path:
    """The file and its -wal as a crash leaves them: committed transactions still in the WAL."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store.path, destination)
    shutil.copyfile(f"{store.path}-wal", f"{destination}-wal")
    return destination


def refused(path: Path, embedder, error: type[Exception], *fragments: str) -> None:
    """Opening `path` raises `error` saying each fragment, and changes nothing on disk."""
    before = state(path)
    with pytest.raises(error) as info:
        open_store(path, embedder=embedder, wait_s=0)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert state(path) == before
    assert not list(path.parent.glob("*.bak"))


# -- refused, untouched -----------------------------------------------------------------------


def test_the_real_file_is_a_good_one(real_file: Path, embedder) -> None:
    with open_store(real_file, embedder=embedder, wait_s=0) as store:
        assert store.query_one("SELECT count(*) FROM passages") == (40,)
        assert store.query("PRAGMA integrity_check") == [("ok",)]
    assert real_file.stat().st_size > 200_000  # big enough that half of it loses tables
    assert not Path(f"{real_file}-wal").exists()


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.9, 4096])
def test_a_truncated_file_is_refused_and_left_as_it_was(
    real_file: Path, tmp_path: Path, embedder, keep: float
) -> None:
    path = tmp_path / "memex.db"
    data = real_file.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else int(keep)])
    refused(path, embedder, StoreError, DAMAGED, WHAT_TO_DO)


@pytest.mark.parametrize(
    "content",
    [
        os.urandom(8192),
        os.urandom(100_000),
        b"SQLite format 3\x00" + os.urandom(8176),  # the magic, then junk
        b"\x00" * 8192,
    ],
    ids=["random", "random-large", "sqlite-magic-then-junk", "zeros"],
)
def test_a_file_of_other_bytes_is_refused_and_left_as_it_was(
    tmp_path: Path, embedder, content: bytes
) -> None:
    path = tmp_path / "memex.db"
    path.write_bytes(content)
    refused(path, embedder, StoreError, DAMAGED, WHAT_TO_DO)


def newer_file(path: Path, embedder) -> Path:
    with open_store(path, embedder=embedder) as store:
        fill(store, turns=2)
        with store.atomic() as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    return path


def test_a_file_from_a_newer_memex_is_refused_and_left_as_it_was(tmp_path: Path, embedder) -> None:
    path = newer_file(tmp_path / "memex.db", embedder)
    refused(path, embedder, SchemaTooNew, "written by a newer Memex", "Upgrade Memex to open it")


def test_a_newer_file_in_rollback_journal_mode_is_refused_and_left_as_it_was(
    tmp_path: Path, embedder
) -> None:
    """Switching a file to WAL rewrites its header: a newer Memex's file that is not in WAL
    mode (a newer Memex's choice, or `PRAGMA journal_mode=DELETE` by hand) is refused first."""
    path = newer_file(tmp_path / "memex.db", embedder)
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=DELETE").fetchall()
    conn.close()
    refused(path, embedder, SchemaTooNew, "written by a newer Memex")


# -- what db.py once got wrong: the -wal of a refused file, damage a -wal hides, other programs' files


def test_a_newer_file_with_a_wal_is_refused_and_left_as_it_was(tmp_path: Path, embedder) -> None:
    with open_store(tmp_path / "live.db", embedder=embedder) as store:
        fill(store, turns=2)
        with store.atomic() as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
        crashed = copy_while_open(store, tmp_path / "crashed" / "memex.db")
    refused(crashed, embedder, SchemaTooNew, "written by a newer Memex")


def test_a_damaged_file_keeps_its_wal(tmp_path: Path, embedder) -> None:
    path = tmp_path / "memex.db"
    path.write_bytes(os.urandom(8192))
    Path(f"{path}-wal").write_bytes(os.urandom(4096))
    refused(path, embedder, StoreError, DAMAGED)


def test_a_truncated_file_with_its_wal_is_refused(tmp_path: Path, embedder) -> None:
    with open_store(tmp_path / "live.db", embedder=embedder) as store:
        fill(store)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with store.atomic() as conn:  # one more transaction, left in the WAL
            conn.execute("UPDATE agents SET name = 'sam2'")
        crashed = copy_while_open(store, tmp_path / "crashed" / "memex.db")
    data = crashed.read_bytes()
    crashed.write_bytes(data[: len(data) // 2])
    refused(crashed, embedder, StoreError, DAMAGED)


def test_another_programs_sqlite_file_is_refused_and_left_as_it_was(
    tmp_path: Path, embedder
) -> None:
    path = tmp_path / "contacts.sqlite"
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE contacts(name TEXT); INSERT INTO contacts VALUES ('Ada')")
    conn.close()
    refused(path, embedder, StoreError, "not a Memex database")


# -- an older file is copied aside before it is upgraded --------------------------------------


def older_file(path: Path, embedder, monkeypatch: pytest.MonkeyPatch, version: int = 2) -> Path:
    """A file as Memex at schema `version` wrote it, with an agent and what it remembers."""
    with (
        older_memex(monkeypatch, version),
        open_store(path, embedder=embedder) as store,
        store.atomic() as conn,
    ):
        add_sam(conn)
    return path


def test_an_older_file_is_backed_up_byte_for_byte_before_the_upgrade(
    tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = older_file(tmp_path / "memex.db", embedder, monkeypatch)
    assert not Path(f"{path}-wal").exists()
    original = path.read_bytes()

    with open_store(path, embedder=embedder) as store:
        assert store.schema_version == LATEST_VERSION

    backup = tmp_path / "memex.db.v2.bak"
    assert backup.read_bytes() == original
    assert path.read_bytes() != original  # the upgrade went to the file, not the backup
    assert sorted(p.name for p in tmp_path.glob("*.bak")) == ["memex.db.v2.bak"]
    # the backup is a whole v2 file on its own
    conn = apsw.Connection(str(backup), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (2,)
        assert conn.execute("SELECT value FROM blocks").fetchall() == [("Name: Ada.",)]
    finally:
        conn.close()


def test_an_older_file_left_by_a_crash_is_backed_up_with_its_wal_contents(
    tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The WAL's transactions are in the backup: it is checkpointed into the file first."""
    with monkeypatch.context() as old_memex:
        old_memex.setattr(db, "MIGRATIONS", MIGRATIONS[:2])
        old_memex.setattr(db, "LATEST_VERSION", 2)
        with open_store(tmp_path / "live.db", embedder=embedder) as store:
            with store.atomic() as conn:
                conn.execute(
                    "INSERT INTO agents(name, persona_json, created_at)"
                    ' VALUES (\'sam\', \'{"name": "Sam", "description": "d"}\', \'x\')'
                )
            crashed = copy_while_open(store, tmp_path / "crashed" / "memex.db")
    assert Path(f"{crashed}-wal").stat().st_size > 0

    open_store(crashed, embedder=embedder).close()

    backup = crashed.with_name("memex.db.v2.bak")
    conn = apsw.Connection(str(backup), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert conn.execute("SELECT name FROM agents").fetchall() == [("sam",)]
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (2,)
    finally:
        conn.close()


def test_a_current_file_is_opened_without_a_backup_or_a_change(
    real_file: Path, tmp_path: Path, embedder
) -> None:
    path = tmp_path / "memex.db"
    shutil.copyfile(real_file, path)
    open_store(path, embedder=embedder).close()
    assert not list(tmp_path.glob("*.bak"))
    assert sha(path) == sha(real_file)


def test_an_earlier_backup_is_never_overwritten(
    tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = older_file(tmp_path / "memex.db", embedder, monkeypatch)
    earlier = tmp_path / "memex.db.v2.bak"
    earlier.write_bytes(b"an older backup the user kept")
    with open_store(path, embedder=embedder):
        pass
    assert earlier.read_bytes() == b"an older backup the user kept"
    assert (tmp_path / "memex.db.v2.2.bak").exists()
