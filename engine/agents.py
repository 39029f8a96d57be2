"""The agents of one Memex file: list, rename and delete them (MemGPTAgent opens or creates one)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from engine.errors import InvalidInput
from engine.store.db import Store
from engine.types import Persona

MAX_NAME_CHARS = 80


@dataclass(frozen=True)
class AgentInfo:
    id: int
    name: str
    persona: Persona
    created_at: dt.datetime
    messages: int
    last_user_message_at: dt.datetime | None


def list_agents(store: Store) -> list[AgentInfo]:
    """Every agent in the file, oldest first, with how many messages each has."""
    rows = store.query(
        "SELECT a.id, a.name, a.persona_json, a.created_at, a.last_user_message_at,"
        " (SELECT count(*) FROM messages m WHERE m.agent_id = a.id)"
        " FROM agents a ORDER BY a.id"
    )
    return [
        AgentInfo(
            r[0],
            r[1],
            Persona(**json.loads(r[2])),
            dt.datetime.fromisoformat(r[3]),
            r[5],
            dt.datetime.fromisoformat(r[4]) if r[4] else None,
        )
        for r in rows
    ]


def check_name(name: str) -> str:
    """An agent name as stored: trimmed, not empty, not too long."""
    clean = " ".join(name.split())
    if not clean:
        raise InvalidInput("an agent needs a name")
    if len(clean) > MAX_NAME_CHARS:
        raise InvalidInput(f"an agent name has at most {MAX_NAME_CHARS} characters")
    return clean


def rename_agent(store: Store, old: str, new: str) -> str:
    """Rename agent `old`; returns the name as stored. Raises InvalidInput if `new` is taken."""
    new = check_name(new)
    with store.atomic() as conn:
        agent_id = _agent_id(conn, old)
        taken = conn.execute("SELECT id FROM agents WHERE name = ?", (new,)).fetchone()
        if taken is not None and taken[0] != agent_id:
            raise InvalidInput(f"there is already an agent called {new!r}")
        conn.execute("UPDATE agents SET name = ? WHERE id = ?", (new, agent_id))
    return new


def delete_agent(store: Store, name: str) -> None:
    """Delete an agent and all its memory: messages, passages, summaries, and the core blocks
    no other agent shares. The search indexes (FTS5, sqlite-vec) are cleaned in the same
    transaction, since virtual tables take no part in foreign-key cascades."""
    with store.atomic() as conn:
        agent_id = _agent_id(conn, name)
        own_blocks = [
            r[0]
            for r in conn.execute(
                "SELECT block_id FROM agent_blocks WHERE agent_id = ? AND block_id NOT IN"
                " (SELECT block_id FROM agent_blocks WHERE agent_id != ?)",
                (agent_id, agent_id),
            )
        ]
        conn.execute("DELETE FROM message_vectors WHERE agent_id = ?", (agent_id,))
        conn.execute("DELETE FROM passage_vectors WHERE agent_id = ?", (agent_id,))
        conn.execute(
            "DELETE FROM passages_fts WHERE rowid IN (SELECT id FROM passages WHERE agent_id = ?)",
            (agent_id,),
        )
        conn.execute("DELETE FROM agents WHERE id = ?", (agent_id,))  # cascades to the rest
        conn.executemany("DELETE FROM blocks WHERE id = ?", [(b,) for b in own_blocks])


def _agent_id(conn: object, name: str) -> int:
    row = conn.execute("SELECT id FROM agents WHERE name = ?", (name,)).fetchone()  # type: ignore[attr-defined]
    if row is None:
        raise InvalidInput(f"there is no agent called {name!r}")
    return int(row[0])
