"""The job store: every job, the FIFO queue, positions, retention and change events.

A store answers questions about jobs (mostly in O(1) or a few bisects, so that status
calls stay fast with 100 000 jobs waiting) and records every change to them. The one
worker (backend/worker.py) is the only caller of `take` and `finish`; the methods call
`submit` and `cancel`. Those four changes are `async` and return only once the change
is kept as durably as the store keeps anything, so a store that writes to disk or to a
shared database fits the same interface (`Store`) as the memory-only one here.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import heapq
import logging
import math
import secrets
import time
from bisect import bisect_left, insort
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, overload

from backend.jobs import ALLOWED, JobType, graphemes, lookup
from backend.protocol import (
    PREVIEW_CHARS,
    AlreadyFinished,
    InvalidParams,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobObject,
    JobStatus,
    JobSummary,
    QueueFull,
    ResultNotReady,
    ServerBusy,
)
from backend.waiters import Waiters

logger = logging.getLogger("taskrpc.store")

JobKey = int | str
"""A job's id as a store indexes it: a generated id as the int `new_key` made (48 bytes,
where its 16 letters take 80), any other id as the text it is."""

_LETTERS = b"abcdefghijklmnopqrstuvwxyz234567"
# Byte -> 5 bits; 256 is a multiple of 32, so each of the 32 values is equally likely.
_FIVE_BITS = bytes(range(32)) * 8
_TO_LETTER = _LETTERS * 8  # 0..31 -> its letter
_FROM_LETTER = bytes(_LETTERS.find(byte) & 0xFF for byte in range(256))  # not a letter: 0xFF
_BEFORE_EVERY_SEQ = -1  # seqs start at 0: every queued job is behind this one


def new_key() -> int:
    """A random id's key: 16 values of 5 bits (80 bits), one to a byte, read as one int."""
    return int.from_bytes(secrets.token_bytes(16).translate(_FIVE_BITS))  # big-endian, the default


def id_text(key: JobKey) -> str:
    """The id a key stands for: 16 letters and digits 2-7 for a generated id (~0.2 µs)."""
    if isinstance(key, int):
        return key.to_bytes(16).translate(_TO_LETTER).decode()  # ASCII letters and digits
    return key


def id_key(job_id: str) -> JobKey:
    """The key of an id: the int of a generated id's form, any other text as it is (so no
    text that is not exactly an id we made can find a job that has one)."""
    if len(job_id) == 16 and job_id.isascii():
        values = job_id.encode().translate(_FROM_LETTER)  # ASCII: UTF-8 is the same bytes
        if 0xFF not in values:
            return int.from_bytes(values)  # big-endian (the default), as id_text writes it
    return job_id


def new_id() -> str:
    """A random id: 80 bits, lowercase letters and digits 2-7, safe to paste in a shell."""
    return id_text(new_key())


@overload
def iso(timestamp: float) -> str: ...
@overload
def iso(timestamp: float | None) -> str | None: ...
def iso(timestamp: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds, e.g. `2026-11-27T21:40:09.123Z`."""
    if timestamp is None:
        return None
    fraction, whole = math.modf(timestamp)
    micros = round(fraction * 1_000_000)  # as datetime.fromtimestamp rounds, then cut to ms
    return _second(int(whole) + micros // 1_000_000) + _MILLIS[micros % 1_000_000 // 1000]


_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]  # a table, not a format: a third of `iso`


@functools.lru_cache(maxsize=1024)
def _second(epoch_second: int) -> str:
    """`2026-11-27T21:40:09`; cached, as the stamps of one burst share a few seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_second))


@functools.lru_cache(maxsize=64)
def scaled_delay(delay: float, time_scale: float) -> float:
    """A type's delay after the time scale, rounded (no 0.7000000000000001); cached, so the
    jobs of a type share one float object, not 24 B each (bench: "memory per queued job")."""
    return round(delay * time_scale, 6)


