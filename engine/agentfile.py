"""Agent files: one agent as one JSON file, to move it to another Memex file or keep a copy.

Export writes everything the agent is: persona, core blocks with their edit history, every
message with its session, the summaries, archival passages (with their vectors and the name of
the embedding model that made them), and the knowledge graph. Import reads it into another
database in one transaction. It never overwrites: an agent of the same name is an error
(AgentExists) unless the import is given another name. Vectors are reused when the file's
embedding model is the one this Memex embeds with; otherwise the texts are embedded again.

Letta's Agent File (.af) is imported too, where it maps (engine.agentfile_letta reads it): the
agent, its blocks and its messages. What does not map is listed in ImportReport.notes.

The format is versioned (FORMAT_VERSION); a file from a newer Memex is refused with a message,
not half read.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import numpy as np
from apsw import Connection
from pydantic import ValidationError

from engine import __version__
from engine.agentfile_letta import LettaAgent, LettaFormatError, read_letta_agent_file
from engine.agentfile_schema import FORMAT, FORMAT_VERSION, MAX_CHARS, AgentFileV1
from engine.agents import check_name
from engine.errors import InvalidInput, MemexError
from engine.memory.archival import ArchivalMemory
from engine.memory.core import CoreMemoryError, check_label
from engine.memory.recall import MESSAGE_INDEX, embedded_text, searchable_text
from engine.memory.search import vector_blob
from engine.store.db import Store, now_iso
from engine.types import Persona

MAX_BLOCK_CHARS = MAX_CHARS
LETTA_IN_CONTEXT = 20  # an imported Letta conversation keeps its last messages in view
CHARS_PER_TOKEN = 4  # token counts of imported Letta messages are estimates until recounted
IMPORT_BATCH = 32  # messages embedded and written between two reports of an import's progress


class AgentFileError(MemexError):
    """The file cannot be read as an agent file; the message says why and what to do."""


class AgentExists(InvalidInput):
    """An agent of that name is in the database already; nothing was imported."""


class ImportStopped(MemexError):
    """The user stopped the import; nothing was imported (it is one transaction)."""


OnProgress = Callable[[int, int], None]  # (items done, items in all)


@dataclass
class _Pace:
    """How far an import is: told to `report` after each batch; once `stop` is set, the next
    batch raises ImportStopped instead, and the import's transaction is rolled back."""

    total: int
    report: OnProgress | None = None
    stop: threading.Event | None = None
    done: int = 0

    def advance(self, count: int) -> None:
        if self.stop is not None and self.stop.is_set():
            raise ImportStopped("the import was stopped: nothing was imported")
        self.done += count
        if self.report is not None:
            self.report(self.done, self.total)


@dataclass
class ImportReport:
    """What an import did: the agent's name as stored, counts, and what did not come over."""

    name: str
    messages: int = 0
    blocks: int = 0
    passages: int = 0
    facts: int = 0
    reembedded: int = 0
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# export


def export_agent(store: Store, name: str, path: str | os.PathLike[str] | None = None) -> dict:
    """The agent `name` as an agent-file document; written to `path` (UTF-8 JSON) when given,
    through a temporary file so that a failed write leaves no half file."""
    agent_id = _agent_id(store, name)
    row = store.query_one(
        "SELECT name, persona_json, model_settings_json, created_at, last_user_message_at,"
        " reviewed_through FROM agents WHERE id = ?",
        (agent_id,),
    )
    assert row is not None
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "memex_version": __version__,
        "exported_at": now_iso(),
        # the vectors of messages and passages are this model's (passages also say each)
        "message_embedding_model": store.embedder.name,
        "agent": {
            "name": row[0],
            "persona": json.loads(row[1]),
            "model_settings": json.loads(row[2]),
            "created_at": row[3],
            "last_user_message_at": row[4],
            "reviewed_through": row[5],
        },
        "blocks": _export_blocks(store, agent_id),
        "sessions": [
            {"id": r[0], "started_at": r[1]}
            for r in store.query(
                "SELECT id, started_at FROM sessions WHERE agent_id = ? ORDER BY id", (agent_id,)
            )
        ],
        "messages": _export_messages(store, agent_id),
        "summaries": [
            {
                "id": r[0],
                "text": r[1],
                "first_message_id": r[2],
                "last_message_id": r[3],
                "previous_id": r[4],
                "model": r[5],
                "created_at": r[6],
            }
            for r in store.query(
                "SELECT id, text, first_message_id, last_message_id, previous_id, model,"
                " created_at FROM summaries WHERE agent_id = ? ORDER BY id",
                (agent_id,),
            )
        ],
        "passages": _export_passages(store, agent_id),
        "facts": _export_facts(store, agent_id),
    }
    if path is not None:
        _refuse_store_files(store, Path(path))
        _write_json(Path(path), document)
    return document


