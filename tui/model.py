"""What the dashboard knows about jobs, and how each cell reads. Pure: no Textual, no network.

`Jobs` applies snapshots and `jobs.changed` notifications and answers the queue
rank of a queued job from submission order, so no per-job traffic is needed
when the head of the queue starts.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from rich.text import Text

from backend.protocol import JobStatus, JobUpdate

SHORT_ID = 8  # characters of the id shown in the table

STATUS_STYLE = {
    JobStatus.QUEUED: "yellow",
    JobStatus.RUNNING: "bold cyan",
    JobStatus.DONE: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "magenta",
}

COLUMNS: tuple[tuple[str, str, int], ...] = (  # (key, label, width)
    ("id", "ID", SHORT_ID),
    ("type", "TYPE", 7),
    ("status", "STATUS", 22),
    ("text", "TEXT", 40),
    ("submitted", "SUBMITTED", 9),
    ("waited", "WAITED", 7),
    ("ran", "RAN", 7),
)
SORTS = ("submitted", "status", "type", "waited", "ran", "text")  # `s` cycles through these


@dataclass(slots=True)
class Job:
    """One row: the job summary as last received, with times as epoch seconds."""

    id: str
    seq: int
    type: str
    status: JobStatus
    preview: str
    length: int
    delay: float
    submitted_at: float
    started_at: float | None
    finished_at: float | None

    @classmethod
    def from_update(cls, update: JobUpdate) -> Job:
        return cls(
            id=update["id"],
            seq=update["seq"],
            type=update["type"],
            status=JobStatus(update["status"]),
            preview=update["preview"],
            length=update["length"],
            delay=update["delay"],
            submitted_at=_seconds(update["submitted_at"]) or 0.0,
            started_at=_seconds(update["started_at"]),
            finished_at=_seconds(update["finished_at"]),
        )

    def waited(self, now: float) -> float:
        return (self.started_at or self.finished_at or now) - self.submitted_at

    def ran(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or now) - self.started_at

    def matches(self, words: list[str]) -> bool:
        """True if every word of the filter matches: `status:failed`, `type:swap`, or free text."""
        return all(self._matches(word) for word in words)

    def _matches(self, word: str) -> bool:
        field, _, value = word.partition(":")
        if field == "status" and value:
            return self.status.value.startswith(value)
        if field == "type" and value:
            return self.type.startswith(value)
        return any(
            word in text for text in (self.id, self.type, self.status.value, self.preview.lower())
        )


def wanted_statuses(words: list[str]) -> set[JobStatus]:
    """The statuses a job can have and still match the filter's `status:` words."""
    wanted = set(JobStatus)
    for word in words:
        field, _, value = word.partition(":")
        if field == "status" and value:
            wanted &= {status for status in JobStatus if status.value.startswith(value)}
    return wanted


class Jobs:
    """Every job the dashboard has heard of, and the counts the server last sent."""

    def __init__(self) -> None:
        self.by_id: dict[str, Job] = {}
        self.counts: dict[str, int] = {status.value: 0 for status in JobStatus}
        self.total = 0
        self.limit = 0
        self._queued: list[int] = []  # seqs of the queued jobs we know, ascending
        # Seqs of queued jobs read by a search of older jobs but not kept (they did not match):
        # with them, a kept older job's rank is exact (the search reads newest first).
        self._unseen: list[int] = []
        self._ids_by_seq: dict[int, str] = {}
        self._running: str | None = None  # the id of the running job, if we know it

    def reset(self, updates: Iterable[JobUpdate], counts: dict[str, int], total: int) -> None:
        """Forget everything and start from a snapshot."""
        self.by_id.clear()
        self._queued.clear()
        self._unseen.clear()
        self._ids_by_seq.clear()
        self._running = None
        for update in updates:
            self.put(update)
        self.counts, self.total = dict(counts), total

    def put(self, update: JobUpdate) -> tuple[Job, Job | None]:
        """Record a job's new state; returns (new, old) — old is None for a job not seen before."""
        job = Job.from_update(update)
        old = self.by_id.get(job.id)
        if old is not None and old.status is JobStatus.QUEUED:
            self._unqueue(old.seq)
        if self._unseen:
            _discard(self._unseen, job.seq)
        if job.status is JobStatus.QUEUED:
            insort(self._queued, job.seq)
        if job.status is JobStatus.RUNNING:
            self._running = job.id
        elif self._running == job.id:
            self._running = None
        self.by_id[job.id] = job
        self._ids_by_seq[job.seq] = job.id
        return job, old

    def forget(self, job_id: str) -> Job | None:
        """Drop a job the server no longer knows."""
        job = self.by_id.pop(job_id, None)
        if job is not None:
            self._ids_by_seq.pop(job.seq, None)
            if self._running == job_id:
                self._running = None
            if job.status is JobStatus.QUEUED:
                self._unqueue(job.seq)
        return job

    def note_unseen(self, update: JobUpdate) -> None:
        """A search read this job and did not keep it: if queued, it still counts in ranks."""
        if update["status"] == JobStatus.QUEUED and update["id"] not in self.by_id:
            insort(self._unseen, update["seq"])

    def forget_unseen(self) -> None:
        self._unseen.clear()

    def rank(self, job: Job) -> int:
        """1 for the queued job that runs next, 2 for the one after, and so on."""
        return self.rank_of(job.seq)

    def rank_of(self, seq: int) -> int:
        """The rank of the queued job submitted `seq`-th."""
        after = len(self._queued) - bisect_right(self._queued, seq)
        after += len(self._unseen) - bisect_right(self._unseen, seq)
        return max(1, self.counts.get(JobStatus.QUEUED, 0) - after)

    def queued(self) -> list[Job]:
        """The queued jobs we know, in the order they will run."""
        return [self.by_id[self._ids_by_seq[seq]] for seq in self._queued]

    @property
    def running(self) -> Job | None:
        return None if self._running is None else self.by_id.get(self._running)

    def _unqueue(self, seq: int) -> None:
        _discard(self._queued, seq)


