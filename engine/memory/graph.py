"""The knowledge graph of archival memory: entities and facts with the time each fact held.

A fact is (subject, relation, object) with `valid_from` and `valid_to`. Most relations hold one
object at a time (works_at, lives_in): a new fact with another object closes the old one at the
new one's `valid_from` instead of deleting it, so "where does Alice work" and "where did Alice
work in March" both have an answer. Relations that hold several objects at once (likes, knows)
are inserted with exclusive=False and close nothing.

Times are UTC, stored as fixed-width ISO text (engine.store.db.now_iso) so that text order is
time order. A fact holds at t when valid_from <= t < valid_to (valid_to NULL: still holds).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

from apsw import Connection

from engine.memory.search import fts_query
from engine.store.db import Store, now_iso

MAX_NAME_CHARS = 200
MIN_YEAR, MAX_YEAR = 1, 9998  # a period's end must still be a date
MAX_ENTITIES_PER_SEARCH = 5
_SPACES = re.compile(r"\s+")
_RELATION_SEPARATORS = re.compile(r"[\s\-]+")
# A fact closed at the instant it began never held (another fact replaced it at once).
_NOT_RETRACTED = " AND (f.valid_to IS NULL OR f.valid_to > f.valid_from)"


class GraphError(ValueError):
    """A fact or a time that cannot be used; the message says why."""


@dataclass(frozen=True)
class Fact:
    id: int
    subject: str
    relation: str
    object: str
    valid_from: dt.datetime
    valid_to: dt.datetime | None
    exclusive: bool
    source: str

    def holds_at(self, moment: dt.datetime) -> bool:
        return self.valid_from <= moment and (self.valid_to is None or self.valid_to > moment)

    @property
    def current(self) -> bool:
        """It holds now (a fact dated in the future does not yet)."""
        return self.holds_at(dt.datetime.now(dt.UTC))

    @property
    def upcoming(self) -> bool:
        return self.valid_from > dt.datetime.now(dt.UTC)

    def render(self) -> str:
        """The fact as the model and the user read it, with when it held."""
        when = f"since {_day(self.valid_from)}"
        if self.upcoming:
            when = f"from {_day(self.valid_from)}"
        if self.valid_to is not None:
            when = f"from {_day(self.valid_from)} until {_day(self.valid_to)}"
        return f"{self.subject} {self.relation} {self.object} ({when})"

    def order(self) -> tuple[int, float, int]:
        """Sort key: what holds now, then what is to come, then what ended; newest first."""
        rank = 0 if self.current else 1 if self.upcoming else 2
        return (rank, -self.valid_from.timestamp(), -self.id)


@dataclass(frozen=True)
class Insertion:
    """What graph_insert did: the fact as stored, whether it was known already, and the facts
    it closed."""

    fact: Fact
    duplicate: bool
    closed: list[Fact]


def clean_entity_name(name: str) -> str:
    """A name as stored: one Unicode spelling (NFC: "Zoë" typed either way is one name),
    single spaces, not empty, not too long."""
    clean = _SPACES.sub(" ", unicodedata.normalize("NFC", name)).strip()
    if not clean:
        raise GraphError("an entity name is empty: name the subject and the object")
    if len(clean) > MAX_NAME_CHARS:
        raise GraphError(f"an entity name has at most {MAX_NAME_CHARS} characters")
    return clean


def entity_key(name: str) -> str:
    """What makes two names one entity: case, spacing and Unicode spelling aside."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", name)).strip().casefold()


def clean_relation(relation: str) -> str:
    """works at, Works-At and works_at are one relation: works_at."""
    text = _RELATION_SEPARATORS.sub("_", relation.strip().casefold()).strip("_")
    if not text:
        raise GraphError("relation is empty: name it, e.g. works_at")
    return text