def _refuse_store_files(store: Store, path: Path) -> None:
    """Writing the export over the memory file itself (or its journal or lock) would destroy
    it: refused."""
    own = store.path.resolve()
    names = {own, *(own.with_name(own.name + suffix) for suffix in ("-wal", "-shm", ".lock"))}
    if path.expanduser().resolve() in names:
        raise AgentFileError(
            f"{path} is the memory file this Memex has open (or part of it): export to another file"
        )


def _export_blocks(store: Store, agent_id: int) -> list[dict[str, Any]]:
    blocks = []
    for r in store.query(
        "SELECT b.id, ab.label, b.value, b.char_limit, b.description, b.read_only, b.created_at,"
        " b.updated_at FROM agent_blocks ab JOIN blocks b ON b.id = ab.block_id"
        " WHERE ab.agent_id = ? ORDER BY ab.position",
        (agent_id,),
    ):
        shared_with = [
            s[0]
            for s in store.query(
                "SELECT a.name FROM agent_blocks ab JOIN agents a ON a.id = ab.agent_id"
                " WHERE ab.block_id = ? AND ab.agent_id != ? ORDER BY a.name",
                (r[0], agent_id),
            )
        ]
        history = [
            {
                "before": h[0],
                "after": h[1],
                "actor": h[2],
                "agent": h[3],
                "created_at": h[4],
                "undone": bool(h[5]),
            }
            for h in store.query(
                "SELECT h.before, h.after, h.actor, a.name, h.created_at, h.undone"
                " FROM block_history h LEFT JOIN agents a ON a.id = h.agent_id"
                " WHERE h.block_id = ? ORDER BY h.id",
                (r[0],),
            )
        ]
        blocks.append(
            {
                "label": r[1],
                "value": r[2],
                "limit": r[3],
                "description": r[4],
                "read_only": bool(r[5]),
                "created_at": r[6],
                "updated_at": r[7],
                "shared_with": shared_with,
                "history": history,
            }
        )
    return blocks


def _export_messages(store: Store, agent_id: int) -> list[dict[str, Any]]:
    vectors = _vectors(store, "message_vectors", agent_id)
    return [
        {
            "id": r[0],
            "session_id": r[1],
            "role": r[2],
            "content": r[3],
            "search_text": r[4],
            "tool_call": json.loads(r[5]) if r[5] else None,
            "tool_result": json.loads(r[6]) if r[6] else None,
            "token_count": r[7],
            "created_at": r[8],
            "in_context": bool(r[9]),
            "embedding": vectors.get(r[0]),
        }
        for r in store.query(
            "SELECT id, session_id, role, content, search_text, tool_call_json, tool_result_json,"
            " token_count, created_at, in_context FROM messages WHERE agent_id = ? ORDER BY id",
            (agent_id,),
        )
    ]


def _export_passages(store: Store, agent_id: int) -> list[dict[str, Any]]:
    vectors = _vectors(store, "passage_vectors", agent_id)
    return [
        {
            "id": r[0],
            "text": r[1],
            "tags": json.loads(r[2]),
            "source": r[3],
            "embedding_model": r[4],
            "created_at": r[5],
            "embedding": vectors.get(r[0]),
        }
        for r in store.query(
            "SELECT id, text, tags_json, source, embedding_model, created_at FROM passages"
            " WHERE agent_id = ? ORDER BY id",
            (agent_id,),
        )
    ]