class Job:
    """One submitted job and everything that happened to it.

    A queued job holds only what it was submitted with; what a run records (its status
    once it leaves the queue, its times, result, error and attempts) lives in a `Run` made
    when the first of them is set, and its type and delay in a `Kind` that every job of
    that type shares: 6 slots, 80 bytes of object for a queued job (8 slots took 96, as
    objects are allocated in 16-byte steps; bench row "bytes per queued job"). What is
    sent is kept in its most compact exact form and formatted when sent: the id as an
    int (`JobKey`: 48 B, not 80), an ASCII text as bytes (16 B less than a str of it),
    times as numbers (a cached ISO string cost 80 B).
    """

    __slots__ = ("_kind", "_run", "_text", "key", "seq", "submitted_at")

    def __init__(
        self,
        id: JobKey,  # noqa: A002 - the wire's name; or the key of a generated id (`new_key`)
        type: JobType,  # noqa: A002 - the wire's name
        data: str,
        delay: float,  # seconds this job sleeps, after the time scale
        seq: int,  # submission order, 0, 1, 2…
        submitted_at: float,
        status: JobStatus = JobStatus.QUEUED,
        started_at: float | None = None,
        finished_at: float | None = None,
        result: str | None = None,
        error: str | None = None,
        attempts: int = 0,  # runs started: 1 for a first run, more when a restart interrupted it
    ) -> None:
        self.key, self.seq, self.submitted_at = id, seq, submitted_at
        self._text = data.encode() if data.isascii() else data  # ASCII: UTF-8 is the same bytes
        self._kind = kind(type, delay)
        self._run = (
            None
            if status is JobStatus.QUEUED and not attempts  # never ran: nothing of a run to hold
            else Run(status, started_at, finished_at, result, error, attempts)
        )

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, type={self.type.name!r}, status={self.status.value!r})"

    @property
    def id(self) -> str:
        """The id, as it goes on the wire (formatted from the key each time: ~0.2 µs)."""
        return id_text(self.key)

    @property
    def data(self) -> str:
        """The text to transform (a new str each time when kept as bytes)."""
        text = self._text
        return text.decode() if isinstance(text, bytes) else text

    @property
    def length(self) -> int:
        """`len(job.data)`, without making the str."""
        return len(self._text)

    def _ran(self) -> Run:
        run = self._run
        if run is None:
            run = self._run = Run()
        return run

    @property
    def type(self) -> JobType:
        return self._kind.type

    @type.setter  # noqa: A003 - the wire's name
    def type(self, value: JobType) -> None:
        self._kind = kind(value, self._kind.delay)

    @property
    def delay(self) -> float:
        """Seconds this job sleeps, after the time scale."""
        return self._kind.delay

    @delay.setter
    def delay(self, value: float) -> None:
        self._kind = kind(self._kind.type, value)

    @property
    def status(self) -> JobStatus:
        run = self._run
        return JobStatus.QUEUED if run is None else run.status

    @status.setter
    def status(self, value: JobStatus) -> None:
        if self._run is not None or value is not JobStatus.QUEUED:
            self._ran().status = value

    @property
    def started_at(self) -> float | None:
        return None if self._run is None else self._run.started_at

    @started_at.setter
    def started_at(self, value: float | None) -> None:
        self._ran().started_at = value

    @property
    def finished_at(self) -> float | None:
        return None if self._run is None else self._run.finished_at

    @finished_at.setter
    def finished_at(self, value: float | None) -> None:
        self._ran().finished_at = value

    @property
    def result(self) -> str | None:
        return None if self._run is None else self._run.result

    @result.setter
    def result(self, value: str | None) -> None:
        self._ran().result = value

    @property
    def error(self) -> str | None:
        return None if self._run is None else self._run.error

    @error.setter
    def error(self, value: str | None) -> None:
        self._ran().error = value

    @property
    def attempts(self) -> int:
        return 0 if self._run is None else self._run.attempts

    @attempts.setter
    def attempts(self, value: int) -> None:
        self._ran().attempts = value


@dataclass(slots=True)
class Run:
    """What happened to a job since it was queued (`Job` makes one when the first is set):
    a job without one is queued and was never started."""

    status: JobStatus = JobStatus.QUEUED
    started_at: float | None = None
    finished_at: float | None = None
    result: str | None = None
    error: str | None = None
    attempts: int = 0


_NOT_STARTED = Run()  # what a queued job that never started reads as; never changed


@dataclass(frozen=True, slots=True)
class Kind:
    """A job's type and its delay after the time scale: shared by the jobs that have both."""

    type: JobType
    delay: float


NOT_YET = -1  # the seq of a job not yet added to a store (`_add` gives it)
_KINDS: dict[tuple[int, float], Kind] = {}
_MOST_KINDS = 1024  # far more than types x time scales in use; past it, the cache starts over


def kind(job_type: JobType, delay: float) -> Kind:
    """The one `Kind` of this type and delay (a store has one per type; a journal read back
    after a change of time scale, a few more): one object, not 8 bytes per job.

    Keyed by the type's identity: hashing a `JobType` (a frozen dataclass of six fields)
    cost as much as the rest of a `Job`'s construction. Each `Kind` holds its type, so an
    id in the cache never belongs to another object.
    """
    key = (id(job_type), delay)
    found = _KINDS.get(key)
    if found is None:
        if len(_KINDS) >= _MOST_KINDS:
            _KINDS.clear()
        found = _KINDS[key] = Kind(job_type, delay)
    return found


Listener = Callable[[Job], None]