def parse_time(value: str | dt.datetime | dt.date, name: str = "time") -> Period:
    """A time as the model writes it: 2026, 2026-03, 2026-03-14 or an ISO date-time (UTC when
    it names no zone). Returns the period it names: a year, a month, a day, or an instant."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return _in_range(Period(moment, moment), name, value)
    if isinstance(value, dt.date):
        start = dt.datetime.combine(value, dt.time(), dt.UTC)
        return _in_range(Period(start, start + dt.timedelta(days=1)), name, value)
    text = value.strip()
    if re.match(r"\d{4}", text) and not MIN_YEAR <= int(text[:4]) <= MAX_YEAR:
        raise GraphError(f"{name} {value!r} is out of range: years {MIN_YEAR} to {MAX_YEAR}")
    try:
        period = _parse_period(text, name)
    except GraphError:
        raise
    except (ValueError, OverflowError):
        raise GraphError(
            f"{name} {value!r} is not a time like 2026, 2026-03, 2026-03-14 or 2026-03-14T09:30"
        ) from None
    if not MIN_YEAR <= period.start.year <= MAX_YEAR:
        raise GraphError(f"{name} {value!r} is out of range: years {MIN_YEAR} to {MAX_YEAR}")
    return period


def _parse_period(text: str, name: str) -> Period:
    """ValueError or OverflowError for what is not a time."""
    if re.fullmatch(r"\d{4}", text):
        start = dt.datetime(int(text), 1, 1, tzinfo=dt.UTC)
        return Period(start, start.replace(year=start.year + 1))
    if re.fullmatch(r"\d{4}-\d{1,2}", text):
        year, month = (int(p) for p in text.split("-"))
        start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
        end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)
        return Period(start, end)
    if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", text):
        return parse_time(dt.date(*(int(p) for p in text.split("-"))), name)
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    moment = moment.astimezone(dt.UTC)  # OverflowError at the ends of the calendar
    return Period(moment, moment)


def _in_range(period: Period, name: str, value: object) -> Period:
    if not MIN_YEAR <= period.start.year <= MAX_YEAR:
        raise GraphError(f"{name} {value!r} is out of range: years {MIN_YEAR} to {MAX_YEAR}")
    return period


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC; an instant when start == end."""

    start: dt.datetime
    end: dt.datetime


