"""The default store: every job in memory, and every change in a SQLite journal first.

Reads answer from memory, as in `MemoryStore`; the journal is read only at start. A
change is written to the journal, and only once its commit is on disk is it applied in
memory and shown to anyone (methods, waiters, the WebSocket): no client ever sees what a
crash could take back. Changes are applied in commit order by the journal's callback, so
memory always equals the file.

At start the queue comes back as it was: the same ids, texts, times and order. A job that
was running when the server stopped goes back to the head of the queue and runs again
(`attempts` counts its runs), unless its runs were interrupted `max_attempts` times.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from backend.jobs import JOB_TYPES, JobType
from backend.journal import Journal, Refused, Row, Shared
from backend.protocol import JobStatus
from backend.store import Job, Limits, MemoryStore, check_cancellable, id_key

logger = logging.getLogger("taskrpc.store")

PRESTART_SCAN = 64  # queue entries `finish` looks through for the next job to start with it

# New jobs, a power of two of rows at a time: the rows past the jobs are NULL and left out,
# so one statement (one of a few texts, each prepared once) inserts a whole batch.
_INSERT = (
    "INSERT INTO jobs (seq, id, type, data, delay, status, submitted_at, attempts) "
    "SELECT column1, column2, column3, column4, column5, 'queued', column6, 0 "
    "FROM (VALUES {rows}) WHERE column1 IS NOT NULL"
)
_INSERT_COLUMNS = 6  # parameters of one row
_CANCEL = (
    "UPDATE jobs SET status = 'cancelled', finished_at = ? "
    "WHERE seq = ? AND status IN ('queued', 'running')"
)
_START = (
    "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1 "
    "WHERE seq = ? AND status = 'queued'"
)
_FINISH = (
    "UPDATE jobs SET status = ?, finished_at = ?, result = ?, error = ? "
    "WHERE seq = ? AND status = 'running'"
)
_REQUEUE = "UPDATE jobs SET status = 'queued', started_at = NULL WHERE status = 'running'"
_FAIL = (
    "UPDATE jobs SET status = 'failed', finished_at = ?, started_at = NULL, error = ? WHERE seq = ?"
)
_DELETE = "DELETE FROM jobs WHERE seq = ?"

Work = Callable[[Journal], Any]
_STATUSES = {status.value: status for status in JobStatus}


class JournaledStore(MemoryStore):
    """Jobs in memory, kept in a SQLite file: a restart resumes the queue. Implements `Store`."""

    def __init__(
        self, path: str, limits: Limits | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(limits, clock=clock)
        self.path = path
        self._journal = Journal(path)
        self._inserts = Shared(_insert_jobs, self._added, self._lost)

    @property
    def journal(self) -> Journal:
        """The file behind this store."""
        return self._journal

    @property
    def location(self) -> str:
        """Where jobs are kept, for a person."""
        return f"in {self.path}"

    # -- changing -------------------------------------------------------------------

    async def submit(self, type_key: object, data: object) -> Job:
        """Queue a job once it is on disk, or raise the error that says what is wrong with it.

        The submits of one turn of the loop (a batch, or calls that arrived together) are
        one write of a few multi-row INSERTs: the writer thread takes the interpreter lock
        once per statement, not once per job (bench: journal batches)."""
        job = self._new_job(type_key, data)
        # Counted against the queue's limits from now on: a batch cannot overshoot them.
        self._adding += 1
        self._adding_chars += len(job.data)
        await self._journal.join(self._inserts, job)
        return job

    def _added(self, jobs: list[Job], seqs: Sequence[int]) -> None:
        """The jobs are on disk with these seqs: queue them."""
        # strict=True states an invariant (a seq per job): mutants without it are the same code.
        for seq, job in zip(seqs, jobs, strict=True):  # pragma: no mutate
            self._adding -= 1
            self._adding_chars -= len(job.data)
            self._add(job, seq)

    def _lost(self, jobs: list[Job]) -> None:
        """The jobs never reached the disk: they no longer count against the limits."""
        self._adding -= len(jobs)
        self._adding_chars -= sum(len(job.data) for job in jobs)

    async def cancel(self, job_id: object) -> Job:
        """Cancel a queued or running job once the cancel is on disk."""
        job = self.get(job_id)
        check_cancellable(job)
        at = self._clock()

        def apply(rows: int) -> None:
            if rows:
                self._cancel(job, at)

        await self._journal.write(_statement(_CANCEL, (at, job.seq)), apply)
        if job.status is not JobStatus.CANCELLED:  # it finished while the cancel was written
            check_cancellable(job)
        return job

    async def take(self) -> Job:
        """For the worker: the oldest queued job, marked running once that is on disk."""
        while True:
            running = self._running
            if running is not None and running.status is JobStatus.RUNNING:
                return running  # started in the same commit as the previous job's end
            job = await self._head()
            if await self._start_head(job):
                return job
            # A cancel was committed first: the next turn passes it.

    async def _start_head(self, job: Job) -> bool:
        """Mark the head of the queue running; False if a cancel was committed first."""
        at = self._clock()

        def apply(rows: int) -> None:
            if rows:
                self._begin(job, at)

        await self._journal.write(_statement(_START, (at, job.seq)), apply)
        return job.status is JobStatus.RUNNING

    async def finish(
        self, job: Job, status: JobStatus, *, result: str | None = None, error: str | None = None
    ) -> None:
        """For the worker: record how the job ended, and start the next one in the same commit.

        One commit instead of two between two jobs halves the worker's wait on the disk.
        """
        at = self._clock()
        after = self._next_queued()
        finish = (status.value, at, result, error, job.seq)

        def work(journal: Journal) -> tuple[int, int]:
            ended = _execute(journal, _FINISH, finish)
            started = 0 if after is None else _execute(journal, _START, (at, after.seq))
            return ended, started

        def apply(rows: tuple[int, int]) -> None:
            ended, started = rows
            if ended:
                self._finish(job, status, at, result=result, error=error)
            if started and after is not None:
                while self._pending[0] is not after:
                    self._drop_head()  # cancelled before it
                self._begin(after, at)

        await self._journal.write(work, apply)

    def _next_queued(self) -> Job | None:
        """The next job to run, if it is near the head of the queue."""
        for n, job in enumerate(self._pending):
            if job.status is JobStatus.QUEUED:
                return job
            if n >= PRESTART_SCAN:
                break
        return None

    def _forget(self, job: Job) -> None:
        """A finished job dropped by the retention limits leaves the file too."""
        super()._forget(job)
        seq = job.seq

        def delete(journal: Journal) -> None:
            journal.deleted(_execute(journal, _DELETE, (seq,)))

        self._journal.post(delete)

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Lock and read the file, and resume: queued jobs back in order, interrupted ones
        at the head (or failed after max_attempts interruptions). Raises `Refused`."""
        rows = await asyncio.to_thread(self._journal.open)
        self._journal.start()
        try:
            fixes = self._load(rows)
            if fixes:
                await self._journal.write(_all(fixes))
        except BaseException:
            await self._journal.stop()
            raise
        self._next_seq = self._journal.next_seq
        if rows:
            logger.info(
                "resumed from %s: %d queued, %d finished kept",
                self.path,
                self.queued,
                len(self._finished),
            )

    def serving(self, url: str) -> None:
        """Name this server in the lock file, so that a second one can point to it."""
        self._journal.announce(url)

    def _report_stop(self) -> None:
        """Said in `shutdown`, once the running job is back in the queue."""

    async def shutdown(self) -> None:
        """Put the running job back at the head of the queue, then close the file."""
        interrupted = 0
        running = self._running
        if running is not None and running.status is JobStatus.RUNNING:
            interrupted = 1  # in the file it stays running if this write fails: rerun anyway
            try:
                await self._journal.write(_statement(_REQUEUE, ()))
            except Exception as exc:
                logger.warning("could not put job %s back in the queue: %s", running.id, exc)
        queued = self.queued
        if queued or interrupted:
            noun = "job" if interrupted == 1 else "jobs"  # "3 queued and 1 interrupted job"
            logger.warning(
                "%d queued and %d interrupted %s will resume at the next start",
                queued,
                interrupted,
                noun,
            )
        await self._journal.stop()

    # -- loading --------------------------------------------------------------------

    def _load(self, rows: list[Row]) -> list[Work]:
        """Rebuild memory from the rows; returns the writes that resuming needs."""
        fixes: list[Work] = []
        finished: list[Job] = []
        now = self._clock()
        job_types = {job_type.name: job_type for job_type in JOB_TYPES}
        for row in rows:
            job = self._job(row, job_types)
            if job.status is JobStatus.RUNNING or (
                job.status is JobStatus.QUEUED and job.attempts
            ):  # its run was interrupted (a crash, or a stop that put it back)
                job.status, job.started_at = JobStatus.QUEUED, None
                if job.attempts >= self.limits.max_attempts:
                    job.status, job.error = JobStatus.FAILED, f"interrupted {job.attempts} times"
                    job.finished_at = now
                    fixes.append(_statement(_FAIL, (now, job.error, job.seq)))
                elif row[5] == JobStatus.RUNNING:
                    fixes.append(_statement(_REQUEUE, ()))
            self._by_key[job.key] = job
            self._counts[job.status] += 1
            if job.status is JobStatus.QUEUED:
                self._queued_chars += len(job.data)
                self._enqueue(job)
            else:
                self._by_status[job.status].append(job)
                finished.append(job)
        finished.sort(key=lambda job: (job.finished_at or 0.0, job.seq))
        for job in finished:
            self._finished.append(job.key)
            self._kept_chars += len(job.result or "")
        self._trim()  # the limits may be lower than the last run's
        if self._pending:
            self._work.set()
        return fixes

    def _job(self, row: Row, job_types: dict[str, JobType]) -> Job:
        """The job of one row. Positional arguments and dict lookups: 110 000 rows are read
        in the restart budget (bench row "journal: restart")."""
        seq, job_id, type_name, data, delay, status, submitted, started, finished = row[:9]
        job_type = job_types.get(type_name)
        if job_type is None:
            raise Refused(
                f"{self.path} holds job {job_id} of type {type_name!r}, which this version of "
                "taskrpc does not know; upgrade taskrpc, or start with --db another path"
            )
        return Job(
            id_key(job_id),  # as the memory store keys the jobs it makes
            job_type,
            data,
            delay,
            seq,
            submitted,
            _STATUSES[status],
            started,
            finished,
            row[9],
            row[10],
            row[11],
        )