def _export_facts(store: Store, agent_id: int) -> list[dict[str, Any]]:
    return [
        {
            "id": r[0],
            "subject": r[1],
            "relation": r[2],
            "object": r[3],
            "exclusive": bool(r[4]),
            "valid_from": r[5],
            "valid_to": r[6],
            "ended_by": r[7],
            "source": r[8],
            "created_at": r[9],
        }
        for r in store.query(
            "SELECT f.id, s.name, f.relation, o.name, f.exclusive, f.valid_from, f.valid_to,"
            " f.ended_by, f.source, f.created_at FROM facts f"
            " JOIN entities s ON s.id = f.subject_id JOIN entities o ON o.id = f.object_id"
            " WHERE f.agent_id = ? ORDER BY f.id",
            (agent_id,),
        )
    ]


def _vectors(store: Store, table: str, agent_id: int) -> dict[int, str]:
    """rowid -> the vector as base64 of little-endian float32 (a third of the size of a JSON
    list of numbers, and exact). Only the store's embedder's: the file says that model made
    them, and a vector not yet brought over (engine.memory.reembed) is made again on import."""
    rows = store.query(
        f"SELECT rowid, embedding FROM {table} WHERE agent_id = ? AND model = ?",
        (agent_id, store.embedder.name),
    )
    return {
        int(r[0]): base64.b64encode(np.frombuffer(r[1], dtype="<f4").tobytes()).decode("ascii")
        for r in rows
    }


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path = path.expanduser()
    temporary = path.with_name(path.name + ".part")
    try:
        # readable by the user only: the file holds their memory
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "w", encoding="utf-8") as f:
            os.chmod(temporary, 0o600)  # a .part an earlier failed export left keeps its mode
            json.dump(document, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise AgentFileError(f"could not write {path}: {exc.strerror or exc}") from exc


# ---------------------------------------------------------------------------------------------
# import


def read_agent_file(path: str | os.PathLike[str]) -> dict[str, Any] | list[LettaAgent]:
    """The parsed file: a Memex document, or the agents of a Letta agent file."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AgentFileError(f"there is no file {path}") from None
    except UnicodeDecodeError:
        raise AgentFileError(
            f"{path.name} is not an agent file: it is not text (agent files are JSON, "
            "exported by Memex or Letta). Choose a .json or .af file."
        ) from None
    except OSError as exc:
        raise AgentFileError(f"could not read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise AgentFileError(f"{path} is not an agent file: it is not JSON ({exc})") from None
    return _parsed(data, str(path))


def _parsed(data: Any, where: str) -> dict[str, Any] | list[LettaAgent]:
    """A Memex document as it is, or the agents of a Letta document."""
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return data
    try:
        return read_letta_agent_file(data)
    except LettaFormatError as exc:
        raise AgentFileError(
            f"{where} is neither a Memex agent file nor a Letta agent file (.af): {exc}"
        ) from None


def import_agent(
    store: Store,
    source: str | os.PathLike[str] | dict[str, Any],
    name: str | None = None,
    on_progress: OnProgress | None = None,
    stop: threading.Event | None = None,
) -> list[ImportReport]:
    """Import the agent(s) of an agent file (a path, or a parsed document) into `store`,
    each under its own name or `name` (for a file of one agent). AgentExists when that name is
    taken: nothing is imported then. A Letta file may hold several agents: all or none are
    imported.

    A big file takes a while (its texts are embedded): `on_progress(done, total)` hears how
    many of its messages, passages and facts are in, a batch at a time, and `stop`, once set,
    ends the import with ImportStopped, nothing imported."""
    data = _parsed(source, "the document") if isinstance(source, dict) else read_agent_file(source)
    _check_unicode(data)
    if isinstance(data, dict):
        return [_import_memex(store, data, name, on_progress, stop)]
    agents = data
    if name is not None and len(agents) != 1:
        raise InvalidInput(
            f"the file holds {len(agents)} agents: import it without a name, one per agent"
        )
    if len(agents) == 1:
        names = [name if name is not None else agents[0].name]
    else:  # several: a taken name (or one used twice in the file) gets a number, and a note
        names = _numbered_names(store, [a.name for a in agents])
    pace = _Pace(sum(len(a.messages) for a in agents), on_progress, stop)
    try:
        with store.atomic():
            return [
                _import_letta(store, agent, stored, stored != agent.name, pace)
                for agent, stored in zip(agents, names, strict=True)
            ]
    except (apsw.ConstraintError, OverflowError, ValueError) as exc:
        raise AgentFileError(
            f"the Letta agent file holds what Memex cannot store ({type(exc).__name__}: {exc}); "
            "nothing was imported"
        ) from None


def _check_unicode(data: object) -> None:
    """JSON can spell lone surrogates (\\ud800), which are not text and cannot be stored."""
    try:
        json.dumps(data, ensure_ascii=False, default=_plain).encode("utf-8")
    except UnicodeEncodeError:
        raise AgentFileError(
            "the agent file holds text that is not valid Unicode; nothing was imported"
        ) from None


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _numbered_names(store: Store, wanted: list[str]) -> list[str]:
    taken = {r[0] for r in store.query("SELECT name FROM agents")}
    names = []
    for name in wanted:
        name = check_name(name)
        candidate, number = name, 2
        while candidate in taken:
            candidate, number = f"{name} ({number})", number + 1
        taken.add(candidate)
        names.append(candidate)
    return names


def _import_memex(
    store: Store,
    data: dict[str, Any],
    name: str | None,
    on_progress: OnProgress | None = None,
    stop: threading.Event | None = None,
) -> ImportReport:
    version = data.get("version")
    if type(version) is not int or version < 1:
        raise AgentFileError("the agent file has no valid version number; it is damaged")
    if version > FORMAT_VERSION:
        raise AgentFileError(
            f"the agent file is of version {version}, made by a newer Memex "
            f"({data.get('memex_version', '?')}); this Memex reads up to version "
            f"{FORMAT_VERSION}: update Memex to import it"
        )
    try:
        doc = AgentFileV1.model_validate(data).model_dump()
    except ValidationError as exc:
        raise AgentFileError(f"the agent file is damaged: {_first_problem(exc)}") from None
    try:
        items = sum(len(doc.get(part) or []) for part in ("messages", "passages", "facts"))
        return _MemexImport(store, doc, name, _Pace(items, on_progress, stop)).run()
    except (KeyError, ValueError, apsw.ConstraintError) as exc:
        raise AgentFileError(
            f"the agent file is damaged or incomplete ({type(exc).__name__}: {exc}); "
            "nothing was imported"
        ) from None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{where}: {error['msg']}{more}; nothing was imported"


class _MemexImport:
    """One Memex document into the store, ids renumbered (they are the file's)."""

    def __init__(
        self, store: Store, doc: dict[str, Any], name: str | None, pace: _Pace | None = None
    ) -> None:
        self.store = store
        self.doc = doc
        self.pace = pace or _Pace(0)
        agent = doc["agent"]
        self.name = _free_name(store, name if name is not None else agent["name"])
        self.report = ImportReport(self.name)
        self.message_ids: dict[int, int] = {}
        self.session_ids: dict[int, int] = {}

    def run(self) -> ImportReport:
        doc = self.doc
        agent = doc["agent"]
        persona = Persona(**agent["persona"])
        with self.store.atomic() as conn:
            conn.execute(
                "INSERT INTO agents(name, persona_json, model_settings_json, created_at,"
                " last_user_message_at) VALUES (?, ?, ?, ?, ?)",
                (
                    self.name,
                    json.dumps(persona.__dict__),
                    json.dumps(agent.get("model_settings") or {}),
                    agent["created_at"],
                    agent.get("last_user_message_at"),
                ),
            )
            self.agent_id = conn.last_insert_rowid()
            self._blocks(conn, agent["name"])
            self._sessions(conn)
            self._messages(conn)
            self._summaries(conn)
            self._passages()
            self._facts(conn)
            reviewed = self._message_id(agent.get("reviewed_through") or 0, default=0)
            conn.execute(
                "UPDATE agents SET reviewed_through = ? WHERE id = ?", (reviewed, self.agent_id)
            )
        return self.report

    def _blocks(self, conn: Connection, old_name: str) -> None:
        for position, b in enumerate(self.doc["blocks"]):
            conn.execute(
                "INSERT INTO blocks(label, value, char_limit, description, read_only, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    b["label"],
                    b["value"],
                    max(int(b["limit"]), len(b["value"])),
                    b.get("description", ""),
                    int(bool(b.get("read_only"))),
                    b.get("created_at") or now_iso(),
                    b.get("updated_at") or now_iso(),
                ),
            )
            block_id = conn.last_insert_rowid()
            conn.execute(
                "INSERT INTO agent_blocks(agent_id, block_id, label, position) VALUES (?, ?, ?, ?)",
                (self.agent_id, block_id, b["label"], position),
            )
            for h in b.get("history", []):
                by_this = h.get("agent") in (None, old_name)
                actor = h["actor"] if by_this else f"{h['actor']} (by {h['agent']})"
                conn.execute(
                    "INSERT INTO block_history(block_id, before, after, actor, created_at,"
                    " undone, agent_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        block_id,
                        h["before"],
                        h["after"],
                        actor,
                        h["created_at"],
                        int(bool(h.get("undone"))),
                        self.agent_id if by_this else None,
                    ),
                )
            if b.get("shared_with"):
                self.report.notes.append(
                    f"block {b['label']!r} was shared with {', '.join(b['shared_with'])}; "
                    "it is this agent's own block here"
                )
            self.report.blocks += 1

    def _sessions(self, conn: Connection) -> None:
        for s in self.doc.get("sessions", []):
            conn.execute(
                "INSERT INTO sessions(agent_id, started_at) VALUES (?, ?)",
                (self.agent_id, s["started_at"]),
            )
            self.session_ids[int(s["id"])] = conn.last_insert_rowid()

    def _session(self, conn: Connection, old: Any) -> int:
        if old not in self.session_ids:  # a message of a session the file does not list
            conn.execute(
                "INSERT INTO sessions(agent_id, started_at) VALUES (?, ?)",
                (self.agent_id, now_iso()),
            )
            self.session_ids[old] = conn.last_insert_rowid()
        return self.session_ids[old]

    def _messages(self, conn: Connection) -> None:
        messages = self.doc.get("messages", [])
        vectors = _usable_vectors(self.store, messages, _message_model(self.doc))
        rows = list(zip(messages, vectors, strict=True))
        for batch in _batches(rows):
            self._message_batch(conn, batch)
            self.pace.advance(len(batch))
        self.report.messages = len(messages)

    def _message_batch(self, conn: Connection, rows: list[tuple[dict[str, Any], Any]]) -> None:
        """Messages written with their vectors: the file's, or made now where it has none."""
        missing = [m for m, v in rows if v is None and m["role"] in ("user", "assistant")]
        fresh = iter(
            self.store.embedder.embed(
                [embedded_text(_search_text(m), m["created_at"]) for m in missing]
            )
            if missing
            else []
        )
        self.report.reembedded += len(missing)
        for m, vector in rows:
            conn.execute(
                "INSERT INTO messages(agent_id, session_id, role, content, search_text,"
                " tool_call_json, tool_result_json, token_count, created_at, in_context)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.agent_id,
                    self._session(conn, m.get("session_id")),
                    m["role"],
                    m["content"],
                    _search_text(m),
                    json.dumps(m["tool_call"]) if m.get("tool_call") is not None else None,
                    json.dumps(m["tool_result"]) if m.get("tool_result") is not None else None,
                    int(m["token_count"]),
                    m["created_at"],
                    int(bool(m.get("in_context"))),
                ),
            )
            new_id = conn.last_insert_rowid()
            self.message_ids[int(m["id"])] = new_id
            if m["role"] in ("user", "assistant"):
                blob = vector if vector is not None else vector_blob(next(fresh))
                conn.execute(
                    MESSAGE_INDEX.vectors.insert_sql,
                    (new_id, self.agent_id, blob, self.store.embedder.name),
                )

    def _message_id(self, old: Any, default: int | None = None) -> int:
        if old in self.message_ids:
            return self.message_ids[old]
        if default is not None:
            return default
        raise ValueError(f"message {old} is named but not in the file")

    def _summaries(self, conn: Connection) -> None:
        summary_ids: dict[int, int] = {}
        for s in self.doc.get("summaries", []):
            conn.execute(
                "INSERT INTO summaries(agent_id, text, first_message_id, last_message_id,"
                " created_at, previous_id, model) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    self.agent_id,
                    s["text"],
                    self._message_id(s["first_message_id"]),
                    self._message_id(s["last_message_id"]),
                    s["created_at"],
                    summary_ids.get(s.get("previous_id")),
                    s.get("model", ""),
                ),
            )
            summary_ids[int(s["id"])] = conn.last_insert_rowid()

    def _passages(self) -> None:
        passages = self.doc.get("passages", [])
        vectors = _usable_vectors(self.store, passages, _message_model(self.doc))
        archival = ArchivalMemory(self.store, self.agent_id)
        for batch in _batches(list(zip(passages, vectors, strict=True))):
            for p, vector in batch:
                source, tags = self._renumbered(p.get("source", ""), p.get("tags", []))
                passage_id = archival.insert_many(
                    [p["text"]],
                    tags=tags,
                    source=source,
                    vectors=None if vector is None else [vector],
                )[0]
                self.store.conn.execute(
                    "UPDATE passages SET created_at = ? WHERE id = ?",
                    (p["created_at"], passage_id),
                )
                self.report.reembedded += vector is None
            self.pace.advance(len(batch))
        self.report.passages = len(passages)

    def _renumbered(self, source: str, tags: list[str]) -> tuple[str, list[str]]:
        """A passage holding part of a message names it by id: the id it has here."""
        if source.startswith("message:"):
            old = int(source.split(":", 1)[1])
            new = self._message_id(old, default=old)
            source = f"message:{new}"
            tags = [f"message-{new}" if t == f"message-{old}" else t for t in tags]
        return source, list(tags)

    def _facts(self, conn: Connection) -> None:
        fact_ids: dict[int, int] = {}
        entity_ids: dict[str, int] = {}
        facts = self.doc.get("facts", [])
        for f in facts:
            subject = _entity(conn, self.agent_id, f["subject"], entity_ids)
            obj = _entity(conn, self.agent_id, f["object"], entity_ids)
            conn.execute(
                "INSERT INTO facts(agent_id, subject_id, relation, object_id, exclusive,"
                " valid_from, valid_to, source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.agent_id,
                    subject,
                    f["relation"],
                    obj,
                    int(bool(f.get("exclusive", True))),
                    f["valid_from"],
                    f.get("valid_to"),
                    f.get("source", ""),
                    f.get("created_at") or now_iso(),
                ),
            )
            fact_ids[int(f["id"])] = conn.last_insert_rowid()
        for f in facts:
            if f.get("ended_by") in fact_ids:
                conn.execute(
                    "UPDATE facts SET ended_by = ? WHERE id = ?",
                    (fact_ids[f["ended_by"]], fact_ids[int(f["id"])]),
                )
        self.pace.advance(len(facts))
        self.report.facts = len(facts)