@dataclass(frozen=True, slots=True)
class Limits:
    """What a store needs to know of the settings (the defaults are the settings' defaults)."""

    time_scale: float = 1.0  # multiplies every job type's delay
    max_text_chars: int = 10_000  # longest job text, in code points
    max_result_chars: int = 1_000_000  # longest result, checked at submit
    max_queued: int = 100_000  # most jobs waiting at once
    max_finished: int = 10_000  # finished jobs kept; the oldest is forgotten first
    max_kept_chars: int = 100_000_000  # characters of finished results kept in all
    max_waiters: int = 10_000  # `wait` calls in progress at once
    max_queued_chars: int = 100_000_000  # characters of text of all queued jobs together
    max_attempts: int = 3  # a job whose run was interrupted this many times is failed


def check_submission(limits: Limits, type_key: object, data: object) -> tuple[JobType, str]:
    """The type and text of a job that `limits` accept, or the `InvalidParams` saying why not
    (shared by every store, so that all refuse the same submits with the same words)."""
    job_type = lookup(type_key)
    if job_type is None:
        raise InvalidParams(f"type must be one of {ALLOWED}, not {type_key!r}")
    if not isinstance(data, str):
        raise InvalidParams(
            f"data must be a string (the text to transform), not {type(data).__name__}"
        )
    if len(data) > limits.max_text_chars:
        raise InvalidParams(
            f"data is {len(data)} code points long; the limit is {limits.max_text_chars}"
        )
    try:
        data.encode()  # UTF-8, strict: a lone surrogate cannot be written
    except UnicodeEncodeError:
        raise InvalidParams("data must be valid Unicode text: it holds a lone surrogate") from None
    size = job_type.result_length(data)
    if size > limits.max_result_chars:
        raise InvalidParams(
            f"the result of {job_type.name} on this text would be {size} code points long; "
            f"the limit is {limits.max_result_chars}: send a shorter text"
        )
    return job_type, data


def check_room(limits: Limits, queued: int, queued_chars: int, length: int) -> None:
    """`QueueFull` unless one more job of `length` characters fits beside `queued` jobs of
    `queued_chars` characters (those on their way to a commit counted in)."""
    if queued >= limits.max_queued:
        raise QueueFull(f"the queue is full ({limits.max_queued} jobs waiting); try again later")
    if queued_chars + length > limits.max_queued_chars:
        raise QueueFull(
            f"the queue is full ({queued_chars} characters of text waiting, the "
            f"limit is {limits.max_queued_chars}); try again later"
        )


def result_of(job: Job, position: int | None) -> str:
    """The job's result, or the error that says why there is none (every store's words)."""
    if job.status is JobStatus.DONE and job.result is not None:
        return _fresh(job.result)
    if job.status is JobStatus.FAILED:
        raise JobFailed(f"job {job.id} failed: {job.error}", {"error": job.error})
    if job.status is JobStatus.CANCELLED:
        raise JobCancelled(f"job {job.id} was cancelled; it has no result")
    raise ResultNotReady(
        f"job {job.id} is {job.status}; its result is not ready yet",
        {"status": job.status.value, "position": position},
    )


