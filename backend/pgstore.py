"""Several servers on one PostgreSQL database: one shared queue, one job at a time, failover.

Every server keeps a mirror of the `taskrpc.jobs` table in memory, so reads (status, list,
positions) answer without a query, and `NOTIFY` (its payload: the ids of the changed jobs)
brings every mirror up to date within milliseconds of a commit. A change goes to the
database first and reaches the mirror, the waiters and the listeners once committed.

One server at a time is the *runner*: it holds a session-level advisory lock on a connection
of its own, which PostgreSQL frees when that session ends (a killed process, a lost network).
The others are *standbys* that try to take it once a second. The runner marks jobs running and
records their outcome on that same connection, in transactions that first check that the lock
is still held: a runner whose session is gone cannot record anything (fencing), and the job it
was running reruns on the next runner with `attempts` + 1.

Submits share one transaction when they arrive together (group commit) and take a
transaction-level advisory lock before they draw from the sequence, so sequence order is
commit order: the runner never sees job 7 before job 6 is visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from bisect import bisect_left, insort
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from backend import pgsql
from backend.jobs import JOB_TYPES
from backend.journal import Refused
from backend.protocol import (
    RUNNER,
    STANDBY,
    AlreadyFinished,
    InvalidParams,
    JobStatus,
    StorageUnavailable,
)
from backend.store import (
    Job,
    JobViews,
    Limits,
    Listener,
    check_room,
    check_submission,
    log_end,
    new_id,
    scaled_delay,
)
from backend.waiters import Waiters

logger = logging.getLogger("taskrpc.pgstore")
store_logger = logging.getLogger("taskrpc.store")  # the job lines, as every store logs them

T = TypeVar("T")

ELECTION_INTERVAL = 1.0  # seconds between a standby's tries; also the runner's heartbeat
RECONNECT_INTERVAL = 0.5  # seconds between tries to reach a lost database
CONNECT_TIMEOUT = 2.0  # seconds to open a connection before the database counts as lost
STARTUP_TIMEOUT = 30.0  # seconds to load the jobs at start before giving up
HEARTBEAT = 2.0  # seconds of silence on the notification connection before it is probed
READ_MAX = 500  # notified jobs read in one query
FORGOTTEN_KEPT = 10_000  # recently deleted ids remembered, so a late read cannot revive one

_TYPES = {t.code: t for t in JOB_TYPES}
_STATUSES = {s.value: s for s in JobStatus}


def is_postgres(url: str) -> bool:
    """True if `--db` names a PostgreSQL database rather than a file."""
    return url.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for logs and the start-up line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PgStore(JobViews):
    """Jobs in a PostgreSQL database shared by any number of servers. Implements `Store`."""

    def __init__(
        self,
        url: str,
        limits: Limits | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.url = url
        self.limits = Limits() if limits is None else limits
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        # The mirror: every job the database holds, as of the last notification.
        self._jobs: dict[str, Job] = {}
        self._versions: dict[str, int] = {}
        self._order: list[int] = []  # seqs of every job, sorted
        self._by_seq: dict[int, Job] = {}
        self._by_status: defaultdict[JobStatus, list[int]] = defaultdict(list)  # sorted seqs
        self._queued_by_delay: defaultdict[float, list[int]] = defaultdict(list)  # sorted seqs
        self._finished: OrderedDict[str, None] = OrderedDict()  # in the order they finished
        self._forgotten: OrderedDict[str, None] = OrderedDict()
        self._counts: Counter[JobStatus] = Counter()
        self._kept_chars = 0
        self._queued_chars = 0  # characters of text of the queued jobs, for max_queued_chars
        # Submits of this server on their way to a commit, not in the mirror yet (id: length
        # of text): the queue limits count them, so a batch cannot overshoot them.
        self._adding: dict[str, int] = {}
        self._adding_chars = 0
        self._running: Job | None = None
        # Waiters and listeners, as in the memory store.
        self._waiters = Waiters()
        self._listeners: list[Listener] = []
        self._forgetters: list[Listener] = []
        self._closed = False
        # The database side.
        self._pool: asyncpg.Pool | None = None
        self._available = False
        self._role = STANDBY
        self._runner: str | None = None  # the runner's name (its URL), as last seen
        self._is_runner = asyncio.Event()
        self._lock_connection: asyncpg.Connection | None = None
        self._lock_use = asyncio.Lock()  # one statement at a time on the runner's connection
        self._lock_lost = asyncio.Event()
        self._taken: Job | None = None  # the job this server's worker runs
        self._taken_as = self.name  # the runner name it was started under
        self._dirty: set[str] = set()  # ids notified and not yet read
        self._gone: set[str] = set()  # ids notified as deleted and not yet forgotten
        self._wake = asyncio.Event()  # a notification came, or the connection was lost
        self._loaded = asyncio.Event()
        self._quiet = False  # True while the mirror loads: no line per job
        self._tried = asyncio.Event()  # the first try for the lock was made: the role is known
        self._work = asyncio.Event()  # set when a job becomes queued: the runner looks again
        self._submits = pgsql.Group(self._query, pgsql.insert)
        self._cancels = pgsql.Group(self._query, pgsql.cancel)
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Create or pgsql.migrate the schema, load every job, and try once to become the runner."""
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=0,  # no connection kept open for nothing (nor re-opened noisily)
                max_size=4,
                timeout=CONNECT_TIMEOUT,
                command_timeout=pgsql.QUERY_TIMEOUT,
            )
            async with self._pool.acquire() as connection:
                await pgsql.migrate(connection)
        except Refused:
            await self._close_pool()
            raise
        except (*pgsql.DB_ERRORS, ValueError) as exc:
            await self._close_pool()
            raise Refused(f"cannot use the database {redact(self.url)}: {_reason(exc)}") from exc
        self._tasks = [
            asyncio.create_task(self._watch(), name="taskrpc-pg-watch"),
            asyncio.create_task(self._elect(), name="taskrpc-pg-elect"),
        ]
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                await self._loaded.wait()
        except TimeoutError:
            await self.shutdown()
            raise Refused(
                f"cannot use the database {redact(self.url)}: it did not let this server "
                f"read the jobs within {STARTUP_TIMEOUT:g} s"
            ) from None
        with contextlib.suppress(TimeoutError):  # a slow database: the line says standby
            async with asyncio.timeout(CONNECT_TIMEOUT + pgsql.QUERY_TIMEOUT):
                await self._tried.wait()

    @property
    def location(self) -> str:
        """Where jobs are kept, and this server's part, for a person."""
        return f"in {redact(self.url)}, this server is the {self._role}"

    def serving(self, url: str) -> None:
        """The server answers at `url`: the name it records on the jobs it runs."""
        self.name = url

    def close(self) -> None:
        """Stop accepting waits and wake every waiter (the server is shutting down)."""
        self._closed = True
        self._waiters.wake_all()

    async def shutdown(self) -> None:
        """After the worker stopped: put an interrupted job back, then let the lock go."""
        taken = self._taken
        if taken is not None and self._role == RUNNER:
            with contextlib.suppress(*pgsql.DB_ERRORS, pgsql.LostLock):
                await self._put_back(taken)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._submits.stop()
        self._cancels.stop()
        connection, self._lock_connection = self._lock_connection, None
        if connection is not None:
            with contextlib.suppress(*pgsql.DB_ERRORS):
                await connection.close(timeout=CONNECT_TIMEOUT)
        await self._close_pool()
        queued = self._counts[JobStatus.QUEUED]
        logger.info("stopped; %d queued jobs stay in the database for the other servers", queued)

    # -- the cluster ----------------------------------------------------------------

    @property
    def role(self) -> str:
        """ "runner" while this server holds the runner lock, else "standby"."""
        return self._role

    @property
    def runner(self) -> str | None:
        """The runner's name (the URL it serves), as seen within the last second or so."""
        return self._runner

    @property
    def available(self) -> bool:
        """False while the database cannot be reached: requests get -32009."""
        return self._available

    def cluster(self) -> dict[str, str | None]:
        """This server's role and the runner it sees, for /healthz."""
        return {"role": self._role, "runner": self._runner}

    # -- asking ---------------------------------------------------------------------

    async def find(self, job_id: object) -> Job:
        """The job with this id, read from the database if no notification brought it yet."""
        if isinstance(job_id, str) and job_id not in self._jobs and self._available:
            rows = await self._query(lambda c: c.fetch(pgsql.SELECT_IDS, [job_id]))
            for row in rows:
                self._apply(row)
        return self.get(job_id)

    def newest(self, status: JobStatus | None = None, before: int | None = None) -> Iterator[Job]:
        """Jobs newest first, optionally of one status and submitted before sequence `before`."""
        self._require_available()
        seqs = self._order if status is None else self._by_status[status]
        end = len(seqs) if before is None else bisect_left(seqs, before)
        for index in range(end - 1, -1, -1):
            if index < len(seqs):  # the mirror may change between two steps of a long walk
                job = self._by_seq.get(seqs[index])
                if job is not None and (status is None or job.status is status):
                    yield job

    # -- changing -------------------------------------------------------------------

    async def submit(self, type_key: object, data: object) -> Job:
        """Queue a job once it is committed; submits that arrive together share a commit."""
        job_type, text = check_submission(self.limits, type_key, data)
        self._require_available()
        check_room(
            self.limits,
            self.queued + len(self._adding),
            self._queued_chars + self._adding_chars,
            len(text),
        )
        delay = scaled_delay(job_type.delay, self.limits.time_scale)
        job_id = new_id()
        self._adding[job_id] = len(text)
        self._adding_chars += len(text)
        try:  # a client that leaves cancels only its wait: the commit goes on
            row = await self._submits.add((job_id, job_type.code, text, delay))
        finally:
            self._added(job_id)
        job = None if row is None else self._apply(row)
        if job is None:
            raise AssertionError("unreachable: a job just inserted is in the database")
        return job

    async def cancel(self, job_id: object) -> Job:
        """Cancel a queued or running job, whichever server runs it."""
        if not isinstance(job_id, str):
            raise InvalidParams(f"id must be a string, not {type(job_id).__name__}")
        self._require_available()
        row = await self._cancels.add((job_id,))
        cancelled = None if row is None else self._apply(row)
        if cancelled is not None:
            return cancelled
        job = await self.find(job_id)  # unknown: JobNotFound
        raise AlreadyFinished(
            f"job {job.id} is already {job.status}; only a queued or running job can be cancelled",
            {"status": job.status.value},
        )

    async def take(self) -> Job:
        """For the worker: once this server is the runner, mark the oldest queued job running."""
        while True:
            await self._is_runner.wait()
            self._work.clear()
            job = await self._take_once()
            if job is not None:
                return job
            with contextlib.suppress(TimeoutError):  # a new job, or a look every second anyway
                async with asyncio.timeout(ELECTION_INTERVAL):
                    await self._work.wait()

    async def finish(
        self, job: Job, status: JobStatus, *, result: str | None = None, error: str | None = None
    ) -> None:
        """For the worker: record the outcome, only while this server still holds the lock."""
        if self._taken is not job:
            return  # this run was stopped when the lock was lost: another runner reruns it
        forget = self._to_forget(len(result or ""))
        run = (job, self._taken_as, job.attempts)
        try:
            async with self._lock_use:
                connection = self._runner_connection()
                row = await pgsql.finish(connection, run, (status, result, error), forget)
        except (*pgsql.DB_ERRORS, pgsql.LostLock) as exc:
            self._demote(f"could not record job {job.id}: {_reason(exc)}")
            return
        finally:
            self._taken = None
        if row is not None:
            self._apply(row)
        for job_id in forget:
            self._forget(job_id)

    # -- the runner lock ------------------------------------------------------------

    async def _elect(self) -> None:
        """Hold a connection for the runner lock: try to take it each second, or check it."""
        while True:
            try:
                connection = await self._connect()
            except pgsql.DB_ERRORS:
                await asyncio.sleep(RECONNECT_INTERVAL)
                continue
            self._lock_lost.clear()
            connection.add_termination_listener(lambda _: self._lock_lost.set())
            self._lock_connection = connection
            announced = None  # the name this session shows to the other servers
            try:
                while not self._lock_lost.is_set():
                    async with self._lock_use:
                        if announced != self.name:
                            await connection.execute(pgsql.ANNOUNCE, pgsql.APPLICATION + self.name)
                            announced = self.name
                        if self._role == RUNNER:
                            await connection.execute("SELECT 1", timeout=pgsql.QUERY_TIMEOUT)
                            self._runner = self.name  # its URL, once the server listens
                        elif await pgsql.try_lock(connection):
                            self._promote()
                        else:
                            self._runner = await pgsql.runner_name(connection)
                    self._tried.set()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(ELECTION_INTERVAL):
                            await self._lock_lost.wait()
                self._demote("the database ended this server's session")
            except pgsql.DB_ERRORS as exc:
                self._demote(f"lost the database connection: {_reason(exc)}")
            finally:
                self._lock_connection = None
                connection.terminate()
            await asyncio.sleep(RECONNECT_INTERVAL)

    def _promote(self) -> None:
        self._role = RUNNER
        self._runner = self.name
        self._is_runner.set()
        logger.warning("this server (%s) is now the runner", self.name)

    def _demote(self, why: str) -> None:
        """Stop being the runner at once: the running job stops and another server reruns it."""
        if self._role == RUNNER:
            logger.warning("no longer the runner: %s", why)
        self._role = STANDBY
        self._runner = None
        self._is_runner.clear()
        connection = self._lock_connection
        if connection is not None and not connection.is_closed():
            connection.terminate()  # the lock goes with the session, now
        taken, self._taken = self._taken, None
        if taken is not None and taken.status is JobStatus.RUNNING:
            # It waits for a runner again: the worker stops it, the next runner reruns it.
            self._move(taken, JobStatus.QUEUED)
            taken.started_at = None
            self._notify(taken)

    def _runner_connection(self) -> asyncpg.Connection:
        connection = self._lock_connection
        if connection is None or self._role != RUNNER:
            raise pgsql.LostLock("this server is not the runner")
        return connection

    async def _take_once(self) -> Job | None:
        try:
            async with self._lock_use:
                self._taken_as = self.name
                row = await pgsql.take(
                    self._runner_connection(), self.name, self.limits.max_attempts
                )
        except (*pgsql.DB_ERRORS, pgsql.LostLock) as exc:
            self._demote(f"could not start the next job: {_reason(exc)}")
            return None
        job = None if row is None else self._apply(row)
        self._taken = job
        return job

    async def _put_back(self, job: Job) -> None:
        """Graceful stop: the job goes back to the head of the queue, and its next run counts
        as a rerun (`attempts` + 1), as after a crash."""
        async with self._lock_use:
            connection = self._runner_connection()
            await pgsql.put_back(connection, job.id)

    # -- keeping the mirror fresh ---------------------------------------------------

    async def _watch(self) -> None:
        """LISTEN on a connection of its own; read each notified job; reload after a loss."""
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await self._connect()
                connection.add_termination_listener(lambda _: self._wake.set())
                await connection.add_listener(pgsql.CHANNEL, self._on_notify)
                self._dirty.clear()
                self._gone.clear()
                self._reload(await connection.fetch(pgsql.SELECT_ALL))
                self._set_available(True)
                self._loaded.set()
                while not connection.is_closed():
                    await self._read_dirty(connection)
            except pgsql.DB_ERRORS as exc:
                if self._available:
                    logger.error("lost the database: %s", _reason(exc))
            finally:
                if connection is not None:
                    connection.terminate()
            if self._available:
                logger.error("lost the database: the connection was closed")
            self._set_available(False)
            await asyncio.sleep(RECONNECT_INTERVAL)

    async def _read_dirty(self, connection: pgsql.Connection) -> None:
        """Wait for notified ids and read their rows; probe the connection when all is quiet."""
        try:
            async with asyncio.timeout(HEARTBEAT):
                await self._wake.wait()
        except TimeoutError:
            await connection.execute("SELECT 1", timeout=pgsql.QUERY_TIMEOUT)
            return
        self._wake.clear()
        gone, self._gone = self._gone, set()
        for job_id in gone:
            self._forget(job_id)
        ids, self._dirty = list(self._dirty - gone), set()
        for start in range(0, len(ids), READ_MAX):  # a slow big read must not look like a loss
            chunk = ids[start : start + READ_MAX]
            rows = await connection.fetch(pgsql.SELECT_IDS, chunk, timeout=pgsql.QUERY_TIMEOUT)
            found = {row["id"] for row in rows}
            for row in rows:
                self._apply(row)
            for job_id in chunk:
                if job_id not in found:
                    self._forget(job_id)

    def _on_notify(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        """Note the changed jobs this server has not seen yet (`id:version`; 0: deleted)."""
        if not isinstance(payload, str):
            return
        for change in payload.split(","):
            job_id, _, version = change.partition(":")
            if version == "0":
                self._gone.add(job_id)
            elif not version.isdigit() or self._versions.get(job_id, 0) < int(version):
                self._dirty.add(job_id)
        if self._dirty or self._gone:
            self._wake.set()

    def _reload(self, rows: Sequence[asyncpg.Record]) -> None:
        """After (re)connecting: the mirror becomes exactly what the database holds."""
        present = {row["id"] for row in rows}
        for job_id in [job_id for job_id in self._jobs if job_id not in present]:
            self._forget(job_id)
        self._quiet = True  # a (re)load is not news: no log line per job
        try:
            for row in rows:
                self._apply(row)
        finally:
            self._quiet = False

    def _set_available(self, available: bool) -> None:
        if available and not self._available:
            again = self._loaded.is_set()
            logger.log(
                logging.WARNING if again else logging.INFO,
                "the database %s is reachable%s",
                redact(self.url),
                " again" if again else "",
            )
        self._available = available
        self._waiters.wake_all()  # lost: each wait answers -32009; back: each looks again

    # -- the mirror -----------------------------------------------------------------

    def _apply(self, row: asyncpg.Record) -> Job | None:
        """Bring the mirror's copy of one job up to the row's version; returns the job, or
        None for a job deleted since the row was read."""
        job_id: str = row["id"]
        job = self._jobs.get(job_id)
        if job is None:
            return None if job_id in self._forgotten else self._add(row)
        if row["version"] <= self._versions[job_id]:
            return job
        self._versions[job_id] = row["version"]
        attempts, job.attempts = job.attempts, row["attempts"]
        status = JobStatus(row["status"])
        job.started_at = row["started_at"]
        job.finished_at = row["finished_at"]
        job.result, job.error = row["result"], row["error"]
        if status is not job.status:
            was = job.status
            self._move(job, status)
            self._log_change(job, was)
        elif status is JobStatus.RUNNING and job.attempts != attempts:
            self._log_change(job, status)  # a new runner took the interrupted job over: a rerun
        self._notify(job)
        return job

    def _add(self, row: asyncpg.Record) -> Job:
        submitted: float = row["submitted_at"]
        started: float | None = row["started_at"]
        finished: float | None = row["finished_at"]
        job = Job(
            id=row["id"],
            type=_TYPES[row["type"]],
            data=row["data"],
            delay=row["delay"],
            seq=row["seq"],
            submitted_at=submitted,
            status=_STATUSES[row["status"]],
            started_at=started,
            finished_at=finished,
            result=row["result"],
            error=row["error"],
            attempts=row["attempts"],
        )
        self._added(job.id)  # its notification may come before its commit's answer
        self._jobs[job.id] = job
        self._versions[job.id] = row["version"]
        self._by_seq[job.seq] = job
        insort(self._order, job.seq)
        self._enter(job)
        self._log_change(job, None)
        self._notify(job)
        return job

    def _added(self, job_id: str) -> None:
        """A submit of this server is in the mirror now, or failed: the limits stop counting it."""
        self._adding_chars -= self._adding.pop(job_id, 0)

    def _log_change(self, job: Job, was: JobStatus | None) -> None:
        """As a single server logs a job (every server logs every job): one info line when
        it ends, the queued and running lines at debug."""
        if self._quiet or not store_logger.isEnabledFor(logging.INFO):
            return
        if job.status is JobStatus.QUEUED:
            if store_logger.isEnabledFor(logging.DEBUG):
                position = self.position(job) or 0
                store_logger.debug("job %s %s queued (%d ahead)", job.id, job.type.name, position)
        elif job.status is JobStatus.RUNNING:
            if store_logger.isEnabledFor(logging.DEBUG):
                waited = (job.started_at or job.submitted_at) - job.submitted_at
                store_logger.debug(
                    "job %s %s running (waited %.3f s, attempt %d)",
                    job.id,
                    job.type.name,
                    waited,
                    job.attempts,
                )
        else:
            log_end(job)  # the one info line of a job, as every store logs it

    def _move(self, job: Job, status: JobStatus) -> None:
        """Change the job's status and every index that depends on it."""
        # The head starting while nothing runs moves nobody: one queued job fewer ahead of
        # each, one running job more.
        starts = (
            job.status is JobStatus.QUEUED
            and status is JobStatus.RUNNING
            and self._running is None
            and self._by_status[JobStatus.QUEUED][:1] == [job.seq]
        )
        self._leave(job, moves=not starts)
        job.status = status
        self._enter(job, moves=not starts)

    def _enter(self, job: Job, *, moves: bool = True) -> None:
        """Index the job under its status; `moves`: wake the position watchers it moves."""
        insort(self._by_status[job.status], job.seq)
        self._counts[job.status] += 1
        if job.status is JobStatus.QUEUED:
            insort(self._queued_by_delay[job.delay], job.seq)
            self._queued_chars += len(job.data)
            self._work.set()
            if moves:
                self._waiters.wake_positions_behind(job.seq)  # one more ahead of those
        elif job.status is JobStatus.RUNNING:
            self._running = job
            if moves:
                self._waiters.wake_positions_behind(-1)  # a running job ahead of every one
        else:
            self._finished[job.id] = None
            self._kept_chars += len(job.result or "")

    def _leave(self, job: Job, *, moves: bool = True) -> None:
        """Take the job out of its status's indexes; `moves`: as in `_enter`."""
        _remove(self._by_status[job.status], job.seq)
        self._counts[job.status] -= 1
        if job.status is JobStatus.QUEUED:
            _remove(self._queued_by_delay[job.delay], job.seq)
            self._queued_chars -= len(job.data)
            if moves:
                self._waiters.wake_positions_behind(job.seq)  # one fewer ahead of those
        elif job.status is JobStatus.RUNNING:
            if self._running is job:
                self._running = None
                if moves:
                    self._waiters.wake_positions_behind(-1)  # every queued job moved up
        elif job.id in self._finished:
            del self._finished[job.id]
            self._kept_chars -= len(job.result or "")

    def _forget(self, job_id: str) -> None:
        job = self._jobs.pop(job_id, None)
        self._forgotten[job_id] = None
        if len(self._forgotten) > FORGOTTEN_KEPT:
            self._forgotten.popitem(last=False)
        if job is None:
            return
        self._leave(job)
        del self._versions[job_id], self._by_seq[job.seq]
        _remove(self._order, job.seq)
        self._call(self._forgetters, job)

    def _to_forget(self, new_chars: int) -> list[str]:
        """The oldest finished jobs the runner deletes as it records one more (retention)."""
        count = len(self._finished) + 1
        chars = self._kept_chars + new_chars
        forget: list[str] = []
        for job_id in self._finished:
            if count <= self.limits.max_finished and chars <= self.limits.max_kept_chars:
                break
            if count == 1:
                break
            forget.append(job_id)
            count -= 1
            chars -= len(self._jobs[job_id].result or "")
        return forget

    def _outlook(self, job: Job) -> tuple[int | None, float | None]:
        """(position, estimated finish): both for a queued job, the finish for a running one."""
        if job.status is JobStatus.QUEUED:
            count, delay = 0, 0.0
            for job_delay, seqs in self._queued_by_delay.items():
                ahead = bisect_left(seqs, job.seq)
                count += ahead
                delay += ahead * job_delay
            running = self._running
            if running is not None and running.started_at is not None:
                count += 1
                delay += max(0.0, running.started_at + running.delay - time.time())
            return count, time.time() + delay + job.delay
        if job.status is JobStatus.RUNNING and job.started_at is not None:
            return None, job.started_at + job.delay
        return None, None

    # -- the database ---------------------------------------------------------------

    def _check_available(self) -> None:
        """A read or a wait on a lost database answers -32009 rather than a stale job."""
        self._require_available()

    def _require_available(self) -> None:
        if not self._available:
            raise StorageUnavailable(
                f"storage unavailable: the database {redact(self.url)} cannot be reached; "
                "try again shortly"
            )

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self.url, timeout=CONNECT_TIMEOUT, command_timeout=pgsql.QUERY_TIMEOUT
        )

    async def _query(self, run: Callable[[pgsql.Connection], Awaitable[T]]) -> T:
        """Run `run` on a pooled connection; a lost database becomes -32009."""
        if self._pool is None:
            self._require_available()
            raise AssertionError("unreachable: no pool while available")
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as connection:
                return await run(connection)
        except pgsql.DB_ERRORS as exc:
            raise StorageUnavailable(
                f"storage unavailable: the database {redact(self.url)} failed: {_reason(exc)}; "
                "try again shortly"
            ) from exc

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(*pgsql.DB_ERRORS):
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await pool.close()
            pool.terminate()


def _remove(seqs: list[int], seq: int) -> None:
    index = bisect_left(seqs, seq)
    if index < len(seqs) and seqs[index] == seq:
        del seqs[index]


def _reason(exc: BaseException) -> str:
    """One line saying why the database failed, without a traceback."""
    if isinstance(exc, TimeoutError):
        return "it did not answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is PostgreSQL running there, on that port?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
