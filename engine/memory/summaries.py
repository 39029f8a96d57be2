"""The recursive summary: what the agent still knows of messages paged out of its window.

Each summary folds the one before it with the messages paged out since, so the newest one covers
every message from the first to `last_message_id`. Rows are never changed: the chain is history.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from engine.store.db import Store, now_iso


@dataclass(frozen=True)
class Summary:
    id: int
    text: str
    first_message_id: int
    last_message_id: int
    previous_id: int | None
    created_at: dt.datetime


_COLUMNS = "id, text, first_message_id, last_message_id, previous_id, created_at"


def _row(row: tuple[object, ...]) -> Summary:
    return Summary(
        id=int(row[0]),  # type: ignore[arg-type]
        text=str(row[1]),
        first_message_id=int(row[2]),  # type: ignore[arg-type]
        last_message_id=int(row[3]),  # type: ignore[arg-type]
        previous_id=None if row[4] is None else int(row[4]),  # type: ignore[arg-type]
        created_at=dt.datetime.fromisoformat(str(row[5])),
    )


class SummaryLog:
    """The summaries of one agent, newest last."""

    def __init__(self, store: Store, agent_id: int) -> None:
        self.store = store
        self.agent_id = agent_id

    def latest(self) -> Summary | None:
        row = self.store.query_one(
            f"SELECT {_COLUMNS} FROM summaries WHERE agent_id = ? ORDER BY id DESC LIMIT 1",
            (self.agent_id,),
        )
        return None if row is None else _row(row)

    def get(self, summary_id: int) -> Summary | None:
        row = self.store.query_one(
            f"SELECT {_COLUMNS} FROM summaries WHERE agent_id = ? AND id = ?",
            (self.agent_id, summary_id),
        )
        return None if row is None else _row(row)

    def all(self) -> list[Summary]:
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM summaries WHERE agent_id = ? ORDER BY id", (self.agent_id,)
        )
        return [_row(r) for r in rows]

    def add(self, text: str, first_message_id: int, last_message_id: int, model: str) -> Summary:
        previous = self.latest()
        previous_id = previous.id if previous else None
        created_at = now_iso()
        with self.store.atomic() as conn:
            conn.execute(
                "INSERT INTO summaries(agent_id, text, first_message_id, last_message_id,"
                " previous_id, model, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    self.agent_id,
                    text,
                    first_message_id,
                    last_message_id,
                    previous_id,
                    model,
                    created_at,
                ),
            )
            summary_id = conn.last_insert_rowid()
        return _row((summary_id, text, first_message_id, last_message_id, previous_id, created_at))