def _entity(conn: Connection, agent_id: int, name: str, known: dict[str, int]) -> int:
    from engine.memory.graph import entity_key

    key = entity_key(name)
    if key not in known:
        conn.execute(
            "INSERT INTO entities(agent_id, name, key, created_at) VALUES (?, ?, ?, ?)",
            (agent_id, " ".join(name.split()), key, now_iso()),
        )
        known[key] = conn.last_insert_rowid()
    return known[key]


def _usable_vectors(
    store: Store, items: list[dict[str, Any]], made_by: str | None
) -> list[bytes | None]:
    """Each item's vector as the file has it, when it was made by the embedding model this
    store embeds with (an item's own "embedding_model" wins over `made_by`) and is of its
    width; None where the text must be embedded again."""
    out: list[bytes | None] = []
    for item in items:
        encoded = item.get("embedding")
        vector = None
        if encoded and item.get("embedding_model", made_by) == store.embedder.name:
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (ValueError, TypeError):
                raw = b""  # a damaged vector is made again from its text
            if len(raw) == 4 * store.embedder.dim:
                vector = raw
        out.append(vector)
    return out


def _message_model(doc: dict[str, Any]) -> str | None:
    """Message vectors are made by the embedder the passages name (one per file)."""
    models = {p.get("embedding_model") for p in doc.get("passages", [])}
    return doc.get("message_embedding_model") or (models.pop() if len(models) == 1 else None)