def job_object(job: Job, position: int | None, finish: float | None) -> JobObject:
    """The job object as it goes on the wire, given its position and estimated finish."""
    kind, run = job._kind, job._run or _NOT_STARTED  # read once: `Job`'s properties cost more
    return {
        "id": job.id,
        "type": kind.type.name,
        "status": run.status.value,
        "position": position,
        "data": _fresh(job.data),
        "delay": kind.delay,
        "submitted_at": iso(job.submitted_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "estimated_finish_at": iso(finish),
        "error": run.error,
        "attempts": run.attempts,
    }


def job_summary(job: Job, position: int | None) -> JobSummary:
    """A small summary of the job for listings: no full text, no result."""
    kind, run = job._kind, job._run or _NOT_STARTED
    return {
        "id": job.id,
        "seq": job.seq,
        "type": kind.type.name,
        "status": run.status.value,
        "position": position,
        "preview": "".join(graphemes(job.data[: PREVIEW_CHARS * 4])[:PREVIEW_CHARS]),
        "length": job.length,
        "delay": kind.delay,
        "submitted_at": iso(job.submitted_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


def changed_since(
    job: Job,
    seen_status: JobStatus | None,
    seen_position: int | None,
    position: Callable[[Job], int | None],
) -> bool:
    """True when a `wait` that last saw `seen_status` (and `seen_position`) should return."""
    if job.status.finished:
        return True
    if seen_status is None:
        return False
    if job.status is not seen_status:
        return True
    return seen_position is not None and position(job) != seen_position


class Store(Protocol):
    """Where jobs live. Reads answer from what this server knows now; the four changes
    (`submit`, `cancel`, `take`, `finish`) return once the change is durable, and only
    then do readers, waiters and listeners see it."""

    limits: Limits

    @property
    def closed(self) -> bool:
        """True once `close` ran: waits return at once."""
        ...

    @property
    def waiting(self) -> int:
        """How many `wait` calls are in progress (at most `limits.max_waiters`)."""
        ...

    @property
    def available(self) -> bool:
        """False while a shared store's database cannot be reached (/healthz says 503)."""
        ...

    def cluster(self) -> dict[str, str | None]:
        """What /healthz adds about the servers sharing the store: nothing for one alone."""
        ...

    # -- asking
    def get(self, job_id: object) -> Job:
        """The job with this id, or `JobNotFound` (`InvalidParams` for a non-string)."""
        ...

    async def find(self, job_id: object) -> Job:
        """`get`, but a job that another server sharing the store took a moment ago, and
        that this server has not heard of yet, is read from the shared store."""
        ...

    @property
    def running(self) -> Job | None:
        """The job running now, if any."""
        ...

    @property
    def queued(self) -> int:
        """How many jobs are waiting."""
        ...

    def counts(self) -> dict[str, int]:
        """How many known jobs are in each status."""
        ...

    def position(self, job: Job) -> int | None:
        """How many jobs run before this queued one (the running job included)."""
        ...

    def estimated_finish(self, job: Job) -> float | None:
        """When the job should finish, as epoch seconds."""
        ...

    def result(self, job_id: object) -> str:
        """The result of a done job, or the error that says why there is none."""
        ...

    def describe(self, job: Job) -> JobObject:
        """The job object as it goes on the wire."""
        ...

    def summarize(self, job: Job) -> JobSummary:
        """A small summary of the job for listings."""
        ...

    def newest(self, status: JobStatus | None = None, before: int | None = None) -> Iterator[Job]:
        """Jobs newest first, optionally of one status and submitted before sequence `before`."""
        ...

    async def wait(
        self,
        job: Job,
        timeout: float,
        seen_status: JobStatus | None = None,
        seen_position: int | None = None,
    ) -> Job:
        """Return when the job finishes, when its status or position differs from the seen
        ones, or when `timeout` passes."""
        ...

    def subscribe(self, listener: Listener, forget: Listener | None = None) -> Callable[[], None]:
        """Call `listener(job)` after every change and `forget(job)` when a job is forgotten."""
        ...

    # -- changing: each returns once the change is durable
    async def submit(self, type_key: object, data: object) -> Job:
        """Queue a job, or raise the error that says what is wrong with it."""
        ...

    async def cancel(self, job_id: object) -> Job:
        """Cancel a queued or running job."""
        ...

    async def take(self) -> Job:
        """For the worker: wait for the oldest queued job and mark it running."""
        ...

    async def finish(
        self, job: Job, status: JobStatus, *, result: str | None = None, error: str | None = None
    ) -> None:
        """For the worker: record how the running job ended (a cancel that came first stands)."""
        ...

    # -- lifecycle
    @property
    def location(self) -> str:
        """Where jobs are kept, for a person: `in memory only`, `in /path/taskrpc.db`."""
        ...

    async def open(self) -> None:
        """Load what the store kept, before the server answers anyone."""
        ...

    def serving(self, url: str) -> None:
        """The server now answers at `url` (a store may tell other processes)."""
        ...

    def close(self) -> None:
        """Stop accepting waits and wake every waiter (the server is shutting down)."""
        ...

    async def shutdown(self) -> None:
        """After the worker stopped: keep what must be kept, release what the store holds."""
        ...


class JobsById(Mapping[str, Job]):
    """A store's jobs by id: a view of them by key (`JobKey`), made of nothing per job."""

    __slots__ = ("_by_key",)

    def __init__(self, by_key: dict[JobKey, Job]) -> None:
        self._by_key = by_key

    def __getitem__(self, job_id: str) -> Job:
        return self._by_key[id_key(job_id)]

    def __iter__(self) -> Iterator[str]:
        return map(id_text, self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)


class JobViews(abc.ABC):
    """The reads every store answers from the jobs in its memory, given `_outlook`
    (a cluster's store keeps a copy of the shared jobs, so it answers them the same way)."""

    limits: Limits
    _running: Job | None
    _counts: Counter[JobStatus]
    _closed: bool
    _listeners: list[Listener]
    _forgetters: list[Listener]
    _waiters: Waiters  # the `wait` calls in progress, filed by job (backend/waiters.py)
    _jobs: Mapping[str, Job]  # every job this server knows, by id

    def get(self, job_id: object) -> Job:
        """The job with this id, or `JobNotFound` (`InvalidParams` for a non-string)."""
        if not isinstance(job_id, str):
            raise InvalidParams(f"id must be a string, not {type(job_id).__name__}")
        self._check_available()
        job = self._lookup(job_id)
        if job is None:
            raise JobNotFound(
                f"no job with id {job_id!r} (never submitted, or finished long ago and forgotten)"
            )
        return job

    def _lookup(self, job_id: str) -> Job | None:
        """The job with this id that this server knows, if any."""
        return self._jobs.get(job_id)

    @abc.abstractmethod
    def _outlook(self, job: Job) -> tuple[int | None, float | None]:
        """(position, estimated finish): both for a queued job, the finish for a running one."""

    @property
    def running(self) -> Job | None:
        """The job running now, if any."""
        return self._running

    @property
    def queued(self) -> int:
        """How many jobs are waiting."""
        return self._counts[JobStatus.QUEUED]

    def counts(self) -> dict[str, int]:
        """How many known jobs are in each status."""
        return {status.value: self._counts[status] for status in JobStatus}

    def position(self, job: Job) -> int | None:
        """How many jobs run before this queued one (the running job included)."""
        return self._outlook(job)[0]

    def estimated_finish(self, job: Job) -> float | None:
        """When the job should finish, exact up to transform time, as epoch seconds."""
        return self._outlook(job)[1]

    def result(self, job_id: object) -> str:
        """The result of a done job, or the error that says why there is none."""
        job = self.get(job_id)
        return result_of(job, self.position(job))

    def describe(self, job: Job) -> JobObject:
        """The job object as it goes on the wire."""
        return job_object(job, *self._outlook(job))

    def summarize(self, job: Job) -> JobSummary:
        """A small summary of the job for listings: no full text, no result."""
        return job_summary(job, self.position(job))

    @property
    def closed(self) -> bool:
        """True once `close` ran: waits return at once."""
        return self._closed

    @property
    def waiting(self) -> int:
        """How many `wait` calls are in progress (at most `limits.max_waiters`)."""
        return self._waiters.count

    async def wait(
        self,
        job: Job,
        timeout: float,
        seen_status: JobStatus | None = None,
        seen_position: int | None = None,
    ) -> Job:
        """Return when the job finishes, or when `timeout` passes.

        With `seen_status` (and `seen_position`), return as soon as the job's status
        or position differs from them: a caller passes what it last saw, so no change
        between two calls can be missed. Past `max_waiters` waits in progress it raises
        `ServerBusy` at once, before it waits at all. Each wait is filed under its job
        (and, watching a position, its seq), so a change wakes only the waits it concerns.
        """
        if self._closed or self._changed_since(job, seen_status, seen_position):
            return job
        self._check_available()
        if self._waiters.count >= self.limits.max_waiters:
            raise ServerBusy(
                f"server busy: {self.limits.max_waiters} waits are in progress, the server's "
                "limit; the job is as shown, ask again later"
            )
        if timeout <= 0:
            return job  # nothing to wait for, and no place taken from the waits that do
        try:
            async with asyncio.timeout(timeout):
                while not self._closed and not self._changed_since(job, seen_status, seen_position):
                    self._check_available()
                    seq = (
                        job.seq
                        if seen_position is not None and job.status is JobStatus.QUEUED
                        else None
                    )
                    await self._waiters.wait(job.id, seq)
        except TimeoutError:
            pass
        return job

    @property
    def available(self) -> bool:
        """A store of this server's own is always there (a full disk refuses writes only)."""
        return True

    def cluster(self) -> dict[str, str | None]:
        """Nothing to say about other servers: there are none."""
        return {}

    def _check_available(self) -> None:
        """Raise the error that stops a read or a wait (a store whose storage is lost)."""
        return

    def _changed_since(
        self, job: Job, seen_status: JobStatus | None, seen_position: int | None
    ) -> bool:
        return changed_since(job, seen_status, seen_position, self.position)

    def _notify(self, job: Job) -> None:
        """The job changed: wake its waits, then tell the listeners."""
        if self._waiters.count:  # else no id to format
            self._waiters.wake(job.id)
        self._call(self._listeners, job)

    def subscribe(self, listener: Listener, forget: Listener | None = None) -> Callable[[], None]:
        """Call `listener(job)` after every change, and `forget(job)` when a finished job is
        forgotten; returns the function that stops both."""
        self._listeners.append(listener)
        if forget is not None:
            self._forgetters.append(forget)

        def stop() -> None:
            self._listeners.remove(listener)
            if forget is not None:
                self._forgetters.remove(forget)

        return stop

    @staticmethod
    def _call(listeners: list[Listener], job: Job) -> None:
        for listener in listeners:
            try:
                listener(job)
            except Exception:  # a broken listener must not stop the worker or the store
                logger.exception("a listener failed on job %s", job.id)


class MemoryStore(JobViews):
    """Every job in memory only: a restart forgets them all. Implements `Store`."""

    def __init__(
        self, limits: Limits | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.limits = Limits() if limits is None else limits
        self._clock = clock
        self._by_key: dict[JobKey, Job] = {}  # every known job, in submission order
        self._jobs = JobsById(self._by_key)
        self._pending: deque[Job] = deque()  # queued jobs, oldest first (cancelled ones too)
        # Cancelled jobs still in _pending: their seqs, sorted, grouped by delay (a few groups,
        # one per type), so the jobs and delay ahead of any job are a few bisects away.
        self._holes: defaultdict[float, list[int]] = defaultdict(list)
        self._skipped: defaultdict[float, int] = defaultdict(int)  # holes the worker passed
        # Every job in _pending, its seq filed by delay (a lane per type): the jobs and the
        # delay ahead of a job are a bisect per lane. 8 B per queued job, where a running
        # total of delays kept in each job cost 32 B (bench: "memory per queued job").
        self._lanes: defaultdict[float, list[int]] = defaultdict(list)
        self._passed: defaultdict[float, int] = defaultdict(int)  # lane entries the worker passed
        self._finished: deque[JobKey] = deque()  # keys of finished jobs, oldest first
        # The finished jobs per status, in seq order: a page of `list` starts a bisect away
        # from its cursor instead of a scan from the end.
        self._by_status: dict[JobStatus, list[Job]] = {
            status: [] for status in JobStatus if status.finished
        }
        self._queued_chars = 0  # characters of text of the queued jobs
        self._counts: Counter[JobStatus] = Counter()
        self._running: Job | None = None
        self._work = asyncio.Event()  # set while _pending may hold a job
        self._waiters = Waiters()
        self._listeners: list[Listener] = []
        self._forgetters: list[Listener] = []
        self._next_seq = 0
        self._kept_chars = 0  # characters of results held by finished jobs
        self._closed = False
        self._adding = 0  # submits on their way to the disk (a journaled store's), not yet queued
        self._adding_chars = 0  # and the characters of their texts
        self._delays: dict[int, float] = {}  # each type's delay (by code) after the time scale

    # -- asking ---------------------------------------------------------------------

    async def find(self, job_id: object) -> Job:
        """`get`: one server's memory holds every job there is."""
        return self.get(job_id)

    def _lookup(self, job_id: str) -> Job | None:
        return self._by_key.get(id_key(job_id))

    def newest(self, status: JobStatus | None = None, before: int | None = None) -> Iterator[Job]:
        """Jobs newest first, optionally of one status and submitted before sequence `before`.

        The start is a bisect away (O(log n)): the finished jobs of each status are kept in
        lists in seq order, and the queue is in seq order already. A page of queued jobs
        skips the cancelled ones the worker has not passed yet. A page of all jobs merges
        those lists and the running job (~1 µs a job): a list of every job in seq order
        cost 8 bytes per queued job, and a move of the whole list each time the oldest
        finished job was forgotten (bench row "bytes per queued job").
        """
        running = [] if self._running is None else [self._running]
        if status is None:
            queued = filter(_is_queued, _down(self._pending, before))
            finished = (_down(jobs, before) for jobs in self._by_status.values())
            return heapq.merge(queued, _down(running, before), *finished, key=_seq, reverse=True)
        candidates: Sequence[Job]
        if status is JobStatus.QUEUED:
            candidates = self._pending
        elif status is JobStatus.RUNNING:
            candidates = running
        else:
            candidates = self._by_status[status]
        return (job for job in _down(candidates, before) if job.status is status)

    # -- changing -------------------------------------------------------------------

    async def submit(self, type_key: object, data: object) -> Job:
        """Queue a job, or raise the error that says what is wrong with it."""
        job = self._new_job(type_key, data)
        self._add(job, self._next_seq)
        return job

    def _new_job(self, type_key: object, data: object) -> Job:
        """A checked job, not yet in the queue (its seq is given when it is added)."""
        job_type, text = check_submission(self.limits, type_key, data)
        check_room(
            self.limits,
            self.queued + self._adding,
            self._queued_chars + self._adding_chars,
            len(text),
        )
        delay = scaled_delay(job_type.delay, self.limits.time_scale)
        now = self._clock()
        return Job(
            id=self._unused_key(),
            type=job_type,
            data=text,
            delay=delay,
            seq=NOT_YET,
            submitted_at=now,
        )

    def _add(self, job: Job, seq: int) -> None:
        """Put a new job at the tail of the queue and tell everyone."""
        job.seq = seq
        self._next_seq = seq + 1
        self._by_key[job.key] = job
        self._enqueue(job)
        self._counts[JobStatus.QUEUED] += 1
        self._queued_chars += job.length
        self._work.set()
        if logger.isEnabledFor(logging.DEBUG):  # one info line per job, when it ends
            logger.debug("job %s %s queued (%d ahead)", job.id, job.type.name, self._ahead(job)[0])
        self._notify(job)

    async def cancel(self, job_id: object) -> Job:
        """Cancel a queued or running job."""
        job = self.get(job_id)
        check_cancellable(job)
        self._cancel(job, self._clock())
        return job

    def _cancel(self, job: Job, at: float) -> None:
        if job.status is JobStatus.QUEUED:
            insort(self._holes[job.delay], job.seq)  # after the passed ones: its seq is higher
        self._finish(job, JobStatus.CANCELLED, at)  # the worker hears it and stops a running job

    async def take(self) -> Job:
        """For the worker: wait for the oldest queued job and mark it running."""
        job = await self._head()
        self._begin(job, self._clock())
        return job

    async def finish(
        self, job: Job, status: JobStatus, *, result: str | None = None, error: str | None = None
    ) -> None:
        """For the worker: record how the running job ended (a cancel that came first stands)."""
        self._finish(job, status, self._clock(), result=result, error=error)

    async def _head(self) -> Job:
        """The oldest queued job, left at the head of the queue; waits for one."""
        skipped = 0
        while True:
            while self._pending:
                job = self._pending[0]
                if job.status is JobStatus.QUEUED:
                    return job
                self._drop_head()  # a cancelled job
                skipped += 1
                if skipped % 1024 == 0:
                    await asyncio.sleep(0)  # after a mass cancel: let requests in
            self._work.clear()
            await self._work.wait()

    def _begin(self, job: Job, at: float) -> None:
        """The head of the queue starts running."""
        head = self._drop_head()
        assert head is job, "only the head starts"  # pragma: no mutate (a programmer's message)
        job.attempts += 1
        self._start(job, at)

    # -- lifecycle ------------------------------------------------------------------

    @property
    def location(self) -> str:
        """Where jobs are kept, for a person."""
        return "in memory only"

    async def open(self) -> None:
        """Nothing to load: a memory-only store starts empty."""

    def serving(self, url: str) -> None:
        """Nobody else needs to know."""

    def close(self) -> None:
        """Stop accepting waits and wake every waiter (the server is shutting down)."""
        self._closed = True
        self._waiters.wake_all()
        self._report_stop()

    def _report_stop(self) -> None:
        if self._running is not None or self.queued:
            running = f"job {self._running.id} running" if self._running else "no job running"
            logger.warning("stopping with %s and %d queued: they are lost", running, self.queued)

    async def shutdown(self) -> None:
        """Nothing to keep: memory-only jobs end with the process."""

    # -- recording a change -------------------------------------------------------

    def _start(self, job: Job, at: float) -> None:
        job.status = JobStatus.RUNNING
        job.started_at = at
        self._running = job
        self._counts[JobStatus.QUEUED] -= 1
        self._counts[JobStatus.RUNNING] = 1  # one job at a time
        self._queued_chars -= job.length
        if logger.isEnabledFor(logging.DEBUG):  # the info line comes when the job ends
            waited = at - job.submitted_at  # pragma: no mutate (a debug line's figure)
            logger.debug("job %s %s running (waited %.3f s)", job.id, job.type.name, waited)
        self._notify(job)

    def _finish(
        self,
        job: Job,
        status: JobStatus,
        at: float,
        *,
        result: str | None = None,
        error: str | None = None,
    ) -> None:
        if job.status.finished:
            return  # cancelled while its transform ran: the cancel stands
        was = job.status
        job.status, job.result, job.error = status, result, error
        job.finished_at = at
        self._counts[was] -= 1
        self._counts[status] += 1
        if self._running is job:
            self._running = None
            self._waiters.wake_positions_behind(_BEFORE_EVERY_SEQ)  # all queued moved up one
        elif was is JobStatus.QUEUED:
            self._queued_chars -= job.length
            self._waiters.wake_positions_behind(job.seq)
        if logger.isEnabledFor(logging.INFO):
            log_end(job)
        self._remember(job)
        self._notify(job)

    # -- bookkeeping ----------------------------------------------------------------

    def _unused_key(self) -> int:
        while (key := new_key()) in self._by_key:
            pass  # 80 random bits: this loop body has never run
        return key

    def _outlook(self, job: Job) -> tuple[int | None, float | None]:
        """(position, estimated finish): both for a queued job, the finish for a running one."""
        status = job.status
        if status is JobStatus.QUEUED:
            ahead, delay = self._ahead(job)
            return ahead, self._clock() + delay + job.delay
        if status is JobStatus.RUNNING and job.started_at is not None:
            return None, job.started_at + job.delay
        return None, None

    def _ahead(self, job: Job) -> tuple[int, float]:
        """(jobs, seconds of delay) that run before a queued job, the running job included."""
        count = 0
        delay = 0.0
        seq = job.seq
        for lane_delay, seqs in self._lanes.items():
            start = self._passed[lane_delay]
            ahead = bisect_left(seqs, seq, lo=start) - start
            if ahead:
                holes = self._holes.get(lane_delay)
                if holes:
                    skipped = self._skipped[lane_delay]
                    ahead -= bisect_left(holes, seq, lo=skipped) - skipped
                count += ahead
                delay += ahead * lane_delay
        running = self._running
        if running is not None and running.started_at is not None:
            count += 1
            delay += max(0.0, running.started_at + running.delay - self._clock())
        return count, max(0.0, delay)

    def _enqueue(self, job: Job) -> None:
        """Put a job at the tail of the queue (its seq is the highest yet)."""
        self._pending.append(job)
        self._lanes[job.delay].append(job.seq)

    def _drop_head(self) -> Job:
        """Take the head of the queue off it: the job that starts, or a cancelled one."""
        job = self._pending.popleft()
        delay = job.delay
        passed = self._passed[delay] = self._passed[delay] + 1
        seqs = self._lanes[delay]
        if passed >= 32 and passed * 2 >= len(seqs):
            del seqs[:passed]  # in bulk: each seq is moved at most once per pass, on average
            self._passed[delay] = 0
        if job.status is not JobStatus.QUEUED:
            self._pass_hole(delay)  # a cancelled job: a hole in its lane
        return job

    def _pass_hole(self, delay: float) -> None:
        """The worker passed the oldest cancelled job of this delay; drop passed ones in bulk."""
        passed = self._skipped[delay] = self._skipped[delay] + 1
        seqs = self._holes[delay]
        if passed >= 1024 and passed * 2 >= len(seqs):
            del seqs[:passed]
            self._skipped[delay] = 0

    def _remember(self, job: Job) -> None:
        """Keep the finished job, forgetting the oldest finished ones beyond the limits.

        Two limits: how many finished jobs, and how many characters of results in all
        (the job that just finished is always kept, so its result can be read).
        """
        self._finished.append(job.key)
        insort(self._by_status[job.status], job, key=_seq)  # at the end, unless a queued one
        self._kept_chars += len(job.result or "")
        self._trim()

    def _trim(self) -> None:
        """Forget the oldest finished jobs while the kept ones are beyond the limits."""
        limits = self.limits
        while len(self._finished) > limits.max_finished or (
            self._kept_chars > limits.max_kept_chars and len(self._finished) > 1
        ):
            old = self._by_key.pop(self._finished.popleft())
            _remove(self._by_status[old.status], old)
            self._kept_chars -= len(old.result or "")
            self._counts[old.status] -= 1
            self._forget(old)

    def _forget(self, job: Job) -> None:
        """A finished job was dropped by the retention limits."""
        self._call(self._forgetters, job)


def log_end(job: Job) -> None:
    """The one info line of a job: type, id, waited, ran, outcome (bench: drain at info)."""
    started = job.started_at
    end = job.finished_at or 0.0
    waited = (end if started is None else started) - job.submitted_at
    ran = 0.0 if started is None else end - started
    logger.info(
        "job %s %s %s (waited %.3f s, ran %.3f s%s)%s",
        job.id,
        job.type.name,
        job.status.value,
        waited,
        ran,
        f", attempt {job.attempts}" if job.attempts > 1 else "",  # a rerun after a crash or stop
        f": {job.error}" if job.error else "",
    )


def _seq(job: Job) -> int:
    return job.seq


def _is_queued(job: Job) -> bool:
    return job.status is JobStatus.QUEUED


def _down(jobs: Sequence[Job], before: int | None) -> Iterator[Job]:
    """The jobs of a sequence in seq order that were submitted before `before`, newest first."""
    end = len(jobs) if before is None else bisect_left(jobs, before, key=_seq)
    return map(jobs.__getitem__, range(end - 1, -1, -1))


def _remove(jobs: list[Job], job: Job) -> None:
    """Remove `job` from a list in seq order: a bisect, then one memmove in C."""
    del jobs[bisect_left(jobs, job.seq, key=_seq)]


def _fresh(text: str) -> str:
    """A copy of a non-ASCII text that is about to be encoded for the wire.

    Encoding a str to UTF-8 (orjson does, for every response) caches the UTF-8 form inside
    the str object: a kept text of 10 000 emoji went from 40 to 80 KB the first time it was
    sent, which took 100 000 queued ones to 8 GiB. The copy takes the cache and is freed
    with the response. ASCII text is its own UTF-8, so nothing is cached for it.
    """
    if text.isascii():
        return text
    return text[:1] + text[1:]  # two slices joined: a new object, never the same one


def check_cancellable(job: Job) -> None:
    """Raise `AlreadyFinished` unless the job is queued or running."""
    if job.status.finished:
        raise AlreadyFinished(
            f"job {job.id} is already {job.status}; only a queued or running job can be cancelled",
            {"status": job.status.value},
        )
