"""The one owner of the SQLite connection: opening, sqlite-vec, PRAGMAs, migrations, transactions."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw
import filelock
import platformdirs
import sqlite_vec

from engine import timing
from engine.errors import (
    ExtensionUnavailable,
    FileInUse,
    SchemaTooNew,
    StoreError,
    reinstall_hint,
)
from engine.store.migrations import LATEST_VERSION, MIGRATIONS

if TYPE_CHECKING:
    from engine.store.embed import Embedder

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
MMAP_BYTES = 1 << 31  # SQLite's default ceiling (SQLITE_MAX_MMAP_SIZE) caps it at about this
# How long opening a file waits for another Memex to let go of it (one that is closing needs a
# moment to finish its step and checkpoint) before saying the file is in use.
IN_USE_WAIT_S = 3.0


def default_db_path() -> Path:
    """Where the user's Memex file lives unless another path is given."""
    return Path(platformdirs.user_data_dir("memex")) / "memex.db"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def iso_utc(when: dt.datetime) -> str:
    """A time as the tables keep it, like now_iso(): UTC, microseconds (naive is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


class Store:
    """One Memex database file: every memory tier of every agent lives here.

    All writes go through `atomic()`; nested calls become savepoints, so one agent step
    (assistant message, tool effects, tool result) commits or rolls back as a whole.

    One Store at a time has a file: it holds an OS lock on `<file>.lock` while open, so a second
    Memex (another window, the terminal chat, a second copy of the app) waits `wait_s` seconds
    and then gets FileInUse instead of writing beside it. SQLite's own locking would keep the
    file intact, but two agents would each carry a context the other's writes do not reach.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        embedder: Embedder | None = None,
        wait_s: float = IN_USE_WAIT_S,
    ) -> None:
        self.path = Path(path)
        self._embedder = embedder
        self._lock = threading.RLock()
        self._reader: apsw.Connection | None = None  # see committed_reads
        self._reader_lock = threading.Lock()
        self._closed = False
        real = self.path.resolve()  # a symlink's target: its folder and its lock
        _check_writable(self.path, real.parent)
        self._file_lock = _lock_file(self.path, real, wait_s)
        beside = _sidecars_present(self.path)
        try:
            self.conn = _connect(self.path, beside)
        except BaseException:
            self._file_lock.release()
            raise
        try:
            self.schema_version = _migrate(self.conn, self.path)
        except BaseException:
            try:
                _close_refused(self.conn, self.path, beside)
            finally:
                self._closed = True
                self._file_lock.release()
            raise
        self.conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0)  # accepted: tidy on close

    # -- transactions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def atomic(self) -> Iterator[apsw.Connection]:
        """A transaction (a savepoint when nested); rolled back on any exception. Its begin
        and commit count as database time in a measured step (engine.timing)."""
        with self._lock, timing.timed_transaction(self.conn):
            yield self.conn

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self._lock, timing.phase(timing.PHASE_DATABASE):
            return list(self.conn.execute(sql, params))

    def query_one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    # -- embeddings --------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The sentence embedder for archival and recall vectors (the default one, loaded lazily)."""
        if self._embedder is None:
            from engine.store.embed import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    def use_embedder(self, embedder: Embedder) -> None:
        """Embed with `embedder` from now on (new settings on the same file)."""
        self._embedder = embedder

    @contextlib.contextmanager
    def committed_reads(self) -> Iterator[apsw.Connection]:
        """A second, read-only connection in one read transaction: it sees what is committed
        and nothing of the open transaction of `conn` (a step's). For snapshots that must never
        hold what may yet be rolled back (engine.memory.vectors); WAL lets it read while a
        write is open. Serialised; raises StoreError once the store is closed."""
        with self._reader_lock:
            if self._reader is None:
                if self._closed:
                    raise StoreError(f"the memory file {self.path} is closed")
                self._reader = _connect_reader(self.path)
            with self._reader:
                yield self._reader

    def close(self) -> None:
        with self._lock:
            try:
                with self._reader_lock:
                    self._closed = True
                    if self._reader is not None:
                        self._reader.close()
                        self._reader = None
                self.conn.close()
            finally:
                self._file_lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, schema v{self.schema_version})"