def _search_text(message: dict[str, Any]) -> str:
    return message.get("search_text") or searchable_text(
        message["content"], message.get("tool_call")
    )


# -- Letta ------------------------------------------------------------------------------------


def _batches(items: list[Any]) -> list[list[Any]]:
    """`items` in runs of IMPORT_BATCH: an import reports, and may stop, between two."""
    return [items[i : i + IMPORT_BATCH] for i in range(0, len(items), IMPORT_BATCH)]


def _import_letta(
    store: Store, agent: LettaAgent, name: str, renamed: bool, pace: _Pace
) -> ImportReport:
    from engine.agent import SYSTEM_BLOCK
    from engine.memory.core import DEFAULT_BLOCK_LIMIT

    stored_name = _free_name(store, name)
    report = ImportReport(stored_name, notes=list(agent.unmapped))
    if renamed:
        report.notes.insert(0, f"{agent.name!r} is imported as {stored_name!r}: the name is taken")
    persona_block = next((b for b in agent.blocks if b.label == "persona"), None)
    persona = Persona(
        name=stored_name, description=persona_block.value if persona_block else agent.name
    )
    created = _utc(agent.created_at)
    with store.atomic() as conn:
        conn.execute(
            "INSERT INTO agents(name, persona_json, model_settings_json, created_at)"
            " VALUES (?, ?, ?, ?)",
            (stored_name, json.dumps(persona.__dict__), "{}", created),
        )
        agent_id = conn.last_insert_rowid()
        blocks = _letta_blocks(agent, report)
        labels = {b.label for b in blocks}
        position = 0
        for b in blocks:
            _insert_block(
                conn,
                agent_id,
                position,
                b.label,
                b.value,
                min(max(b.limit or DEFAULT_BLOCK_LIMIT, 1), MAX_BLOCK_CHARS),
                b.description,
                b.read_only,
                created,
            )
            position += 1
        if "system" not in labels:
            _insert_block(
                conn,
                agent_id,
                position,
                "system",
                SYSTEM_BLOCK,
                DEFAULT_BLOCK_LIMIT,
                "Standing rules.",
                True,
                created,
            )
        report.blocks = len(blocks)
        if agent.system.strip():
            report.notes.append(
                "Letta's system prompt is not imported: Memex writes its own instructions "
                "(its persona and blocks are)"
            )
        _letta_messages(store, conn, agent_id, agent, report, pace)
    return report