def _insert_jobs(journal: Journal, jobs: list[Job]) -> range:
    """In the writer thread: insert new jobs with the next seqs; returns their seqs.

    One statement per `journal.most_rows` jobs: the writer thread gives the interpreter
    lock back twice for each statement it runs, and each time waits to get it back from a
    busy loop (bench: journal batches)."""
    connection = journal.connection
    assert connection is not None
    first = journal.next_seq
    seqs = range(first, first + len(jobs))
    most = journal.most_rows(_INSERT_COLUMNS)
    for start in range(0, len(jobs), most):
        chunk = jobs[start : start + most]
        rows = 1 << (len(chunk) - 1).bit_length()  # the power of two at or above
        parameters: list[object] = []
        # More seqs than the chunk's jobs: strict=False, the default, said for ruff (B905).
        for seq, job in zip(seqs[start:], chunk, strict=False):  # pragma: no mutate
            parameters += (seq, job.id, job.type.name, job.data, job.delay, job.submitted_at)
        parameters += (None,) * ((rows - len(chunk)) * _INSERT_COLUMNS)
        connection.execute(_insert_statement(rows), parameters)
    journal.next_seq = first + len(jobs)
    return seqs


@functools.cache
def _insert_statement(rows: int) -> str:
    row = "(" + ", ".join("?" * _INSERT_COLUMNS) + ")"
    return _INSERT.format(rows=", ".join([row] * rows))


def _execute(journal: Journal, sql: str, parameters: tuple[Any, ...]) -> int:
    """Run one statement in the writer thread; returns the rows it changed."""
    assert journal.connection is not None
    return journal.connection.execute(sql, parameters).rowcount


def _statement(sql: str, parameters: tuple[Any, ...]) -> Work:
    return lambda journal: _execute(journal, sql, parameters)


def _all(works: list[Work]) -> Work:
    return lambda journal: [work(journal) for work in works]
