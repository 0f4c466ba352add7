"""The SQLite journal: one file that keeps every job, written by one thread.

`Journal` owns the file: it checks and migrates it at start, holds the lock that keeps a
second server off it, and runs every write on one writer thread. Writes that arrive
while a commit is on disk wait and then share the next commit (group commit), so a
burst of submits costs a few fsyncs, not one each. The event loop never touches the
disk: it hands the thread a small function and gets the outcome back, in commit order,
through one callback per commit.

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
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.protocol import StorageUnavailable

logger = logging.getLogger("taskrpc.journal")

MEMORY = ":memory:"  # the --db value that keeps jobs in memory only
APPLICATION_ID = 0x7461736B  # "task": marks a SQLite file as ours (PRAGMA application_id)
SCHEMA_VERSION = 2  # PRAGMA user_version of the files this version writes
MAX_BATCH = 4096  # writes in one commit at most
VACUUM_PAGES = 256  # free pages that trigger an incremental vacuum
_HEADER = b"SQLite format 3\x00"
_NO_PAGE_LIMIT = 0xFFFFFFFE  # SQLite's largest max_page_count
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
}
COLUMNS = (
    "seq, id, type, data, delay, status, submitted_at, started_at, finished_at, result, error, "
    "attempts"
)
Row = tuple[int, str, str, str, float, str, float, float | None, float | None, str | None,
            str | None, int]  # fmt: skip


class Refused(Exception):
    """The server must not start on this database; the message is one line for a person."""


def default_path(environ: Mapping[str, str]) -> Path:
    """`$XDG_STATE_HOME/taskrpc/taskrpc.db`, else `~/.local/state/taskrpc/taskrpc.db`."""
    state = environ.get("XDG_STATE_HOME") or ""
    if not os.path.isabs(state):  # the XDG rule: a relative value is ignored
        home = environ.get("HOME") or str(Path.home())
        state = os.path.join(home, ".local", "state")
    return Path(state) / "taskrpc" / "taskrpc.db"


def resolve(db: str | None, environ: Mapping[str, str]) -> str:
    """The database a server uses: `db` as given, or the default path when it is None."""
    return str(default_path(environ)) if db is None else db


@dataclass(slots=True)
class _Write:
    """One write for the thread: `work` runs in the transaction, `apply` on the loop after
    it is on disk, `undo` on the loop if it never will be."""

    work: Callable[[Journal], Any]
    apply: Callable[[Any], Any] | None
    future: asyncio.Future[Any] | None
    undo: Callable[[], None] | None = None


class Journal:
    """One taskrpc SQLite file, locked for this process, with its writer thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.next_seq = 0  # the seq of the next job; owned by the writer thread once started
        self.connection: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writes: queue.SimpleQueue[list[_Write] | None] = queue.SimpleQueue()
        self._outbox: list[_Write] = []  # writes made in this turn of the loop, not yet handed
        self._thread: threading.Thread | None = None
        self._failing = False  # the last commit failed: say so once, and once when it works
        self._deleted = 0  # rows deleted since the last look at the free pages
        self.commits = 0  # transactions committed so far (how well writes are grouped)
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
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"{os.getpid()} {url}\n".encode(), 0)

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
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
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
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        if version < SCHEMA_VERSION:
            self._migrate(connection, version)
        rows: list[Row] = connection.execute(f"SELECT {COLUMNS} FROM jobs ORDER BY seq").fetchall()
        last = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").fetchone()
        self.next_seq = 0 if last is None else last[0] + 1
        return rows

    def _migrate(self, connection: sqlite3.Connection, version: int) -> None:
        """Bring the file from `version` to SCHEMA_VERSION in one transaction."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        if version:
            logger.info("migrated %s from schema %d to %d", self.path, version, SCHEMA_VERSION)

    # -- writing --------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread; results come back on the running loop."""
        self._loop = asyncio.get_running_loop()
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
        assert self._loop is not None, "start() first"
        future = self._loop.create_future()
        if self.stopped:
            if undo is not None:
                undo()
            future.set_exception(StorageUnavailable("storage unavailable: the server is stopping"))
            return future
        self._hand(_Write(work, apply, future, undo))
        return future

    def post(self, work: Callable[[Journal], Any]) -> None:
        """Run `work` in the next commit; nobody waits for it (a failure is only logged)."""
        if not self.stopped:
            self._hand(_Write(work, None, None))

    def _hand(self, write: _Write) -> None:
        """Queue a write for the thread at the end of this turn of the loop, with every other
        write this turn makes: a batch of requests then shares one commit (bench: journal
        batches), instead of the thread taking the first few and fsyncing them alone."""
        if not self._outbox:
            assert self._loop is not None
            self._loop.call_soon(self._flush)
        self._outbox.append(write)

    def _flush(self) -> None:
        writes, self._outbox = self._outbox, []
        self._writes.put(writes)

    def limit_pages(self, extra: int | None) -> asyncio.Future[Any]:
        """Let the file grow by at most `extra` pages (None: no limit but SQLite's own).

        SQLite then fails a write as a full disk does: how the tests fill the disk.
        """

        def limit(journal: Journal) -> None:
            assert journal.connection is not None
            pages = journal.connection.execute("PRAGMA page_count").fetchone()[0]
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
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._writes.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.extend(more)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Write]) -> None:
        connection = self.connection
        assert connection is not None
        first_seq = self.next_seq
        try:
            connection.execute("BEGIN IMMEDIATE")
            outcomes = [write.work(self) for write in batch]
            connection.execute("COMMIT")
            self.commits += 1
        except Exception as exc:  # a full disk, or a bug: the thread must go on either way
            if not isinstance(exc, sqlite3.Error):
                logger.exception("a write to %s failed", self.path)
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
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
            if connection.execute("PRAGMA freelist_count").fetchone()[0] >= VACUUM_PAGES:
                connection.execute("PRAGMA incremental_vacuum").fetchall()
        except sqlite3.Error as exc:
            logger.warning("incremental vacuum of %s failed: %s", self.path, exc)

    def deleted(self, rows: int) -> None:
        """For a write that deleted rows: count them towards the next vacuum."""
        self._deleted += rows

    def _tell(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(callback, *args)

    def _done(self, batch: list[_Write], outcomes: list[Any]) -> None:
        """On the loop: the batch is on disk; apply each write in order, then answer it."""
        if self._failing:
            self._failing = False
            logger.warning("the database %s is writable again", self.path)
        for write, outcome in zip(batch, outcomes, strict=True):
            try:
                value = outcome if write.apply is None else write.apply(outcome)
            except Exception as exc:
                logger.exception("applying a committed change failed")
                if write.future is not None and not write.future.done():
                    write.future.set_exception(exc)
                continue
            if write.future is not None and not write.future.done():
                write.future.set_result(value)

    def _failed(self, batch: list[_Write], exc: Exception) -> None:
        """On the loop: nothing of the batch is on disk; each waiting writer gets -32009."""
        if not self._failing:
            self._failing = True
            logger.error("cannot write the database %s: %s", self.path, exc)
        error = StorageUnavailable(
            f"storage unavailable: the server cannot write its database ({exc}); "
            "nothing was changed, try again later"
        )
        for write in batch:
            if write.undo is not None:
                write.undo()
            if write.future is not None and not write.future.done():
                write.future.set_exception(error)