def _letta_blocks(agent: LettaAgent, report: ImportReport) -> list[Any]:
    """The blocks that can be core sections: one per label, the label a word."""
    blocks, seen = [], set()
    for block in agent.blocks:
        try:
            check_label(block.label)
        except CoreMemoryError:
            report.notes.append(f"block {block.label!r}: not a section name Memex can use")
            continue
        if block.label in seen:
            report.notes.append(f"block {block.label!r}: a second block of that label")
            continue
        if len(block.value) > MAX_BLOCK_CHARS:
            report.notes.append(f"block {block.label!r}: over {MAX_BLOCK_CHARS} characters")
            continue
        seen.add(block.label)
        blocks.append(block)
    return blocks


def _utc(moment: dt.datetime | None) -> str:
    """A time as the store keeps it (UTC); a Letta time without a zone is UTC."""
    moment = moment or dt.datetime.now(dt.UTC)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _insert_block(
    conn: Connection,
    agent_id: int,
    position: int,
    label: str,
    value: str,
    limit: int,
    description: str,
    read_only: bool,
    created: str,
) -> None:
    conn.execute(
        "INSERT INTO blocks(label, value, char_limit, description, read_only, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (label, value, max(limit, len(value), 1), description, int(read_only), created, created),
    )
    conn.execute(
        "INSERT INTO agent_blocks(agent_id, block_id, label, position) VALUES (?, ?, ?, ?)",
        (agent_id, conn.last_insert_rowid(), label, position),
    )


