"""Archival memory: unlimited long-term passages with hybrid (FTS5 + sqlite-vec) search."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.memory.search import HybridIndex, Page, fts_query, paginate, vector_blob
from engine.memory.vectors import VectorTable
from engine.store.db import Store, iso_utc, now_iso

PASSAGE_INDEX = HybridIndex(
    text_sql="SELECT p.id FROM passages_fts f JOIN passages p ON p.id = f.rowid"
    " WHERE passages_fts MATCH ? AND p.agent_id = ?",
    fts_table="passages_fts",
    vectors=VectorTable("passage_vectors"),
    # one source's passages stored together: an imported conversation, a document's parts
    thread_sql="SELECT id, source, created_at FROM passages"
    " WHERE id IN (SELECT value FROM json_each(?))",
)


@dataclass(frozen=True)
class Passage:
    id: int
    text: str
    tags: list[str]
    source: str
    created_at: dt.datetime


class ArchivalMemory:
    """The archival passages of one agent in the store."""

    def __init__(self, store: Store, agent_id: int) -> None:
        self.store = store
        self.agent_id = agent_id

    def insert(
        self,
        text: str,
        tags: Sequence[str] | None = None,
        source: str = "",
        created_at: dt.datetime | None = None,
    ) -> int:
        times = [created_at] if created_at is not None else None
        return self.insert_many([text], tags=tags, source=source, created_at=times)[0]

    def insert_many(
        self,
        texts: Sequence[str],
        tags: Sequence[str] | None = None,
        source: str = "",
        vectors: Sequence[bytes] | None = None,
        created_at: Sequence[dt.datetime] | None = None,
    ) -> list[int]:
        """Embed and store passages in one transaction; returns their ids. `vectors` (float32
        bytes made by this store's embedder, e.g. from an agent file) skip the embedding.
        `created_at` (one a text; default now) dates passages brought in from elsewhere."""
        if vectors is None:
            vectors = [vector_blob(v) for v in self.store.embedder.embed(list(texts))]
        tag_list = list(tags or [])
        model = self.store.embedder.name
        ids: list[int] = []
        times = [iso_utc(t) for t in created_at] if created_at is not None else None
        with self.store.atomic() as conn:
            for index, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
                conn.execute(
                    "INSERT INTO passages(agent_id, text, tags_json, source, embedding_model,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        self.agent_id,
                        text,
                        json.dumps(tag_list),
                        source,
                        model,
                        times[index] if times is not None else now_iso(),
                    ),
                )
                passage_id = conn.last_insert_rowid()
                conn.execute(
                    "INSERT INTO passages_fts(rowid, text, tags) VALUES (?, ?, ?)",
                    (passage_id, text, " ".join(tag_list)),
                )
                conn.execute(
                    PASSAGE_INDEX.vectors.insert_sql,
                    (passage_id, self.agent_id, vector, model),
                )
                ids.append(passage_id)
        return ids

    def holds_word(self, word: str) -> bool:
        """Whether a passage of this agent holds `word` (FTS5's porter stem)."""
        match = fts_query(word)
        if match is None:
            return False
        row = self.store.query_one(
            "SELECT 1 FROM passages_fts f JOIN passages p ON p.id = f.rowid"
            " WHERE passages_fts MATCH ? AND p.agent_id = ? LIMIT 1",
            (match, self.agent_id),
        )
        return row is not None

    def insert_message_parts(self, message_id: int, text: str) -> list[int]:
        """Save a message too big for the window as passages, so its parts can be found."""
        # Embedding costs about 0.1 s a part here: past MAX_PARTS the parts grow instead, so a
        # pasted book costs seconds, not minutes (a part's vector reads its first 512 tokens;
        # full-text search reads all of it).
        parts = chunk_text(text, max(PART_CHARS, -(-len(text) // MAX_PARTS)))
        count = len(parts)
        return self.insert_many(
            [
                f"(message {message_id}, part {i + 1}/{count}) {part}"
                for i, part in enumerate(parts)
            ],
            tags=[f"message-{message_id}"],
            source=f"message:{message_id}",
        )

    def has_message_parts(self, message_id: int) -> bool:
        row = self.store.query_one(
            "SELECT 1 FROM passages WHERE agent_id = ? AND source = ? LIMIT 1",
            (self.agent_id, f"message:{message_id}"),
        )
        return row is not None

    def distances(self, passage_ids: Sequence[int], query: np.ndarray) -> dict[int, float]:
        """The cosine distance of these passages to an embedded `query`, by id (VectorTable)."""
        return PASSAGE_INDEX.vectors.distances(self.store, self.agent_id, passage_ids, query)

    def get(self, passage_id: int) -> Passage:
        row = self.store.query_one(
            "SELECT id, text, tags_json, source, created_at FROM passages"
            " WHERE id = ? AND agent_id = ?",
            (passage_id, self.agent_id),
        )
        if row is None:
            raise KeyError(passage_id)
        return Passage(
            row[0], row[1], json.loads(row[2]), row[3], dt.datetime.fromisoformat(row[4])
        )

    def update(self, passage_id: int, text: str, tags: Sequence[str] | None = None) -> Passage:
        """Change a passage's text and tags (the user's edit); its vector is computed again."""
        self.get(passage_id)  # KeyError if it is not this agent's
        tag_list = list(tags or [])
        vector = self.store.embedder.embed_one(text)
        model = self.store.embedder.name
        with self.store.atomic() as conn:
            conn.execute(
                "UPDATE passages SET text = ?, tags_json = ?, embedding_model = ? WHERE id = ?",
                (text, json.dumps(tag_list), model, passage_id),
            )
            conn.execute("DELETE FROM passages_fts WHERE rowid = ?", (passage_id,))
            conn.execute(
                "INSERT INTO passages_fts(rowid, text, tags) VALUES (?, ?, ?)",
                (passage_id, text, " ".join(tag_list)),
            )
            conn.execute("DELETE FROM passage_vectors WHERE rowid = ?", (passage_id,))
            conn.execute(
                PASSAGE_INDEX.vectors.insert_sql,
                (passage_id, self.agent_id, vector_blob(vector), model),
            )
        return self.get(passage_id)

    def recent(self, limit: int, offset: int = 0) -> list[Passage]:
        """Passages newest first, for browsing."""
        rows = self.store.query(
            "SELECT id FROM passages WHERE agent_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (self.agent_id, limit, offset),
        )
        return [self.get(r[0]) for r in rows]

    def delete(self, passage_id: int) -> None:
        """Delete one of this agent's passages; KeyError if it is not one (then nothing of
        another agent's, index rows included, is touched)."""
        with self.store.atomic() as conn:
            conn.execute(
                "DELETE FROM passages WHERE id = ? AND agent_id = ?", (passage_id, self.agent_id)
            )
            if conn.changes() == 0:
                raise KeyError(passage_id)
            conn.execute("DELETE FROM passages_fts WHERE rowid = ?", (passage_id,))
            conn.execute("DELETE FROM passage_vectors WHERE rowid = ?", (passage_id,))

    def count(self) -> int:
        row = self.store.query_one(
            "SELECT count(*) FROM passages WHERE agent_id = ?", (self.agent_id,)
        )
        return row[0] if row else 0

    def search(self, query: str, limit: int = 5, page: int = 0) -> tuple[Page, list[Passage]]:
        """BM25 and vector similarity fused by reciprocal rank; paginated."""
        return self.page_of(self.ranked(query), limit, page)

    def ranked(self, query: str) -> list[int]:
        """Ids of the passages matching `query`, best first."""
        return PASSAGE_INDEX.ranked(self.store, self.agent_id, query)

    def page_of(self, ids: list[int], limit: int, page: int) -> tuple[Page, list[Passage]]:
        result = paginate(ids, limit, page)
        found = []
        for i in result.ids:
            with contextlib.suppress(KeyError):  # deleted since it was ranked (another thread)
                found.append(self.get(i))
        return result, found


PART_CHARS = 1_000  # about 250 tokens: inside what the embedding model reads of a passage
MAX_PARTS = 32


def chunk_text(text: str, size: int = PART_CHARS) -> list[str]:
    """Split `text` into parts of at most `size` characters, at a paragraph, line, sentence or
    word break where there is one in the second half of the part."""
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > size:
        window = rest[:size]
        cut = max(window.rfind(sep, size // 2) for sep in ("\n\n", "\n", ". ", " "))
        cut = cut + 1 if cut > 0 else size
        parts.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        parts.append(rest)
    return [p for p in parts if p]
