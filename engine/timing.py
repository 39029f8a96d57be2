"""Where a step's time goes: named phases, timed on the step's own thread.

The agent opens a `measure()` around each step; the code a step runs marks its parts with
`phase(name)` (context building, chat template, tokenizing, parsing, dispatch, database,
embedding, ...) and the model client adds what llama.cpp measured itself with `attribute()`
(prompt evaluation, decoding). A phase inside another counts only in the inner one (self time),
so the phases plus "other" (what no phase covers: the loop itself) add up to the step's wall
time exactly. The result is an engine.types.StepTimings on the step's result.

Cheap enough to stay on: with no step measured on the thread, `phase` costs one thread-local
lookup; inside a step, two perf_counter calls and a dict update (about a microsecond).
Timers are per thread: work another thread does (the app's UI) is not counted in a step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any

import apsw

from engine.types import (
    PHASE_CONTEXT,
    PHASE_DATABASE,
    PHASE_DISPATCH,
    PHASE_EMBEDDING,
    PHASE_GENERATION,
    PHASE_MODEL,
    PHASE_OTHER,
    PHASE_PARSE,
    PHASE_PROMPT_EVAL,
    PHASE_STORE,
    PHASE_STREAM,
    PHASE_TEMPLATE,
    PHASE_TOKENIZE,
    StepTimings,
)

__all__ = [
    "PHASE_CONTEXT",
    "PHASE_DATABASE",
    "PHASE_DISPATCH",
    "PHASE_EMBEDDING",
    "PHASE_GENERATION",
    "PHASE_MODEL",
    "PHASE_OTHER",
    "PHASE_PARSE",
    "PHASE_PROMPT_EVAL",
    "PHASE_STORE",
    "PHASE_STREAM",
    "PHASE_TEMPLATE",
    "PHASE_TOKENIZE",
    "StepTimer",
    "StepTimings",
    "TimedCursor",
    "attribute",
    "current",
    "measure",
    "phase",
    "timed_transaction",
]

_local = threading.local()


class StepTimer:
    """The phases of one step as they run: a stack of open phases and the self time of each."""

    __slots__ = ("started", "totals", "_stack")

    def __init__(self) -> None:
        self.started = perf_counter()
        self.totals: dict[str, float] = {}
        self._stack: list[list[Any]] = []  # [name, started, seconds spent in inner phases]

    def push(self, name: str) -> None:
        self._stack.append([name, perf_counter(), 0.0])

    def pop(self) -> None:
        name, started, inner = self._stack.pop()
        elapsed = perf_counter() - started
        totals = self.totals
        totals[name] = totals.get(name, 0.0) + (elapsed - inner)
        if self._stack:
            self._stack[-1][2] += elapsed

    def attribute(self, name: str, seconds: float) -> None:
        """`seconds` of the running phase went to `name` (measured elsewhere, e.g. by llama.cpp's
        own counters): added to `name`, taken from the phase that ran them."""
        if seconds <= 0:
            return
        self.totals[name] = self.totals.get(name, 0.0) + seconds
        if self._stack:
            self._stack[-1][2] += seconds

    def finish(self) -> StepTimings:
        """The step's timings so far: every phase's self time, and "other" for the rest."""
        wall = perf_counter() - self.started
        phases = {name: seconds for name, seconds in self.totals.items() if seconds > 0}
        phases[PHASE_OTHER] = max(0.0, wall - sum(phases.values()))
        return StepTimings(wall, phases)


def current() -> StepTimer | None:
    """The timer of the step running on this thread, if one is being measured."""
    return getattr(_local, "timer", None)


@contextmanager
def measure() -> Iterator[StepTimer]:
    """Measure the phases of what runs inside (a step) on this thread. Nested inside another
    measure (a memory review inside a step), it yields the outer timer: the outer step's
    figures include it."""
    outer = getattr(_local, "timer", None)
    if outer is not None:
        yield outer
        return
    timer = StepTimer()
    _local.timer = timer
    try:
        yield timer
    finally:
        _local.timer = None


class phase:  # noqa: N801 - used like a function: `with phase("parse"):`
    """`with phase("parse"): ...` counts the block's time (less inner phases) as `name`."""

    __slots__ = ("name", "_timer")

    def __init__(self, name: str) -> None:
        self.name = name
        self._timer: StepTimer | None = None

    def __enter__(self) -> None:
        timer = getattr(_local, "timer", None)
        if timer is not None:
            self._timer = timer
            timer.push(self.name)

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.pop()
            self._timer = None


def attribute(name: str, seconds: float) -> None:
    """StepTimer.attribute on this thread's step, if one is measured."""
    timer = getattr(_local, "timer", None)
    if timer is not None:
        timer.attribute(name, seconds)


class TimedCursor(apsw.Cursor):
    """An apsw cursor whose statements count as database time (Store sets it as the
    connection's cursor_factory). `execute` runs a statement to its first row, which is where
    SQLite does the work of a search (a later row of a big result is read by Store.query,
    timed as a whole). SQLite's own per-statement profile (Connection.set_profile) was not
    used: its clock counts whole milliseconds."""

    def execute(self, *args: Any, **kwargs: Any) -> apsw.Cursor:
        timer = getattr(_local, "timer", None)
        if timer is None:
            return super().execute(*args, **kwargs)
        timer.push(PHASE_DATABASE)
        try:
            return super().execute(*args, **kwargs)
        finally:
            timer.pop()

    def executemany(self, *args: Any, **kwargs: Any) -> apsw.Cursor:
        timer = getattr(_local, "timer", None)
        if timer is None:
            return super().executemany(*args, **kwargs)
        timer.push(PHASE_DATABASE)
        try:
            return super().executemany(*args, **kwargs)
        finally:
            timer.pop()


class timed_transaction:  # noqa: N801 - a context manager used like `with conn:`
    """`with timed_transaction(conn):` is `with conn:` (a transaction, a savepoint when nested)
    with its begin and its commit or rollback counted as database time."""

    __slots__ = ("_conn",)

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> apsw.Connection:
        timer = getattr(_local, "timer", None)
        if timer is None:
            return self._conn.__enter__()
        timer.push(PHASE_DATABASE)
        try:
            return self._conn.__enter__()
        finally:
            timer.pop()

    def __exit__(self, *exc: Any) -> bool | None:
        timer = getattr(_local, "timer", None)
        if timer is None:
            return self._conn.__exit__(*exc)
        timer.push(PHASE_DATABASE)
        try:
            return self._conn.__exit__(*exc)
        finally:
            timer.pop()