def _letta_messages(
    store: Store,
    conn: Connection,
    agent_id: int,
    agent: LettaAgent,
    report: ImportReport,
    pace: _Pace,
) -> None:
    """Letta's messages become recall memory: the last few stay in view, the rest are
    searchable (the window is sized by the model the agent runs with here, not Letta's)."""
    messages = [m for m in agent.messages if m.text.strip() or m.tool_call]
    pace.advance(len(agent.messages) - len(messages))  # the empty ones, not imported
    if not messages:
        return
    conn.execute(
        "INSERT INTO sessions(agent_id, started_at) VALUES (?, ?)",
        (agent_id, _utc(messages[0].created_at)),
    )
    session_id = conn.last_insert_rowid()
    rows = [_letta_row(m) for m in messages]
    first_in_view = max(0, len(messages) - LETTA_IN_CONTEXT)
    embedded = 0
    for batch in _batches(list(enumerate(rows))):
        readable = [i for i, row in batch if row[0] in ("user", "assistant")]
        texts = [embedded_text(rows[i][2], rows[i][4]) for i in readable]
        vectors = store.embedder.embed(texts) if readable else []
        vector_of = dict(zip(readable, vectors, strict=True))
        for i, row in batch:
            _insert_letta_message(conn, agent_id, session_id, row, i >= first_in_view)
            if i in vector_of:
                conn.execute(
                    MESSAGE_INDEX.vectors.insert_sql,
                    (
                        conn.last_insert_rowid(),
                        agent_id,
                        vector_blob(vector_of[i]),
                        store.embedder.name,
                    ),
                )
        embedded += len(readable)
        pace.advance(len(batch))
    report.messages = len(messages)
    report.reembedded = embedded


