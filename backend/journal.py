"""The SQLite journal: one file that keeps every job, written by one thread.

`Journal` owns the file: it checks and migrates it at start, holds the lock that keeps a
second server off it, and runs every write on one writer thread. Writes that arrive
while a commit is on disk wait and then share the next commit (group commit), so a
burst of submits costs a few fsyncs, not one each. The event loop never touches the
disk: it hands the thread a small function and gets the outcome back, in commit order,
through one callback per commit. Writes that many callers make alike (a submit's insert)
are `Shared`: those of one commit are one write and a few statements, because the thread
waits for the interpreter lock after each statement while the loop is busy.

The file is a plain SQLite database with one `jobs` table (see the README), in WAL mode
with `synchronous=FULL`: a commit is on disk when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from backend.protocol import StorageUnavailable

logger = logging.getLogger("taskrpc.journal")

MEMORY = ":memory:"  # the --db value that keeps jobs in memory only
APPLICATION_ID = 0x7461736B  # "task": marks a SQLite file as ours (PRAGMA application_id)
SCHEMA_VERSION = 3  # PRAGMA user_version of the files this version writes
MAX_BATCH = 4096  # writes in one commit at most
VACUUM_PAGES = 256  # free pages that trigger an incremental vacuum
MOST_ROWS = 512  # rows one statement inserts at most
# Seconds a thread may hold the interpreter lock while another waits for it (Python's
# default is 5 ms). The writer thread gives the lock back around each SQLite call, and a
# busy loop then keeps it for a whole interval: at 5 ms, the few calls of one commit
# cost it more than its fsync (bench: journal batches).
SWITCH_INTERVAL = 0.0005
_writers: list[float] = []  # the switch interval each running writer thread found at start
_HEADER = b"SQLite format 3\x00"
_NO_PAGE_LIMIT = 0xFFFFFFFE  # SQLite's largest max_page_count
_FREE_PAGES = "PRAGMA freelist_count"  # SQL text lives out here: its case is no mutant
_PAGES = "PRAGMA page_count"
_VACUUM = "PRAGMA incremental_vacuum"
_BEGIN = "BEGIN IMMEDIATE"  # the write lock at once: a commit never waits for it midway
_COMMIT = "COMMIT"
_ROLLBACK = "ROLLBACK"
_READ_APPLICATION_ID = "PRAGMA application_id"
_READ_VERSION = "PRAGMA user_version"
_INCREMENTAL_VACUUM = "PRAGMA auto_vacuum = INCREMENTAL"  # before the first table
_MARK_OURS = f"PRAGMA application_id = {APPLICATION_ID}"
_WAL = "PRAGMA journal_mode = WAL"
_SYNCHRONOUS = "PRAGMA synchronous = FULL"  # a commit is on disk when it returns
_READ_LAST_SEQ = "SELECT seq FROM sqlite_sequence WHERE name = 'jobs'"
STOPPING = "storage unavailable: the server is stopping"  # a write after the stop
_STARTING = "-"  # the URL in the lock file until the server listens

# Each version's step from the one before: _MIGRATIONS[n] turns version n into n + 1.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    0: (  # a new file: the first layout
        """CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            delay REAL NOT NULL,
            status TEXT NOT NULL,
            submitted_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            result TEXT,
            error TEXT
        )""",
    ),
    1: ("ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",),
    # No index on `id` (rows are changed by seq): ids are random, so each insert wrote a
    # page of that index somewhere else, and a commit of 200 submits to a table of 300 000
    # jobs took 8 ms instead of 3 (bench: journal batches). Memory keeps ids unique.
    2: (
        """CREATE TABLE jobs_3 (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL,
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            delay REAL NOT NULL,
            status TEXT NOT NULL,
            submitted_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            result TEXT,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0
        )""",
        "INSERT INTO jobs_3 SELECT * FROM jobs",
        # The last seq given goes along, even when its job is gone: seqs are never reused.
        "DELETE FROM sqlite_sequence WHERE name = 'jobs_3'",
        "INSERT INTO sqlite_sequence (name, seq) "
        "SELECT 'jobs_3', seq FROM sqlite_sequence WHERE name = 'jobs'",
        "DROP TABLE jobs",
        "ALTER TABLE jobs_3 RENAME TO jobs",
    ),
}
COLUMNS = (
    "seq, id, type, data, delay, status, submitted_at, started_at, finished_at, result, error, "
    "attempts"
)
_READ_JOBS = f"SELECT {COLUMNS} FROM jobs ORDER BY seq"
T = TypeVar("T")
Row = tuple[int, str, str, str, float, str, float, float | None, float | None, str | None,
            str | None, int]  # fmt: skip


class Refused(Exception):
    """The server must not start on this database; the message is one line for a person."""


def default_path(environ: Mapping[str, str]) -> Path:
    """`$XDG_STATE_HOME/taskrpc/taskrpc.db`, else `~/.local/state/taskrpc/taskrpc.db`."""
    state = environ.get("XDG_STATE_HOME")
    if state is None or not os.path.isabs(state):  # the XDG rule: a relative value is ignored
        home = environ.get("HOME") or str(Path.home())
        state = os.path.join(home, ".local", "state")
    return Path(state) / "taskrpc" / "taskrpc.db"


def resolve(db: str | None, environ: Mapping[str, str]) -> str:
    """The database a server uses: `db` as given, or the default path when it is None."""
    return str(default_path(environ)) if db is None else db


@dataclass(frozen=True, slots=True)
class Shared(Generic[T]):
    """A kind of write that many callers make at once (a submit's insert). The calls of one
    turn of the loop become one write: `work(journal, items)` in the transaction (one
    statement for them all, not one each), `apply(items, outcome)` on the loop once it is on
    disk, `undo(items)` on the loop if it never will be."""

    work: Callable[[Journal, list[T]], Any]
    apply: Callable[[list[T], Any], None]
    undo: Callable[[list[T]], None]


@dataclass(slots=True)
class _Write:
    """One write for the thread: `work` runs in the transaction, `apply` on the loop after
    it is on disk, `undo` on the loop if it never will be."""

    work: Callable[[Journal], Any]
    apply: Callable[[Any], Any] | None
    future: asyncio.Future[Any] | None
    undo: Callable[[], None] | None = None

    def run(self, journal: Journal) -> Any:
        return self.work(journal)

    def done(self, outcome: Any) -> None:
        """On disk: apply it, then answer the caller (apply's error goes to the caller)."""
        future = self.future
        try:
            value = outcome if self.apply is None else self.apply(outcome)
        except Exception as exc:
            logger.exception("applying a committed change failed")
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(value)

    def fail(self, error: Exception) -> None:
        if self.undo is not None:
            self.undo()
        if self.future is not None and not self.future.done():
            self.future.set_exception(error)


@dataclass(slots=True)
class _Group(Generic[T]):
    """The `Shared` writes of one turn of the loop: one write, a future per caller."""

    kind: Shared[T]
    items: list[T]
    futures: list[asyncio.Future[None]]

    def run(self, journal: Journal) -> Any:
        return self.kind.work(journal, self.items)

    def done(self, outcome: Any) -> None:
        try:
            self.kind.apply(self.items, outcome)
        except Exception as exc:
            logger.exception("applying a committed change failed")
            _settle(self.futures, exc)
            return
        _settle(self.futures, None)

    def fail(self, error: Exception) -> None:
        self.kind.undo(self.items)
        _settle(self.futures, error)


def _append(batch: list[_Write | _Group[Any]], more: list[_Write | _Group[Any]]) -> None:
    """Add the writes of a later turn to a commit; a group of the kind the commit ends with
    joins that group: single submits from many connections are one statement too."""
    last = batch[-1] if batch else None
    head = more[0] if more else None
    if isinstance(last, _Group) and isinstance(head, _Group) and head.kind is last.kind:
        last.items += head.items
        last.futures += head.futures
        batch += more[1:]
    else:
        batch += more


def _settle(futures: list[asyncio.Future[None]], error: Exception | None) -> None:
    """Answer every caller still waiting (one that stopped waiting has a cancelled future)."""
    for future in futures:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


class Journal:
    """One taskrpc SQLite file, locked for this process, with its writer thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.next_seq = 0  # the seq of the next job; owned by the writer thread once started
        self.connection: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writes: queue.SimpleQueue[list[_Write | _Group[Any]] | None] = queue.SimpleQueue()
        self._outbox: list[_Write | _Group[Any]] = []  # writes of this turn, not yet handed
        self._group: _Group[Any] | None = None  # the last of the outbox, if callers may join it
        self._thread: threading.Thread | None = None
        self._failing = False  # the last commit failed: say so once, and once when it works
        self._deleted = 0  # rows deleted since the last look at the free pages
        self.commits = 0  # transactions committed so far (how well writes are grouped)
        self._max_parameters = 999  # parameters of one statement (SQLite's limit, read at open)
        self.stopped = False

    # -- opening (in a thread, before the server answers anyone) ----------------------

    def open(self) -> list[Row]:
        """Lock, check, migrate and read the file; returns every job row, oldest first.

        Raises `Refused` with one line when the file is in use, not ours, corrupt, or
        from a newer version; nothing is written to such a file.
        """
        path = Path(self.path)
        if path.is_dir():
            raise Refused(f"{self.path} is a folder; give --db a file name in it")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock(path)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # 0600 when new; else untouched
            os.close(fd)
        except OSError as exc:
            raise Refused(f"cannot open the database {self.path}: {exc.strerror or exc}") from exc
        try:
            return self._check_and_read(path)
        except sqlite3.OperationalError as exc:  # read-only, I/O error, full: not the file's fault
            self._release()
            raise Refused(f"cannot use the database {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            self._release()
            raise Refused(
                f"{self.path} is corrupt or not a taskrpc database ({exc}); "
                "move it away, or start with --db another path"
            ) from exc
        except BaseException:
            self._release()
            raise

    def _lock(self, path: Path) -> None:
        """Take the lock file beside the database, or refuse, naming the server that holds it."""
        lock_path = f"{path}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").split()
            os.close(fd)
            pid = holder[0] if holder else "?"
            url = holder[1] if len(holder) > 1 and holder[1] != _STARTING else None
            where = f"at {url}" if url else "still starting"
            connect = f"connect to it with --url {url}" if url else "connect to it with --url"
            raise Refused(
                f"{self.path} is in use by another taskrpc-server (pid {pid}, {where}); "
                f"{connect}, or start this one with --db another path or --db {MEMORY}"
            ) from None
        self._lock_fd = fd
        self.announce(_STARTING)

    def announce(self, url: str) -> None:
        """Write this process's pid and URL into the lock file, for a second server to name."""
        if self._lock_fd is None:
            return
        line = f"{os.getpid()} {url}\n".encode()
        os.pwrite(self._lock_fd, line, 0)  # then cut what is left of a longer line: a reader
        os.ftruncate(self._lock_fd, len(line))  # never finds the file empty

    def _check_and_read(self, path: Path) -> list[Row]:
        with path.open("rb") as file:
            header = file.read(len(_HEADER))
        if header and header != _HEADER:
            raise Refused(
                f"{self.path} is not a taskrpc database (not even SQLite); "
                "move it away, or start with --db another path"
            )
        connection = self.connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False
        )
        application_id = connection.execute(_READ_APPLICATION_ID).fetchone()[0]
        version = connection.execute(_READ_VERSION).fetchone()[0]
        new = not header
        if not new and application_id != APPLICATION_ID:
            raise Refused(
                f"{self.path} is an SQLite database of another program, not taskrpc's; "
                "start with --db another path"
            )
        if version > SCHEMA_VERSION:
            raise Refused(
                f"{self.path} was written by a newer taskrpc (schema {version}; this one "
                f"knows {SCHEMA_VERSION}); upgrade taskrpc, or start with --db another path"
            )
        if new:
            connection.execute(_INCREMENTAL_VACUUM)
            connection.execute(_MARK_OURS)
        self._max_parameters = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        connection.execute(_WAL)
        connection.execute(_SYNCHRONOUS)
        if version < SCHEMA_VERSION:
            self._migrate(connection, version)
        rows: list[Row] = connection.execute(_READ_JOBS).fetchall()
        last = connection.execute(_READ_LAST_SEQ).fetchone()
        self.next_seq = 0 if last is None else last[0] + 1
        return rows

    def _migrate(self, connection: sqlite3.Connection, version: int) -> None:
        """Bring the file from `version` to SCHEMA_VERSION in one transaction."""
        connection.execute(_BEGIN)
        try:
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute(_COMMIT)
        except BaseException:
            connection.execute(_ROLLBACK)
            raise
        if version:
            logger.info("migrated %s from schema %d to %d", self.path, version, SCHEMA_VERSION)

    # -- writing --------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread; results come back on the running loop."""
        self._loop = asyncio.get_running_loop()
        _writers.append(sys.getswitchinterval())
        sys.setswitchinterval(min(_writers[0], SWITCH_INTERVAL))
        self._thread = threading.Thread(target=self._run, name="taskrpc-journal", daemon=True)
        self._thread.start()

    def write(
        self,
        work: Callable[[Journal], Any],
        apply: Callable[[Any], Any] | None = None,
        undo: Callable[[], None] | None = None,
    ) -> asyncio.Future[Any]:
        """Run `work` in the next commit; once it is on disk, `apply(outcome)` runs on the
        loop (in commit order) and the future gets apply's value. When the commit fails,
        `undo()` runs and the future gets `StorageUnavailable`. Both happen even if the
        caller stopped waiting."""
        assert self._loop is not None, "start() first"  # pragma: no mutate (a programmer's message)
        future = self._loop.create_future()
        if self.stopped:
            if undo is not None:
                undo()
            future.set_exception(StorageUnavailable(STOPPING))
            return future
        self._hand(_Write(work, apply, future, undo))
        return future

    def join(self, kind: Shared[T], item: T) -> asyncio.Future[None]:
        """Add `item` to this turn's write of `kind` (made at the first call): once it is on
        disk, `kind.apply` runs for all its items and the future gets None; when the commit
        fails, `kind.undo` runs and the future gets `StorageUnavailable`. One write and one
        statement for a batch of submits, not one each (bench: journal batches)."""
        assert self._loop is not None, "start() first"  # pragma: no mutate (a programmer's message)
        future: asyncio.Future[None] = self._loop.create_future()
        if self.stopped:
            kind.undo([item])
            future.set_exception(StorageUnavailable(STOPPING))
            return future
        group = self._group
        if group is None or group.kind is not kind:
            group = _Group(kind, [], [])
            self._hand(group)
            self._group = group
        group.items.append(item)
        group.futures.append(future)
        return future

    def post(self, work: Callable[[Journal], Any]) -> None:
        """Run `work` in the next commit; nobody waits for it (a failure is only logged)."""
        if not self.stopped:
            self._hand(_Write(work, None, None))

    def _hand(self, write: _Write | _Group[Any]) -> None:
        """Queue a write for the thread at the end of this turn of the loop, with every other
        write this turn makes: a batch of requests then shares one commit (bench: journal
        batches), instead of the thread taking the first few and fsyncing them alone."""
        if not self._outbox:
            assert self._loop is not None
            self._loop.call_soon(self._flush)
        self._outbox.append(write)
        self._group = None  # a later join starts a new group: the order of writes holds

    def _flush(self) -> None:
        writes, self._outbox = self._outbox, []
        self._group = None
        self._writes.put(writes)

    def most_rows(self, columns: int) -> int:
        """Rows of `columns` parameters that one statement may carry: a power of two, at
        most MOST_ROWS (SQLite allows 999 parameters before 3.32, 32 766 since)."""
        fit = max(1, self._max_parameters // columns)
        return min(MOST_ROWS, 1 << (fit.bit_length() - 1))

    def limit_pages(self, extra: int | None) -> asyncio.Future[Any]:
        """Let the file grow by at most `extra` pages (None: no limit but SQLite's own).

        SQLite then fails a write as a full disk does: how the tests fill the disk.
        """

        def limit(journal: Journal) -> None:
            assert journal.connection is not None
            pages = journal.connection.execute(_PAGES).fetchone()[0]
            cap = _NO_PAGE_LIMIT if extra is None else pages + extra
            journal.connection.execute(f"PRAGMA max_page_count = {cap}").fetchall()

        return self.write(limit)

    async def stop(self) -> None:
        """Let the thread commit what it has, then close the file and release the lock."""
        if self._thread is not None and not self.stopped:
            self.stopped = True
            if self._outbox:
                self._flush()
            self._writes.put(None)
            await asyncio.to_thread(self._thread.join)
            sys.setswitchinterval(_writers.pop())  # the first one started puts Python's back
        await asyncio.to_thread(self._release)  # closing checkpoints the WAL: disk I/O

    def _release(self) -> None:
        """Close the file and let go of the lock (closing the descriptor releases it)."""
        self._close_connection()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _close_connection(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _run(self) -> None:
        """The writer thread: take every waiting write, commit them together, repeat."""
        while True:
            first = self._writes.get()
            if first is None:
                return
            batch = first
            while len(batch) < MAX_BATCH:
                try:
                    more = self._writes.get_nowait()
                except queue.Empty:
                    break
                if more is None:  # the stop, after these: they are committed first
                    self._commit(batch)
                    return
                _append(batch, more)
            self._commit(batch)

    def _commit(self, batch: list[_Write | _Group[Any]]) -> None:
        connection = self.connection
        assert connection is not None
        first_seq = self.next_seq
        try:
            connection.execute(_BEGIN)
            outcomes = [write.run(self) for write in batch]
            connection.execute(_COMMIT)
            self.commits += 1
        except Exception as exc:  # a full disk, or a bug: the thread must go on either way
            if not isinstance(exc, sqlite3.Error):
                logger.exception("a write to %s failed", self.path)
            with contextlib.suppress(sqlite3.Error):
                connection.execute(_ROLLBACK)
            self.next_seq = first_seq
            self._tell(self._failed, batch, exc)
            return
        self._tell(self._done, batch, outcomes)
        if self._deleted >= VACUUM_PAGES:
            self._vacuum(connection)

    def _vacuum(self, connection: sqlite3.Connection) -> None:
        """Give free pages back to the file system, so that retention shrinks the file."""
        self._deleted = 0
        try:
            if connection.execute(_FREE_PAGES).fetchone()[0] >= VACUUM_PAGES:
                # executescript runs it to the end: execute() steps a statement without
                # columns once, and this one frees one page a step (one page a vacuum)
                connection.executescript(_VACUUM)
        except sqlite3.Error as exc:
            logger.warning("incremental vacuum of %s failed: %s", self.path, exc)

    def deleted(self, rows: int) -> None:
        """For a write that deleted rows: count them towards the next vacuum."""
        self._deleted += rows

    def _tell(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(callback, *args)

    def _done(self, batch: list[_Write | _Group[Any]], outcomes: list[Any]) -> None:
        """On the loop: the batch is on disk; apply each write in order, then answer it."""
        if self._failing:
            self._failing = False
            logger.warning("the database %s is writable again", self.path)
        # strict=True states that each write has its outcome; no test can make it false, so
        # its mutants (strict dropped or False) are the same code (TESTING.md).
        for write, outcome in zip(batch, outcomes, strict=True):  # pragma: no mutate
            write.done(outcome)

    def _failed(self, batch: list[_Write | _Group[Any]], exc: Exception) -> None:
        """On the loop: nothing of the batch is on disk; each waiting writer gets -32009."""
        if not self._failing:
            self._failing = True
            logger.error("cannot write the database %s: %s", self.path, exc)
        error = StorageUnavailable(
            f"storage unavailable: the server cannot write its database ({exc}); "
            "nothing was changed, try again later"
        )
        for write in batch:
            write.fail(error)
