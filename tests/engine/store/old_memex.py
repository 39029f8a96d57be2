"""Files as an older Memex wrote them: open_store migrating only up to an earlier schema."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import apsw
import pytest

import engine.store.db as db
from engine.store.migrations import MIGRATIONS


@contextlib.contextmanager
def older_memex(monkeypatch: pytest.MonkeyPatch, version: int) -> Iterator[None]:
    """Inside it, open_store makes and opens files of schema `version`."""
    with monkeypatch.context() as old:
        old.setattr(db, "MIGRATIONS", MIGRATIONS[:version])
        old.setattr(db, "LATEST_VERSION", version)
        yield


def add_sam(conn: apsw.Connection) -> None:
    """What any version of Memex wrote for an agent: Sam, with a human block naming Ada."""
    conn.execute(
        "INSERT INTO agents(name, persona_json, created_at)"
        ' VALUES (\'sam\', \'{"name": "Sam", "description": "d"}\', \'2026-01-01\')'
    )
    conn.execute(
        "INSERT INTO blocks(label, value, char_limit, created_at, updated_at)"
        " VALUES ('human', 'Name: Ada.', 100, '2026-01-01', '2026-01-01')"
    )
    conn.execute("INSERT INTO agent_blocks VALUES (1, 1, 'human', 0)")