def _insert_letta_message(
    conn: Connection,
    agent_id: int,
    session_id: int,
    row: tuple[str, str, str, dict[str, Any] | None, str],
    in_view: bool,
) -> None:
    role, content, search, tool_call, created = row
    conn.execute(
        "INSERT INTO messages(agent_id, session_id, role, content, search_text,"
        " tool_call_json, tool_result_json, token_count, created_at, in_context)"
        " VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
        (
            agent_id,
            session_id,
            role,
            content,
            search,
            json.dumps(tool_call) if tool_call else None,
            4 + -(-len(content) // CHARS_PER_TOKEN),
            created,
            int(in_view),
        ),
    )


def _letta_row(m: Any) -> tuple[str, str, str, dict[str, Any] | None, str]:
    """(role, content, search text, tool call, created_at) of one Letta message, stored the
    way Memex stores its own: an assistant's reply is a send_message call."""
    created = _utc(m.created_at)
    if m.role == "assistant":
        call = m.tool_call or {"tool": "send_message", "arguments": {"message": m.text}}
        call = {
            "tool": call["tool"],
            "arguments": call.get("arguments", {}),
            "request_heartbeat": bool(call.get("request_heartbeat", False)),
        }
        content = json.dumps(call, ensure_ascii=False)
        return "assistant", content, searchable_text(content, call), call, created
    return m.role, m.text, m.text, None, created


# -- shared -----------------------------------------------------------------------------------


def _agent_id(store: Store, name: str) -> int:
    row = store.query_one("SELECT id FROM agents WHERE name = ?", (name,))
    if row is None:
        raise InvalidInput(f"there is no agent called {name!r}")
    return int(row[0])


def _free_name(store: Store, name: str) -> str:
    name = check_name(name)
    if store.query_one("SELECT 1 FROM agents WHERE name = ?", (name,)) is not None:
        raise AgentExists(
            f"there is already an agent called {name!r}; import under another name "
            "(nothing was imported)"
        )
    return name