def open_store(
    path: str | os.PathLike[str] | None = None,
    embedder: Embedder | None = None,
    wait_s: float = IN_USE_WAIT_S,
) -> Store:
    """Open (creating if needed) the Memex file at `path`, or the default file. FileInUse if
    another Memex keeps it open for longer than `wait_s` seconds."""
    target = Path(path).expanduser() if path is not None else default_db_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the folder {target.parent} for the memory file ({exc.strerror}); "
            "choose a memory file in a folder you can write to (Settings, or --db PATH)"
        ) from exc
    return Store(target, embedder=embedder, wait_s=wait_s)


def _check_writable(path: Path, folder: Path) -> None:
    """Memex writes every message to its file (and SQLite its -wal file beside it, in the real
    file's `folder`): a read-only file or folder is refused before anything is made there."""
    if path.exists() and not path.is_file():
        raise StoreError(f"{path} is not a file; choose a memory file (Settings, or --db PATH)")
    for what, thing in (("file", path), ("folder", folder)):
        if thing.exists() and not os.access(thing, os.W_OK):
            raise StoreError(
                f"the memory {what} {thing} is read-only: Memex writes every message to it. "
                "Make it writable, or choose another memory file (Settings, or --db PATH)."
            )


def _lock_file(path: Path, real: Path, wait_s: float) -> filelock.BaseFileLock:
    """Take the lock that says this process has the Memex file at `path` (really `real`) open.

    An OS lock (flock / LockFileEx): it goes with the process, so a crashed Memex leaves no stale
    lock behind. The lock file itself stays; it is empty and harmless.
    """
    # thread_local=False: the GUI opens the file on its engine thread and tests may close it
    # elsewhere; the lock belongs to the Store, not to a thread.
    # Named after the real file, so a symlink to it (or a relative path) meets the same lock. A
    # hard link is another name for the same file and is not caught, and SQLite does not save
    # that case either: in WAL mode each name gets its own -wal and -shm, so two processes
    # writing through two names lose commits. Opening one file under two hard-linked names at
    # once is not supported.
    # mode: readable by the user only, like the file it stands for (a new lock file; one left
    # by an older Memex keeps its mode, and it is empty).
    lock = filelock.FileLock(
        real.with_name(real.name + ".lock"), timeout=wait_s, thread_local=False, mode=0o600
    )
    try:
        lock.acquire()
    except filelock.Timeout:
        raise FileInUse(
            f"{path} is open in another Memex (a window or the terminal chat). Close that one "
            "and try again, or open another memory file."
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot lock the Memex database {path}: {exc}") from exc
    return lock


def _connect(path: Path, beside: set[str]) -> apsw.Connection:
    """Open and tune the file; `beside` are its -wal/-shm found before (see _close_refused)."""
    existed = path.exists()
    try:
        conn = apsw.Connection(str(path))
    except apsw.Error as exc:
        raise StoreError(f"cannot open the Memex database {path}: {exc}") from exc
    if not existed:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)  # the user's memory is private
    # Closing checkpoints the -wal into the file and deletes it; a file refused below (damaged,
    # another program's, a newer Memex's) must be left byte for byte, its -wal included.
    # Store turns this back off once the file is accepted.
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    conn.cursor_factory = timing.TimedCursor  # statements count as database time in a step
    _load_sqlite_vec(conn)
    try:
        _refuse_files_not_ours(conn, path)  # before WAL: switching rewrites the header
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        # Reads through a memory map: re-scoring a vector search reads a thousand rows at
        # random, 13 ms with read() calls against 2 ms mapped at 100k passages. The map is
        # address space; the pages are the OS's file cache, shared and reclaimable.
        conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        _check_after_a_crash(conn, path)
    except apsw.BusyError as exc:
        _close_refused(conn, path, beside)
        raise StoreError(f"{path} is in use by another Memex process; close it and retry") from exc
    except apsw.ReadOnlyError as exc:
        _close_refused(conn, path, beside)
        raise StoreError(
            f"{path} cannot be written ({exc}): Memex writes every message to it. Make it "
            "writable, or choose another memory file (Settings, or --db PATH)."
        ) from exc
    except StoreError:
        _close_refused(conn, path, beside)
        raise
    except (apsw.NotADBError, apsw.CorruptError) as exc:
        _close_refused(conn, path, beside)
        raise StoreError(
            f"{path} is not a Memex database or is damaged ({exc}). Nothing was changed; "
            "restore it from a backup or open another file with --db PATH."
        ) from exc
    return conn


