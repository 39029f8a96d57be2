"""Recall memory: every message an agent ever exchanged, kept forever, searchable by text and date."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

from engine.memory.search import HybridIndex, Page, fts_query, paginate, vector_blob
from engine.memory.vectors import VectorTable
from engine.memory.when import day
from engine.store.db import Store, iso_utc
from engine.types import Message, Role

_COLUMNS = (
    "id, agent_id, session_id, role, content, created_at, token_count, in_context,"
    " tool_call_json, tool_result_json, search_text, replaced"
)


def searchable_text(content: str, tool_call: dict[str, Any] | None) -> str:
    """What a person would read of a message: an assistant's words, not its JSON."""
    if tool_call is None:
        return content
    arguments = tool_call.get("arguments") or {}
    if tool_call.get("tool") == "send_message":
        return str(arguments.get("message", ""))
    values = " ".join(str(v) for v in arguments.values() if v)
    return f"[{tool_call.get('tool')}] {values}".strip()


def embedded_text(search_text: str, created_at: dt.datetime | str) -> str:
    """What a message's vector is made of: its text after the day it was said ("[8 May 2023]
    Ann: ..."), as its words are indexed beside that day (migration 6), so the embedder
    places a message by when as well as by what. A time that is no time leaves the text
    alone."""
    try:
        when = dt.datetime.fromisoformat(created_at) if isinstance(created_at, str) else created_at
    except ValueError:
        return search_text
    return f"[{day(when)}] {search_text}"


# User and assistant messages only: tool results and system notes are not conversation. A
# message's text is its session, split where the talk paused for over an hour (NEIGHBOUR_GAP):
# an imported conversation's turns are next to each other by id, as a document's passages are;
# in a live chat a tool call and its result may sit between a message and its reply, and the
# hit carries that reply with it in page-in anyway (RecallMemory.exchange_partner).
MESSAGE_INDEX = HybridIndex(
    text_sql="SELECT m.id FROM messages_fts f JOIN messages m ON m.id = f.rowid"
    " WHERE messages_fts MATCH ? AND m.agent_id = ? AND m.role IN ('user', 'assistant')",
    fts_table="messages_fts",
    vectors=VectorTable("message_vectors"),
    thread_sql="SELECT id, CAST(session_id AS TEXT), created_at FROM messages"
    " WHERE id IN (SELECT value FROM json_each(?))",
)


def _row_to_message(row: tuple[Any, ...]) -> Message:
    return Message(
        id=row[0],
        agent_id=row[1],
        session_id=row[2],
        role=row[3],
        content=row[4],
        created_at=dt.datetime.fromisoformat(row[5]),
        token_count=row[6],
        in_context=bool(row[7]),
        tool_call=json.loads(row[8]) if row[8] else None,
        tool_result=json.loads(row[9]) if row[9] else None,
        search_text=row[10],
        replaced=bool(row[11]),
    )