class KnowledgeGraph:
    """The entities and facts of one agent in the store."""

    def __init__(self, store: Store, agent_id: int) -> None:
        self.store = store
        self.agent_id = agent_id

    # -- writing -----------------------------------------------------------------------------
    def insert(
        self,
        subject: str,
        relation: str,
        obj: str,
        valid_from: str | dt.datetime | dt.date | None = None,
        exclusive: bool = True,
        source: str = "",
    ) -> Insertion:
        """Add a fact at its place in time. A fact already holding then is not added again. With
        `exclusive`, the fact of another object holding at `valid_from` is closed there, and the
        new fact holds until the next later fact of the same subject and relation, if any."""
        relation = clean_relation(relation)
        start = _stamp(self._start(valid_from))
        with self.store.atomic() as conn:
            subject_id = self._entity(conn, subject)
            object_id = self._entity(conn, obj)
            # a relation keeps the kind its first fact gave it: a model that forgets to say
            # exclusive=false for "likes" must not end the other likes
            recorded = self._recorded_exclusive(subject_id, relation)
            exclusive = exclusive if recorded is None else recorded
            same = self._holding(subject_id, relation, start, object_id=object_id)
            if same is not None:
                return Insertion(self.get(same), duplicate=True, closed=[])
            covering = None
            if exclusive:
                covering = self._holding(subject_id, relation, start, exclusive_only=True)
                later = self._next(subject_id, relation, start)
            else:
                later = self._next(subject_id, relation, start, object_id=object_id)
            duplicate = later is not None and later[2] == object_id
            if later is not None and duplicate:
                # known from a later time: it held from this earlier one already
                fact_id = later[0]
                conn.execute("UPDATE facts SET valid_from = ? WHERE id = ?", (start, fact_id))
            else:
                valid_to = later[1] if later is not None and exclusive else None
                fact_id = self._add(
                    conn, subject_id, relation, object_id, exclusive, start, valid_to, source
                )
            if covering is not None:
                conn.execute(
                    "UPDATE facts SET valid_to = ?, ended_by = ? WHERE id = ?",
                    (start, fact_id, covering),
                )
        closed = [self.get(covering)] if covering is not None else []
        return Insertion(self.get(fact_id), duplicate, closed)

    def end(self, fact_id: int, valid_to: str | dt.datetime | dt.date | None = None) -> Fact:
        """Close a fact that stopped holding with nothing in its place (the user's edit)."""
        fact = self.get(fact_id)
        end = _stamp(self._start(valid_to))
        if end < _stamp(fact.valid_from):
            raise GraphError(f"a fact cannot end ({end}) before it began ({fact.valid_from})")
        with self.store.atomic() as conn:
            conn.execute("UPDATE facts SET valid_to = ? WHERE id = ?", (end, fact_id))
        return self.get(fact_id)

    def delete(self, fact_id: int) -> None:
        """Remove a fact that was never true (the user's correction); KeyError if not ours."""
        with self.store.atomic() as conn:
            conn.execute(
                "DELETE FROM facts WHERE id = ? AND agent_id = ?", (fact_id, self.agent_id)
            )
            if conn.changes() == 0:
                raise KeyError(fact_id)

    # -- reading -----------------------------------------------------------------------------
    def get(self, fact_id: int) -> Fact:
        rows = self._facts("f.id = ?", (fact_id,))
        if not rows:
            raise KeyError(fact_id)
        return rows[0]

    def all(self) -> list[Fact]:
        return self._facts("1", ())

    def count(self) -> int:
        row = self.store.query_one(
            "SELECT count(*) FROM facts WHERE agent_id = ?", (self.agent_id,)
        )
        return row[0] if row else 0

    def entities_named(self, text: str) -> list[int]:
        """Entities `text` names: the exact name first, then names sharing its words."""
        key = entity_key(text)
        exact = self.store.query_one(
            "SELECT id FROM entities WHERE agent_id = ? AND key = ?", (self.agent_id, key)
        )
        ids = [exact[0]] if exact else []
        match = fts_query(text)
        if match is not None:
            rows = self.store.query(
                "SELECT e.id FROM entities_fts f JOIN entities e ON e.id = f.rowid"
                " WHERE entities_fts MATCH ? AND e.agent_id = ? ORDER BY bm25(entities_fts)"
                " LIMIT ?",
                (match, self.agent_id, MAX_ENTITIES_PER_SEARCH),
            )
            ids += [r[0] for r in rows if r[0] not in ids]
        return ids[:MAX_ENTITIES_PER_SEARCH]

    def search(
        self,
        entity: str,
        relation: str | None = None,
        at: str | dt.datetime | dt.date | None = None,
    ) -> list[Fact]:
        """Facts about `entity` (as subject or object). With `at` (a year, month, day or
        instant), those that held at any time in it; without, those that hold now, then those
        dated in the future, then the ones that ended, newest first."""
        held = _period_params(at) if at is not None else None  # a bad time is an error first
        entity_ids = self.entities_named(entity)
        if not entity_ids:
            return []
        marks = ",".join("?" * len(entity_ids))
        where = f"(f.subject_id IN ({marks}) OR f.object_id IN ({marks}))"
        params: list[object] = [*entity_ids, *entity_ids]
        if relation:
            where += " AND f.relation = ?"
            params.append(clean_relation(relation))
        if held is not None:
            where += " AND " + _HELD_IN
            params += held
        facts = self._facts(where + _NOT_RETRACTED, tuple(params))
        return sorted(facts, key=Fact.order)

    def held_on(self, at: str | dt.datetime | dt.date) -> list[Fact]:
        """Every fact that held at any time in `at` (a year, month, day or instant)."""
        return self._facts(_HELD_IN + _NOT_RETRACTED, tuple(_period_params(at)))

    def about(self, query: str, limit: int = 5) -> list[Fact]:
        """Facts that hold now about the entities `query` names (for archival search and
        page-in), then, where there is room, about the entities those facts link them to: one
        hop, so "Who is my tortoise's vet, and which practice?" finds "Pickle treated_by Dr.
        Korhonen" and then "Dr. Korhonen works_at Brackenridge"."""
        named = self.entities_named(query)
        facts = self._holding_now(named)
        linked = [e for e in self._linked(facts) if e not in named]
        facts += [fact for fact in self._holding_now(linked) if fact not in facts]
        return facts[:limit]

    def _holding_now(self, entity_ids: list[int]) -> list[Fact]:
        facts: list[Fact] = []
        now = _period_params(dt.datetime.now(dt.UTC))
        for entity_id in entity_ids:
            for fact in self._facts(
                "(f.subject_id = ? OR f.object_id = ?) AND " + _HELD_IN + _NOT_RETRACTED,
                (entity_id, entity_id, *now),
            ):
                if fact not in facts:
                    facts.append(fact)
        return facts

    def _linked(self, facts: list[Fact]) -> list[int]:
        """The entities at either end of `facts`, in order."""
        if not facts:
            return []
        marks = ",".join("?" * len(facts))
        rows = self.store.query(
            f"SELECT id, subject_id, object_id FROM facts WHERE id IN ({marks})",
            tuple(f.id for f in facts),
        )
        ends = {int(r[0]): (int(r[1]), int(r[2])) for r in rows}
        ids: list[int] = []
        for fact in facts:
            ids += [i for i in ends.get(fact.id, ()) if i not in ids]
        return ids

    # -- internals ---------------------------------------------------------------------------
    def _start(self, value: str | dt.datetime | dt.date | None) -> dt.datetime:
        if value is None or (isinstance(value, str) and not value.strip()):
            return dt.datetime.fromisoformat(now_iso())
        return parse_time(value, "valid_from").start

    def _entity(self, conn: Connection, name: str) -> int:
        clean = clean_entity_name(name)
        key = entity_key(clean)
        row = self.store.query_one(
            "SELECT id FROM entities WHERE agent_id = ? AND key = ?", (self.agent_id, key)
        )
        if row is not None:
            return int(row[0])
        conn.execute(
            "INSERT INTO entities(agent_id, name, key, created_at) VALUES (?, ?, ?, ?)",
            (self.agent_id, clean, key, now_iso()),
        )
        return int(conn.last_insert_rowid())

    def _holding(
        self,
        subject_id: int,
        relation: str,
        at: str,
        object_id: int | None = None,
        exclusive_only: bool = False,
    ) -> int | None:
        """The fact of this subject and relation holding at `at` (of `object_id`, if given)."""
        sql = (
            "SELECT id FROM facts WHERE agent_id = ? AND subject_id = ? AND relation = ?"
            " AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)"
        )
        params: list[object] = [self.agent_id, subject_id, relation, at, at]
        if object_id is not None:
            sql += " AND object_id = ?"
            params.append(object_id)
        if exclusive_only:
            sql += " AND exclusive = 1"
        row = self.store.query_one(sql + " ORDER BY valid_from DESC, id DESC LIMIT 1", params)
        return int(row[0]) if row else None

    def _next(
        self, subject_id: int, relation: str, after: str, object_id: int | None = None
    ) -> tuple[int, str, int] | None:
        """The first fact of this subject and relation that begins after `after`: an exclusive
        one, or (given `object_id`) one of that object. (id, valid_from, object id)."""
        which = "exclusive = 1" if object_id is None else "object_id = ?"
        params: list[object] = [self.agent_id, subject_id, relation]
        params += [] if object_id is None else [object_id]
        row = self.store.query_one(
            "SELECT id, valid_from, object_id FROM facts WHERE agent_id = ? AND subject_id = ?"
            f" AND relation = ? AND {which} AND valid_from > ? ORDER BY valid_from, id LIMIT 1",
            (*params, after),
        )
        return (int(row[0]), str(row[1]), int(row[2])) if row else None

    def _recorded_exclusive(self, subject_id: int, relation: str) -> bool | None:
        row = self.store.query_one(
            "SELECT exclusive FROM facts WHERE agent_id = ? AND subject_id = ? AND relation = ?"
            " ORDER BY id LIMIT 1",
            (self.agent_id, subject_id, relation),
        )
        return bool(row[0]) if row else None

    def _add(
        self,
        conn: Connection,
        subject_id: int,
        relation: str,
        object_id: int,
        exclusive: bool,
        valid_from: str,
        valid_to: str | None,
        source: str,
    ) -> int:
        conn.execute(
            "INSERT INTO facts(agent_id, subject_id, relation, object_id, exclusive, valid_from,"
            " valid_to, source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.agent_id,
                subject_id,
                relation,
                object_id,
                int(exclusive),
                valid_from,
                valid_to,
                source,
                now_iso(),
            ),
        )
        return int(conn.last_insert_rowid())

    def _facts(self, where: str, params: tuple[object, ...]) -> list[Fact]:
        rows = self.store.query(
            "SELECT f.id, s.name, f.relation, o.name, f.valid_from, f.valid_to, f.exclusive,"
            " f.source FROM facts f JOIN entities s ON s.id = f.subject_id"
            " JOIN entities o ON o.id = f.object_id"
            f" WHERE f.agent_id = ? AND {where} ORDER BY f.valid_from, f.id",
            (self.agent_id, *params),
        )
        return [
            Fact(
                r[0],
                r[1],
                r[2],
                r[3],
                dt.datetime.fromisoformat(r[4]),
                dt.datetime.fromisoformat(r[5]) if r[5] else None,
                bool(r[6]),
                r[7],
            )
            for r in rows
        ]


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


# held at some time in the period [start, end): see _period_params
_HELD_IN = "f.valid_from < ? AND (f.valid_to IS NULL OR f.valid_to > ?)"


def _period_params(at: str | dt.datetime | dt.date) -> list[object]:
    """(end, start) of the period `at` names; an instant t is [t, t + 1 microsecond)."""
    period = parse_time(at, "at")
    end = max(period.end, period.start + dt.timedelta(microseconds=1))
    return [_stamp(end), _stamp(period.start)]


def _day(moment: dt.datetime) -> str:
    if (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0):
        return f"{moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%d %H:%M}"
