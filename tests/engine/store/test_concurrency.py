"""Concurrency on one real file: another process mid-transaction, and many threads searching
archival memory on one Store while a thread writes.

What test_db.py covers already: a second Store (this process or another) gets FileInUse while
the first is open, waits for one that is closing, meets the same lock through a symlink, and a
holder killed mid-write leaves its commits intact. Here: the first process is held inside an
open transaction (uncommitted rows) while the second tries, and a writer that is not a Memex
(sqlite3 or any other program on the file, which the lock file does not stop) holds SQLite's
write lock while the Store writes.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from engine import MemGPTAgent, Persona
from engine.errors import FileInUse
from engine.llm.scripted import ScriptedClient
from engine.memory.archival import ArchivalMemory
from engine.memory.search import vector_blob
from engine.store.db import Store, open_store

ROOT = Path(__file__).resolve().parents[3]

# -- two processes on one file ----------------------------------------------------------------

# A Memex that opens the file, starts a transaction, writes a row in it and waits inside it
# for "commit" on stdin (or to be killed).
MID_TRANSACTION = """
import sys
from engine.store.db import open_store
store = open_store(sys.argv[1])
with store.atomic() as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS notes(text TEXT)")
    conn.execute("INSERT INTO notes VALUES ('committed before')")
with store.atomic() as conn:
    conn.execute("INSERT INTO notes VALUES ('in the open transaction')")
    print("in transaction", flush=True)
    sys.stdin.readline()
store.close()
print("closed", flush=True)
"""

# Any other program on the file: a plain SQLite connection (no lock file) running the SQL it
# reads from stdin, a statement a line; prints "ok" or the error's class after each.
OTHER_PROGRAM = """
import sys, apsw
conn = apsw.Connection(sys.argv[1])
conn.set_busy_timeout(int(sys.argv[2]))
print("open", flush=True)
for line in sys.stdin:
    try:
        conn.execute(line)
        print("ok", flush=True)
    except apsw.Error as exc:
        print(type(exc).__name__, flush=True)
"""


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _say(process: subprocess.Popen[str], line: str) -> str:
    """Send one line to the process and return its answer."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def _read(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


@pytest.fixture
def reaper() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def _intact(path: Path) -> list[str]:
    """integrity_check is ok; the notes the file holds."""
    with open_store(path, wait_s=10) as store:
        assert store.query("PRAGMA integrity_check") == [("ok",)]
        assert store.query("PRAGMA foreign_key_check") == []
        return [r[0] for r in store.query("SELECT text FROM notes ORDER BY rowid")]


def test_a_second_memex_during_an_open_transaction_waits_then_sees_only_commits(
    tmp_path: Path, reaper
) -> None:
    path = tmp_path / "memex.db"
    first = _spawn(MID_TRANSACTION, str(path))
    reaper.append(first)
    assert _read(first) == "in transaction"

    start = time.monotonic()
    with pytest.raises(FileInUse):
        open_store(path, wait_s=0.5)
    assert time.monotonic() - start >= 0.5

    # The second waits for the lock while the first commits and closes, then sees the commit.
    opened: list[Store] = []
    waiter = threading.Thread(target=lambda: opened.append(open_store(path, wait_s=30)))
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive() and not opened  # still waiting: the first one has the file
    assert _say(first, "commit") == "closed"
    waiter.join(timeout=30)
    [second] = opened
    try:
        assert second.query("PRAGMA integrity_check") == [("ok",)]
        assert [r[0] for r in second.query("SELECT text FROM notes ORDER BY rowid")] == [
            "committed before",
            "in the open transaction",
        ]
    finally:
        second.close()


def test_a_memex_killed_inside_a_transaction_leaves_none_of_it(tmp_path: Path, reaper) -> None:
    path = tmp_path / "memex.db"
    first = _spawn(MID_TRANSACTION, str(path))
    reaper.append(first)
    assert _read(first) == "in transaction"
    with pytest.raises(FileInUse):
        open_store(path, wait_s=0.2)
    first.kill()
    first.wait()
    assert _intact(path) == ["committed before"]  # the lock went with it, the open write too


def _other_program_holding_the_write_lock(
    path: Path, reaper: list[subprocess.Popen[str]]
) -> subprocess.Popen[str]:
    other = _spawn(OTHER_PROGRAM, str(path), "0")
    reaper.append(other)
    assert _read(other) == "open"
    assert _say(other, "BEGIN IMMEDIATE") == "ok"
    assert _say(other, "INSERT INTO notes VALUES ('from the other program')") == "ok"
    return other


@pytest.fixture
def notes_store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(tmp_path / "memex.db")
    with store.atomic() as conn:
        conn.execute("CREATE TABLE notes(text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('first')")
    yield store
    store.close()


def test_a_write_waits_for_another_program_mid_transaction(notes_store: Store, reaper) -> None:
    other = _other_program_holding_the_write_lock(notes_store.path, reaper)
    done: list[float] = []
    errors: list[BaseException] = []

    def write() -> None:
        start = time.monotonic()
        try:
            with notes_store.atomic() as conn:
                conn.execute("INSERT INTO notes VALUES ('from memex')")
        except BaseException as exc:  # reported below
            errors.append(exc)
        done.append(time.monotonic() - start)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(1.0)
    assert writer.is_alive() and not done  # waiting on SQLite's busy timeout
    assert _say(other, "COMMIT") == "ok"
    writer.join(timeout=10)
    assert not errors and done[0] >= 1.0
    texts = [r[0] for r in notes_store.query("SELECT text FROM notes ORDER BY rowid")]
    assert texts == ["first", "from the other program", "from memex"]
    assert notes_store.query("PRAGMA integrity_check") == [("ok",)]