class RecallMemory:
    """The message history of one agent in the store."""

    def __init__(self, store: Store, agent_id: int) -> None:
        self.store = store
        self.agent_id = agent_id

    def add(
        self,
        session_id: int,
        role: Role,
        content: str,
        token_count: int,
        tool_call: dict[str, Any] | None = None,
        tool_result: dict[str, Any] | None = None,
        created_at: dt.datetime | None = None,
        in_context: bool = True,
    ) -> Message:
        """Store one message (and its embedding, for semantic recall search). `created_at`
        (default now) and `in_context` False are for history brought in from elsewhere: an
        earlier conversation, already out of view."""
        text = searchable_text(content, tool_call)
        created = created_at if created_at is not None else dt.datetime.now(dt.UTC)
        vector = (
            self.store.embedder.embed_one(embedded_text(text, created))
            if role in ("user", "assistant")
            else None
        )
        with self.store.atomic() as conn:
            conn.execute(
                "INSERT INTO messages(agent_id, session_id, role, content, search_text,"
                " tool_call_json, tool_result_json, token_count, created_at, in_context)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.agent_id,
                    session_id,
                    role,
                    content,
                    text,
                    json.dumps(tool_call) if tool_call is not None else None,
                    json.dumps(tool_result) if tool_result is not None else None,
                    token_count,
                    iso_utc(created),
                    int(in_context),
                ),
            )
            message_id = conn.last_insert_rowid()
            if vector is not None:
                conn.execute(
                    MESSAGE_INDEX.vectors.insert_sql,
                    (message_id, self.agent_id, vector_blob(vector), self.store.embedder.name),
                )
        return self.get(message_id)

    def get(self, message_id: int) -> Message:
        row = self.store.query_one(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        if row is None:
            raise KeyError(message_id)
        return _row_to_message(row)

    def exchange_partner(self, message: Message) -> Message | None:
        """The other half of `message`'s exchange in its session: the reply to a user message,
        or the user message an assistant reply answered (None when the neighbour is of the same
        role, or a tool call other than a reply)."""
        after = message.role == "user"
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM messages WHERE agent_id = ? AND session_id = ?"
            f" AND id {'>' if after else '<'} ? AND role IN ('user', 'assistant')"
            " AND (tool_call_json IS NULL OR json_extract(tool_call_json, '$.tool') ="
            f" 'send_message') ORDER BY id {'ASC' if after else 'DESC'} LIMIT 1",
            (self.agent_id, message.session_id, message.id),
        )
        if not rows:
            return None
        other = _row_to_message(rows[0])
        return other if other.role != message.role else None

    def holds_word(self, word: str) -> bool:
        """Whether a user message or a reply to the user ever held `word` (FTS5's porter stem:
        "moved" finds "move"). The model's tool calls do not count: what it wrote into memory
        itself is no evidence that anyone said it."""
        match = fts_query(word)
        if match is None:
            return False
        match = f"search_text : ({match})"  # its words, not the day it was said
        row = self.store.query_one(
            "SELECT 1 FROM messages_fts f JOIN messages m ON m.id = f.rowid"
            " WHERE messages_fts MATCH ? AND m.agent_id = ? AND (m.role = 'user' OR"
            " (m.role = 'assistant' AND (m.tool_call_json IS NULL OR"
            " json_extract(m.tool_call_json, '$.tool') = 'send_message'))) LIMIT 1",
            (match, self.agent_id),
        )
        return row is not None

    def in_context(self) -> list[Message]:
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM messages WHERE agent_id = ? AND in_context = 1 ORDER BY id",
            (self.agent_id,),
        )
        return [_row_to_message(r) for r in rows]

    def evict(self, message_ids: list[int]) -> None:
        """Take messages out of the context window; they stay in recall, searchable."""
        with self.store.atomic() as conn:
            conn.executemany(
                "UPDATE messages SET in_context = 0 WHERE id = ? AND agent_id = ?",
                [(i, self.agent_id) for i in message_ids],
            )

    def delete(self, message_id: int) -> None:
        """Delete one of this agent's messages for good, with its index rows (its words by a
        trigger, its vector here); KeyError if it is not one (nothing else is touched)."""
        with self.store.atomic() as conn:
            conn.execute(
                "DELETE FROM messages WHERE id = ? AND agent_id = ?", (message_id, self.agent_id)
            )
            if conn.changes() == 0:
                raise KeyError(message_id)
            conn.execute("DELETE FROM message_vectors WHERE id = ?", (message_id,))

    def redact(self, text: str, mark: str) -> list[int]:
        """Writes `mark` for `text` wherever the assistant's messages and the tools' results
        hold it (memory's own copies of it: the call that saved it, a search or a listing that
        showed it), words and vector made again; the user's messages are left alone. Returns
        the ids of the messages rewritten."""
        if not text.strip():
            return []
        escaped, escaped_mark = json.dumps(text)[1:-1], json.dumps(mark)[1:-1]
        rows = self.store.query(
            "SELECT id, content, search_text, tool_call_json, tool_result_json, created_at, role"
            " FROM messages WHERE agent_id = ? AND role IN ('assistant', 'tool')"
            " AND (instr(content, ?) > 0 OR instr(content, ?) > 0)",
            (self.agent_id, text, escaped),
        )

        def scrub(value: str | None) -> str | None:
            if value is None:
                return None
            return value.replace(text, mark).replace(escaped, escaped_mark)

        searched = {row[0]: scrub(row[2]) or "" for row in rows}
        # the assistant's words that changed are embedded again, at once, before the writes
        again = [row for row in rows if row[6] == "assistant" and searched[row[0]] != row[2]]
        texts = [embedded_text(searched[row[0]], row[5]) for row in again]
        vectors = dict(
            zip(
                [row[0] for row in again],
                self.store.embedder.embed(texts) if texts else [],
                strict=True,
            )
        )
        with self.store.atomic() as conn:
            for message_id, content, _, call, result, _, _ in rows:
                conn.execute(
                    "UPDATE messages SET content = ?, search_text = ?, tool_call_json = ?,"
                    " tool_result_json = ? WHERE id = ?",
                    (scrub(content), searched[message_id], scrub(call), scrub(result), message_id),
                )
                if message_id in vectors:
                    conn.execute(
                        MESSAGE_INDEX.vectors.update_sql,
                        (vector_blob(vectors[message_id]), self.store.embedder.name, message_id),
                    )
        return [row[0] for row in rows]

    def replace_from(self, message_id: int) -> list[int]:
        """Marks this agent's messages from `message_id` on as replaced (an old version) and
        takes them out of the context window; they stay in recall. Returns their ids."""
        with self.store.atomic() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM messages WHERE agent_id = ? AND id >= ? AND replaced = 0",
                    (self.agent_id, message_id),
                )
            ]
            conn.executemany(
                "UPDATE messages SET replaced = 1, in_context = 0 WHERE id = ?",
                [(i,) for i in ids],
            )
        return ids

    def last_user_message(self) -> Message | None:
        """The user's latest message that is not an old version."""
        row = self.store.query_one(
            f"SELECT {_COLUMNS} FROM messages WHERE agent_id = ? AND role = 'user'"
            " AND replaced = 0 ORDER BY id DESC LIMIT 1",
            (self.agent_id,),
        )
        return _row_to_message(row) if row else None

    def said_before(self, moment: dt.datetime) -> Message | None:
        """The user's last message at or before `moment`: what a memory saved then answered."""
        row = self.store.query_one(
            f"SELECT {_COLUMNS} FROM messages WHERE agent_id = ? AND role = 'user'"
            " AND created_at <= ? ORDER BY created_at DESC, id DESC LIMIT 1",
            (self.agent_id, iso_utc(moment)),
        )
        return _row_to_message(row) if row else None

    def paged_out_after(self, message_id: int) -> list[Message]:
        """Messages out of the context with an id above `message_id`, oldest first."""
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM messages WHERE agent_id = ? AND in_context = 0 AND id > ?"
            " ORDER BY id",
            (self.agent_id, message_id),
        )
        return [_row_to_message(r) for r in rows]

    def count(self) -> int:
        row = self.store.query_one(
            "SELECT count(*) FROM messages WHERE agent_id = ?", (self.agent_id,)
        )
        return row[0] if row else 0

    def recent(self, limit: int, before_id: int | None = None) -> list[Message]:
        """The newest `limit` messages (older than `before_id` when given), oldest first."""
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM messages WHERE agent_id = ? AND id < ?"
            " ORDER BY id DESC LIMIT ?",
            (self.agent_id, before_id if before_id is not None else 2**62, limit),
        )
        return [_row_to_message(r) for r in reversed(rows)]

    def all(self) -> list[Message]:
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM messages WHERE agent_id = ? ORDER BY id", (self.agent_id,)
        )
        return [_row_to_message(r) for r in rows]

    # -- search ------------------------------------------------------------------------------
    def search(
        self, query: str, limit: int = 5, page: int = 0, old_versions: bool = False
    ) -> tuple[Page, list[Message]]:
        """Hybrid search over user and assistant messages: BM25 fused with vector similarity.
        An old version (a regenerated reply, an edited message) only with `old_versions` (the
        user's Recall panel): the model is not to find what was taken back."""
        return self.page_of(self.ranked(query, old_versions), limit, page)

    def search_date(
        self,
        start: dt.datetime,
        end: dt.datetime,
        limit: int = 5,
        page: int = 0,
        old_versions: bool = False,
    ) -> tuple[Page, list[Message]]:
        """Messages with start <= created_at < end (UTC), oldest first."""
        return self.page_of(self.dated(start, end, old_versions), limit, page)

    def ranked(self, query: str, old_versions: bool = False) -> list[int]:
        """Ids of the user and assistant messages matching `query`, best first."""
        ids = MESSAGE_INDEX.ranked(self.store, self.agent_id, query)
        return ids if old_versions else self._without_old_versions(ids)

    def dated(self, start: dt.datetime, end: dt.datetime, old_versions: bool = False) -> list[int]:
        """Ids of the user and assistant messages with start <= created_at < end, oldest first."""
        rows = self.store.query(
            "SELECT id FROM messages WHERE agent_id = ? AND role IN ('user', 'assistant')"
            " AND created_at >= ? AND created_at < ?"
            + ("" if old_versions else " AND replaced = 0")
            + " ORDER BY id",
            (
                self.agent_id,
                start.isoformat(timespec="microseconds"),
                end.isoformat(timespec="microseconds"),
            ),
        )
        return [r[0] for r in rows]

    def _without_old_versions(self, ids: list[int]) -> list[int]:
        if not ids:
            return ids
        old = {
            row[0]
            for row in self.store.query(
                "SELECT id FROM messages WHERE id IN (SELECT value FROM json_each(?))"
                " AND replaced = 1",
                (json.dumps(ids),),
            )
        }
        return [i for i in ids if i not in old] if old else ids

    def page_of(self, ids: list[int], limit: int, page: int) -> tuple[Page, list[Message]]:
        result = paginate(ids, limit, page)
        found = []
        for i in result.ids:
            with contextlib.suppress(KeyError):  # deleted since it was ranked (another thread)
                found.append(self.get(i))
        return result, found
