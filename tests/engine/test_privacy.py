"""The user's memory stays theirs: every file Memex writes about them is readable by the user
only (0600), and nothing listens on a network port. Modes under the process's own umask, or 022
where that already hides new files from others (tests/privacy.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import engine.store.db as db
from engine import MemGPTAgent, Persona
from engine.agentfile import export_agent
from engine.llm.scripted import ScriptedClient, call
from engine.store.db import Store, open_store
from engine.store.migrations import LATEST_VERSION, MIGRATIONS
from tests.privacy import (
    ROOT,
    linux_only,
    mode,
    posix_modes,
    run_probe,
    umask_that_shows_a_leak,  # noqa: F401 - the fixture, used below
)

pytestmark = pytest.mark.usefixtures("umask_that_shows_a_leak")


def _agent_with_memories(store: Store) -> MemGPTAgent:
    client = ScriptedClient(
        [
            call("core_memory_append", heartbeat=True, section="human", content="Name: Ada"),
            call("archival_memory_insert", heartbeat=True, content="Ada's PIN is 1234"),
            call("send_message", message="Noted."),
        ]
    )
    agent = MemGPTAgent(Persona("Sam", "d"), store, client, name="sam")
    agent.step("I am Ada; my PIN is 1234")
    return agent


@posix_modes
def test_database_its_wal_shm_and_lock_files_are_private(store: Store) -> None:
    _agent_with_memories(store)
    files = [store.path, *(store.path.with_name(store.path.name + s) for s in ("-wal", "-shm"))]
    files.append(store.path.with_name(store.path.name + ".lock"))
    assert all(f.exists() for f in files)  # open, written: WAL and shared memory are there
    assert {f.name: mode(f) for f in files} == {f.name: "0o600" for f in files}


@posix_modes
def test_migration_backup_is_private(
    tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "memex.db"
    with monkeypatch.context() as older_memex:  # a file one schema version behind
        older_memex.setattr(db, "MIGRATIONS", MIGRATIONS[:-1])
        older_memex.setattr(db, "LATEST_VERSION", LATEST_VERSION - 1)
        open_store(path, embedder=embedder).close()
    path.chmod(0o644)  # as a file copied in, or made before Memex kept it private, may be
    open_store(path, embedder=embedder).close()
    backup = tmp_path / f"memex.db.v{LATEST_VERSION - 1}.bak"
    assert backup.exists() and mode(backup) == "0o600"


@posix_modes
def test_exported_agent_file_is_private(store: Store, tmp_path: Path) -> None:
    _agent_with_memories(store)
    new = tmp_path / "sam.json"
    export_agent(store, "sam", new)
    assert mode(new) == "0o600"
    replaced = tmp_path / "old.json"
    replaced.write_text("{}")
    replaced.chmod(0o644)
    export_agent(store, "sam", replaced)  # the export replaces it: a file of its own
    assert mode(replaced) == "0o600" and "Ada's PIN" in replaced.read_text()
    assert not list(tmp_path.glob("*.part"))


@posix_modes
def test_memex_export_writes_a_private_file(tmp_path: Path, embedder) -> None:
    path = tmp_path / "memex.db"
    with open_store(path, embedder=embedder) as store:
        _agent_with_memories(store)
    out = tmp_path / "export" / "sam.json"
    out.parent.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "engine", "export", "sam", str(out), "--db", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["agent"]["name"] == "sam"
    assert mode(out) == "0o600"


# -- no network --------------------------------------------------------------------------------


@linux_only
def test_an_agent_step_listens_on_no_port(tmp_path: Path, embed_path: Path) -> None:
    report = run_probe("engine", tmp_path / "memex.db")
    assert report["listening"] == []
    assert report["python_sockets"] == []  # not even an Internet socket made, offline
    # the check sees a listener when there is one (TCP in LISTEN, a bound UDP socket)
    assert [line.split()[0] for line in report["control"]] == ["tcp", "udp"]