def _discard(seqs: list[int], seq: int) -> None:
    """Remove `seq` from the ascending list, if it is there."""
    index = bisect_left(seqs, seq)
    if index < len(seqs) and seqs[index] == seq:
        del seqs[index]


# -- cells ------------------------------------------------------------------------------
#
# Building a row must be cheap (10 000 of them at load): cells that repeat (types, plain
# statuses, clock times, durations) are shared `Text` objects — the table never changes a
# cell it is given — and a queued job's place in line is worked out when the cell is drawn,
# so the start of a job does not rewrite every queued row.


class IdCell(Text):
    """The short id shown in the table; carries the full id (rows are sorted by it)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id[:SHORT_ID], style="bold")
        self.job_id = job_id


class QueuedCell:
    """`queued #3`, the rank read from `Jobs` when the cell is drawn (only rows on screen are)."""

    __slots__ = ("jobs", "seq")

    def __init__(self, jobs: Jobs, seq: int) -> None:
        self.jobs = jobs
        self.seq = seq

    def __rich__(self) -> Text:
        return _queued(self.jobs.rank_of(self.seq))

    def __str__(self) -> str:
        return str(self.__rich__())


Cell = Text | QueuedCell


def cells(job: Job, jobs: Jobs, now: float) -> tuple[Cell, ...]:
    """Every cell of the job's row, in column order; user text is plain `Text`, never markup."""
    return (
        IdCell(job.id),
        _plain(job.type),
        status_cell(job, jobs, now),
        Text(job.preview + ("…" if len(job.preview) < job.length else ""), no_wrap=True),
        _clock(int(job.submitted_at)),
        duration_cell(job.waited(now)),
        duration_cell(job.ran(now)),
    )


def status_cell(job: Job, jobs: Jobs, now: float) -> Cell:
    """`queued #3`, `running ▰▰▰▱▱ 45%`, `done`… in the status's colour."""
    if job.status is JobStatus.QUEUED:
        return QueuedCell(jobs, job.seq)
    if job.status is JobStatus.RUNNING:
        fraction = progress(job, now)
        filled = round(fraction * 8)
        bar = "▰" * filled + "▱" * (8 - filled)
        return Text(f"running {bar} {fraction:4.0%}", style=STATUS_STYLE[job.status])
    return _finished(job.status)


@lru_cache(maxsize=1024)
def _queued(rank: int) -> Text:
    return Text(f"queued #{rank}", style=STATUS_STYLE[JobStatus.QUEUED])


@lru_cache(maxsize=16)
def _finished(status: JobStatus) -> Text:
    return Text(status.value, style=STATUS_STYLE[status])


@lru_cache(maxsize=64)
def _plain(text: str) -> Text:
    return Text(text)


@lru_cache(maxsize=4096)
def _clock(second: int) -> Text:
    return Text(time.strftime("%H:%M:%S", time.localtime(second)))


def duration_cell(seconds: float | None) -> Text:
    """A duration, right-aligned."""
    return _right(duration(seconds))


@lru_cache(maxsize=4096)
def _right(text: str) -> Text:
    return Text(text, justify="right")


def progress(job: Job, now: float) -> float:
    """How far the running job is, 0..1, from its start time and its known delay."""
    if job.started_at is None or job.delay <= 0:
        return 0.0
    return min(1.0, max(0.0, (now - job.started_at) / job.delay))


def duration(seconds: float | None) -> str:
    """`0.4s`, `12s`, `3m05s`, `2h01m`; empty for None."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def sort_key(column: str, now: float) -> Callable[[Job], object]:
    """The key that orders jobs by `column`."""
    keys: dict[str, Callable[[Job], object]] = {
        "submitted": lambda job: job.seq,
        "status": lambda job: (list(JobStatus).index(job.status), job.seq),
        "type": lambda job: (job.type, job.seq),
        "waited": lambda job: (job.waited(now), job.seq),
        "ran": lambda job: (job.ran(now) or -1.0, job.seq),
        "text": lambda job: (job.preview.casefold(), job.seq),
    }
    return keys[column]


def _seconds(stamp: str | None) -> float | None:
    return None if stamp is None else datetime.fromisoformat(stamp).timestamp()