def test_a_write_past_the_busy_timeout_fails_whole_and_the_store_goes_on(
    notes_store: Store, reaper
) -> None:
    other = _other_program_holding_the_write_lock(notes_store.path, reaper)
    notes_store.conn.set_busy_timeout(300)  # BUSY_TIMEOUT_MS (5 s) behaves the same, slower
    start = time.monotonic()
    with pytest.raises(apsw.BusyError), notes_store.atomic() as conn:
        conn.execute("INSERT INTO notes VALUES ('memex, 1')")  # a write in the transaction ...
        conn.execute("INSERT INTO notes VALUES ('memex, 2')")
    assert time.monotonic() - start >= 0.3
    assert _say(other, "COMMIT") == "ok"
    with notes_store.atomic() as conn:  # ... the store is usable again once the lock is free
        conn.execute("INSERT INTO notes VALUES ('memex, again')")
    texts = [r[0] for r in notes_store.query("SELECT text FROM notes ORDER BY rowid")]
    assert texts == ["first", "from the other program", "memex, again"]
    assert notes_store.query("PRAGMA integrity_check") == [("ok",)]


# -- threads on one Store ----------------------------------------------------------------------

TOPICS = [
    "the user's cat Miso likes sardines",
    "Alice works at Acme as a Python developer",
    "the quarterly report is due on Friday",
    "Bob plays the cello in a string quartet",
    "the garden needs water every second day",
    "a trip to Lisbon is planned for May",
    "the dentist appointment moved to Tuesday",
    "sourdough starter: feed it flour and water daily",
]
QUERIES = ["cat sardines", "Python developer", "report Friday", "cello", "Lisbon trip", "water"]
READERS = 6
SEARCHES_PER_READER = 25
BATCHES = 60
BATCH = 25


def test_threads_searching_while_one_writes(store: Store, embedder) -> None:
    """Six threads search archival memory on one Store while a seventh inserts 1,500 passages or more:
    no exception anywhere, every hit is a passage as it was written, and the count is right."""
    agent = MemGPTAgent(Persona("Sam", "d"), store, ScriptedClient(), name="sam")
    archival = ArchivalMemory(store, agent.agent_id)
    vectors = [vector_blob(v) for v in embedder.embed(TOPICS)]
    seeded = archival.insert_many(TOPICS, source="seed")
    written: dict[int, str] = dict(zip(seeded, TOPICS, strict=True))
    errors: list[BaseException] = []
    hits: list[tuple[int, str]] = []
    totals: set[tuple[str, int]] = set()  # (query, how many passages it matched) as seen
    during = 0  # searches that ended while the writer was still writing
    ended: list[int] = []  # a mark for each search that ended (list.append is atomic)
    writing = threading.Event()
    writing.set()

    def writer() -> None:
        try:
            counter = itertools.count()
            # BATCHES at least, and on until every reader could have ended two searches: however
            # slow a query's embedding is (a larger embedder), the writes overlap the searches
            for batch in itertools.count():
                if batch >= BATCHES and (len(ended) >= 2 * READERS or batch >= 20 * BATCHES):
                    break
                texts, blobs = [], []
                for _ in range(BATCH):
                    n = next(counter)
                    texts.append(f"{TOPICS[n % len(TOPICS)]} (note {n})")
                    blobs.append(vectors[n % len(TOPICS)])
                ids = archival.insert_many(texts, tags=["bulk"], source="writer", vectors=blobs)
                written.update(zip(ids, texts, strict=True))
        except BaseException as exc:
            errors.append(exc)
        finally:
            writing.clear()

    def reader(seed: int) -> None:
        nonlocal during
        rng = random.Random(seed)
        mine = ArchivalMemory(store, agent.agent_id)  # as each caller makes its own
        try:
            done = 0
            # at least SEARCHES_PER_READER, and on while the writer writes: however fast a
            # search is, the readers overlap the writes
            while done < SEARCHES_PER_READER or writing.is_set():
                done += 1
                limit = rng.choice([3, 5, 10])
                query = rng.choice(QUERIES)
                page, passages = mine.search(query, limit=limit)
                during += writing.is_set()
                ended.append(1)
                totals.add((query, page.total))
                assert len(passages) <= limit and page.total >= len(passages)
                assert len({p.id for p in passages}) == len(passages)
                hits.extend((p.id, p.text) for p in passages)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors[0]

    assert len(hits) >= READERS * SEARCHES_PER_READER  # every query matches something
    # the searches really ran beside the writes: some while it wrote, seeing the index grow
    assert during > 0, during
    assert len(totals) > len({q for q, _ in totals}), totals
    for passage_id, text in hits:
        assert written.get(passage_id) == text, f"search returned {passage_id}: {text!r}"
    total = len(written)
    assert total >= len(TOPICS) + BATCHES * BATCH and (total - len(TOPICS)) % BATCH == 0
    assert archival.count() == total
    rows = store.query(
        "SELECT id, text FROM passages WHERE agent_id = ? ORDER BY id", (agent.agent_id,)
    )
    assert dict(rows) == written
    assert store.query_one("SELECT count(*) FROM passage_vectors")[0] == total
    assert store.query("PRAGMA integrity_check") == [("ok",)]