def _sidecars_present(path: Path) -> set[str]:
    return {s for s in ("-wal", "-shm") if path.with_name(path.name + s).exists()}


def _close_refused(conn: apsw.Connection, path: Path, present_before: set[str]) -> None:
    """Close a connection to a refused file, leaving no -wal or -shm that was not there."""
    conn.close()
    for suffix in {"-wal", "-shm"} - present_before:
        sidecar = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):
            if suffix == "-shm" or sidecar.stat().st_size == 0:
                sidecar.unlink()


def _refuse_files_not_ours(conn: apsw.Connection, path: Path) -> None:
    """Refuse, reading only, a file Memex must not change: another program's SQLite file (tables
    but no schema_migrations: Memex would add its tables and switch it to WAL) or a newer
    Memex's (switching to WAL alone would rewrite its header)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "schema_migrations" not in tables:
        raise StoreError(
            f"{path} is not a Memex database: it is another program's SQLite file (tables: "
            f"{', '.join(sorted(tables)[:5])}). Nothing was changed; choose a Memex memory file "
            "or a new file name (Settings, or --db PATH)."
        )
    if tables:
        version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        _refuse_newer_than_latest(version or 0, path)


def _refuse_newer_than_latest(version: int, path: Path) -> None:
    if version > LATEST_VERSION:
        raise SchemaTooNew(
            f"{path} was written by a newer Memex (schema v{version}; this one knows up to "
            f"v{LATEST_VERSION}). Upgrade Memex to open it; the file was not changed."
        )


def _check_after_a_crash(conn: apsw.Connection, path: Path) -> None:
    """A -wal left behind means Memex stopped without closing the file. SQLite then reads
    the pages it holds over the file's, which can hide a file cut short (a copy made half-way,
    a full disk): check the structure once before going on (raises CorruptError)."""
    wal = path.with_name(path.name + "-wal")
    if not wal.exists() or wal.stat().st_size == 0:
        return
    problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise apsw.CorruptError("; ".join(problems))


def _connect_reader(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    _load_sqlite_vec(conn)
    conn.execute("PRAGMA query_only=1")
    conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
    return conn


def _load_sqlite_vec(conn: apsw.Connection) -> None:
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
    except (apsw.Error, AttributeError, OSError) as exc:
        conn.close()
        raise ExtensionUnavailable(
            f"could not load sqlite-vec from {sqlite_vec.loadable_path()}: {exc}. "
            f"{reinstall_hint()}."
        ) from exc


def _current_version(conn: apsw.Connection) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return row[0] or 0


def _migrate(conn: apsw.Connection, path: Path) -> int:
    """Bring the file up to LATEST_VERSION (a newer Memex's file was refused by _connect)."""
    with conn:
        version = _current_version(conn)
    pending = [m for m in MIGRATIONS if m.version > version]
    if pending and version > 0:
        _backup(conn, path, version)
    for migration in pending:
        with conn:  # each migration and its record commit together
            migration.apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, now_iso()),
            )
        log.info("migrated %s to schema v%d (%s)", path, migration.version, migration.name)
    return LATEST_VERSION


def _backup(conn: apsw.Connection, path: Path, version: int) -> None:
    """Copy an older file aside before upgrading it, so a failed upgrade loses nothing."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    backup = path.with_name(f"{path.name}.v{version}.bak")
    copies = 1
    while backup.exists():  # an earlier backup (of an earlier upgrade) is never overwritten
        copies += 1
        backup = path.with_name(f"{path.name}.v{version}.{copies}.bak")
    shutil.copy2(path, backup)
    with contextlib.suppress(OSError):
        os.chmod(backup, 0o600)  # a copy of the user's memory: private, whatever the file's mode
    log.info("backed up %s to %s before migrating", path, backup)
