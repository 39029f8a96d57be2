"""The schema of the Memex file: numbered migrations, applied in order, each recorded in the file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import apsw

EMBEDDING_DIM = 384  # the width of every stored vector (all-MiniLM-L6-v2's; engine.store.profiles)
# the model that embedded every vector stored before migration 5 recorded it per row
FIRST_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[apsw.Connection], None]


def _initial_schema(conn: apsw.Connection) -> None:
    conn.execute(
        f"""
        CREATE TABLE agents (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            persona_json TEXT NOT NULL,
            model_settings_json TEXT NOT NULL DEFAULT '{{}}',
            created_at TEXT NOT NULL,
            last_user_message_at TEXT
        );
        CREATE TABLE blocks (
            id INTEGER PRIMARY KEY,
            label TEXT NOT NULL,
            value TEXT NOT NULL DEFAULT '',
            char_limit INTEGER NOT NULL CHECK (char_limit > 0),
            description TEXT NOT NULL DEFAULT '',
            read_only INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            CHECK (length(value) <= char_limit)
        );
        -- A block may be attached to several agents (shared memory).
        CREATE TABLE agent_blocks (
            agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            block_id INTEGER NOT NULL REFERENCES blocks(id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (agent_id, label)
        );
        CREATE TABLE block_history (
            id INTEGER PRIMARY KEY,
            block_id INTEGER NOT NULL REFERENCES blocks(id) ON DELETE CASCADE,
            before TEXT NOT NULL,
            after TEXT NOT NULL,
            actor TEXT NOT NULL,
            created_at TEXT NOT NULL,
            undone INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX block_history_block ON block_history(block_id, id);
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            started_at TEXT NOT NULL
        );
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
            content TEXT NOT NULL,
            -- what search sees: the text a person would read (an assistant's reply, not its JSON)
            search_text TEXT NOT NULL,
            tool_call_json TEXT,
            tool_result_json TEXT,
            token_count INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            in_context INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX messages_agent ON messages(agent_id, id);
        CREATE INDEX messages_agent_time ON messages(agent_id, created_at);
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            search_text, content='messages', content_rowid='id', tokenize='porter unicode61'
        );
        CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, search_text) VALUES (new.id, new.search_text);
        END;
        CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, search_text)
                VALUES ('delete', old.id, old.search_text);
        END;
        CREATE VIRTUAL TABLE message_vectors USING vec0(
            agent_id INTEGER PARTITION KEY,
            embedding float[{EMBEDDING_DIM}] distance_metric=cosine
        );
        CREATE TABLE passages (
            id INTEGER PRIMARY KEY,
            agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            text TEXT NOT NULL,
            tags_json TEXT NOT NULL DEFAULT '[]',
            source TEXT NOT NULL DEFAULT '',
            embedding_model TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX passages_agent ON passages(agent_id, id);
        CREATE VIRTUAL TABLE passages_fts USING fts5(
            text, tags, content='', contentless_delete=1, tokenize='porter unicode61'
        );
        CREATE VIRTUAL TABLE passage_vectors USING vec0(
            agent_id INTEGER PARTITION KEY,
            embedding float[{EMBEDDING_DIM}] distance_metric=cosine
        );
        CREATE TABLE summaries (
            id INTEGER PRIMARY KEY,
            agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            text TEXT NOT NULL,
            first_message_id INTEGER NOT NULL,
            last_message_id INTEGER NOT NULL,
            created_at TEXT NOT NULL
        );
        """
    )


def _virtual_context(conn: apsw.Connection) -> None:
    conn.execute(
        """
        -- set when the memory-pressure warning has been sent; cleared by the next page-out
        ALTER TABLE agents ADD COLUMN pressure_warned INTEGER NOT NULL DEFAULT 0;
        -- each summary folds in the one before it (recursive summary); NULL for the first
        ALTER TABLE summaries ADD COLUMN previous_id INTEGER REFERENCES summaries(id);
        ALTER TABLE summaries ADD COLUMN model TEXT NOT NULL DEFAULT '';
        CREATE INDEX summaries_agent ON summaries(agent_id, id);
        CREATE INDEX messages_in_context ON messages(agent_id, in_context, id);
        """
    )


def _graph_and_sharing(conn: apsw.Connection) -> None:
    conn.execute(
        """
        -- the knowledge graph: entities and facts (subject, relation, object) with the time each
        -- fact held; a fact that stops being true is closed (valid_to), never deleted
        CREATE TABLE entities (
            id INTEGER PRIMARY KEY,
            agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            -- the name folded (case, spacing): "Alice" and "alice " are one entity
            key TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (agent_id, key)
        );
        CREATE VIRTUAL TABLE entities_fts USING fts5(
            name, content='entities', content_rowid='id', tokenize='porter unicode61'
        );
        CREATE TRIGGER entities_ai AFTER INSERT ON entities BEGIN
            INSERT INTO entities_fts(rowid, name) VALUES (new.id, new.name);
        END;
        CREATE TRIGGER entities_ad AFTER DELETE ON entities BEGIN
            INSERT INTO entities_fts(entities_fts, rowid, name) VALUES ('delete', old.id, old.name);
        END;
        CREATE TABLE facts (
            id INTEGER PRIMARY KEY,
            agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            subject_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
            relation TEXT NOT NULL,
            object_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
            -- one object at a time (works_at) when 1: a new object closes the old fact
            exclusive INTEGER NOT NULL DEFAULT 1,
            valid_from TEXT NOT NULL,
            valid_to TEXT,  -- NULL while the fact still holds
            ended_by INTEGER REFERENCES facts(id) ON DELETE SET NULL,
            source TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            CHECK (valid_to IS NULL OR valid_to >= valid_from)
        );
        CREATE INDEX facts_subject ON facts(agent_id, subject_id, relation, valid_from);
        CREATE INDEX facts_object ON facts(agent_id, object_id);
        -- which agent made an edit: a shared block is edited by several
        ALTER TABLE block_history ADD COLUMN agent_id INTEGER REFERENCES agents(id)
            ON DELETE SET NULL;
        -- idle consolidation: the newest message already reviewed
        ALTER TABLE agents ADD COLUMN reviewed_through INTEGER NOT NULL DEFAULT 0;
        """
    )


def _vectors_table(table: str, owner: str) -> str:
    """A plain table of one tier's embeddings (see _vectors_for_scale) and its rewrite count."""
    return f"""
        CREATE TABLE {table}_new (
            id INTEGER PRIMARY KEY REFERENCES {owner}(id) ON DELETE CASCADE,
            agent_id INTEGER NOT NULL,
            embedding BLOB NOT NULL CHECK (length(embedding) = {EMBEDDING_DIM * 4}),
            -- the sign of each dimension (48 bytes): the in-memory scan reads only these. A
            -- plain column, not a generated one: SQLite reads a generated column's row even
            -- through an index holding it, and loading the bits would read every vector.
            bits BLOB NOT NULL CHECK (bits = vec_quantize_binary(embedding))
        );
        INSERT INTO {table}_new(id, agent_id, embedding, bits)
            SELECT rowid, agent_id, embedding, vec_quantize_binary(embedding) FROM {table}
            WHERE rowid IN (SELECT id FROM {owner});
        DROP TABLE {table};
        ALTER TABLE {table}_new RENAME TO {table};
        -- covering: loading an agent's bits never reads the 1.5 KB vectors beside them
        CREATE INDEX {table}_bits ON {table}(agent_id, id, bits);
        CREATE TRIGGER {table}_ad AFTER DELETE ON {table} BEGIN
            INSERT INTO vector_rewrites(tbl, agent_id, count) VALUES ('{table}', old.agent_id, 1)
                ON CONFLICT (tbl, agent_id) DO UPDATE SET count = count + 1;
        END;
        CREATE TRIGGER {table}_au AFTER UPDATE ON {table} BEGIN
            INSERT INTO vector_rewrites(tbl, agent_id, count) VALUES ('{table}', old.agent_id, 1)
                ON CONFLICT (tbl, agent_id) DO UPDATE SET count = count + 1;
        END;
        """


def _vectors_for_scale(conn: apsw.Connection) -> None:
    # sqlite-vec's vec0 tables scan unvectorised float32 (48 ms a query at 100k passages with
    # the PyPI wheel) and look one row up in about 70 us. The vectors move to plain tables:
    # engine.memory.vectors scans their sign bits in memory and re-scores the best candidates
    # exactly, which point lookups by primary key make cheap. Inserts append to the in-memory
    # bits; a delete or an update counts in vector_rewrites, which tells the scan to reload.
    conn.execute(
        """
        CREATE TABLE vector_rewrites (
            tbl TEXT NOT NULL,
            agent_id INTEGER NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (tbl, agent_id)
        ) WITHOUT ROWID;
        """
        + _vectors_table("message_vectors", "messages")
        + _vectors_table("passage_vectors", "passages")
    )


def _embedding_model_per_vector(conn: apsw.Connection) -> None:
    # A new default embedder (or one chosen in Settings) makes vectors another model's query
    # cannot be compared with: each vector records its model, a search compares only those of
    # the model in use, and engine.memory.reembed brings the rest over. The covering index
    # leads with the model, so loading one model's bits still reads no vectors.
    statements = []
    for table in ("message_vectors", "passage_vectors"):
        statements.append(
            f"""
            ALTER TABLE {table}
                ADD COLUMN model TEXT NOT NULL DEFAULT '{FIRST_EMBEDDING_MODEL}';
            DROP INDEX {table}_bits;
            CREATE INDEX {table}_bits ON {table}(agent_id, model, id, bits);
            """
        )
    # a passage embedded by a model chosen in Settings has said so all along
    statements.append(
        f"""
        UPDATE passage_vectors SET model = (
            SELECT embedding_model FROM passages WHERE passages.id = passage_vectors.id
        ) WHERE id IN (
            SELECT id FROM passages WHERE embedding_model != '{FIRST_EMBEDDING_MODEL}'
        );
        """
    )
    conn.execute("".join(statements))


_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _said_on_sql(column: str) -> str:
    """SQL for the day of an ISO time in `column` as engine.memory.when.day writes it ("8 May
    2023"); NULL for a value that is no time. (SQLite's strftime has no month names.)"""
    months = " ".join(f"WHEN '{i:02d}' THEN '{name}'" for i, name in enumerate(_MONTHS, 1))
    return (
        f"(CAST(strftime('%d', {column}) AS INTEGER) || ' ' ||"
        f" CASE strftime('%m', {column}) {months} END || ' ' || strftime('%Y', {column}))"
    )


def _messages_found_by_day(conn: apsw.Connection) -> None:
    # A message is found by the day it was said as well as by its words ("what did I say in
    # May?"): its index row holds both, in columns of their own, so a word check (RecallMemory.
    # holds_word) can still ask for the words alone. Contentless, as passages_fts is: the day is
    # not a column of messages, and an external-content index must mirror its table's columns.
    # With the day beside the words, conversation_search found the evidence of 0.847 of
    # LoCoMo's questions among its best 10, against 0.829 with the words alone (bench/
    # retrieval.py --tier recall).
    said_on = _said_on_sql("new.created_at")
    conn.execute(
        f"""
        DROP TRIGGER messages_ai;
        DROP TRIGGER messages_ad;
        DROP TABLE messages_fts;
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            search_text, said_on, content='', contentless_delete=1, tokenize='porter unicode61'
        );
        INSERT INTO messages_fts(rowid, search_text, said_on)
            SELECT id, search_text, {_said_on_sql("created_at")} FROM messages;
        CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, search_text, said_on)
                VALUES (new.id, new.search_text, {said_on});
        END;
        CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            DELETE FROM messages_fts WHERE rowid = old.id;
        END;
        CREATE TRIGGER messages_au AFTER UPDATE OF search_text, created_at ON messages BEGIN
            DELETE FROM messages_fts WHERE rowid = old.id;
            INSERT INTO messages_fts(rowid, search_text, said_on)
                VALUES (new.id, new.search_text, {said_on});
        END;
        """
    )


def _forgetting_log(conn: apsw.Connection) -> None:
    # What the user had forgotten, and when: the audit of engine.memory.forget. It names the
    # tier and the row, never the text: a log that kept the words would keep what was forgotten.
    conn.execute(
        """
        CREATE TABLE forgotten (
            id INTEGER PRIMARY KEY,
            agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            tier TEXT NOT NULL CHECK (tier IN ('core', 'fact', 'passage', 'message')),
            item_id INTEGER NOT NULL,
            how TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX forgotten_agent ON forgotten(agent_id, id);
        """
    )


def _replaced_messages(conn: apsw.Connection) -> None:
    # A reply regenerated, or a message edited and sent again: the old version stays in recall,
    # marked, out of the context window and the chat (MemGPTAgent.regenerate, edit_last). And
    # the user's messages by time: the Memory view finds the message each memory answered
    # (RecallMemory.said_before) for hundreds of items, which scanned every message each.
    conn.execute(
        """
        ALTER TABLE messages ADD COLUMN replaced INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX messages_said ON messages(agent_id, role, created_at);
        """
    )


def _summary_in_view(conn: apsw.Connection) -> None:
    # With idle work (MemGPTAgent idle_work) a summary written between turns waits for the next
    # page-out to enter the system message, so that writing it costs no re-read of the prompt;
    # the summary shown until then, kept so that a reopened agent renders the same prompt (and
    # its saved prompt cache still matches). NULL: the latest summary; 0: none.
    conn.execute("ALTER TABLE agents ADD COLUMN summary_in_view INTEGER")


MIGRATIONS: list[Migration] = [
    Migration(
        1, "initial schema: agents, blocks, history, recall, archival, summaries", _initial_schema
    ),
    Migration(2, "virtual context: pressure flag, summary chain", _virtual_context),
    Migration(
        3, "knowledge graph with time; who edited a shared block; review mark", _graph_and_sharing
    ),
    Migration(
        4,
        "vectors in plain tables with sign bits, for search at scale",
        _vectors_for_scale,
    ),
    Migration(5, "the embedding model of every vector", _embedding_model_per_vector),
    Migration(6, "messages found by the day they were said", _messages_found_by_day),
    Migration(7, "a log of what the user had forgotten", _forgetting_log),
    Migration(
        8,
        "old versions of regenerated replies and edited messages; messages by time",
        _replaced_messages,
    ),
    Migration(
        9, "the summary in view while a newer one waits for the next page-out", _summary_in_view
    ),
]

LATEST_VERSION = MIGRATIONS[-1].version
