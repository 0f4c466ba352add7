"""What the dashboard knows about jobs, and how each cell reads. Pure: no Textual, no network.

`Jobs` applies snapshots and `jobs.changed` notifications and answers the queue
rank of a queued job from submission order, so no per-job traffic is needed
when the head of the queue starts. Cells are built when a row is drawn (only the
rows on screen are), from the job and the clock: a queued row's wait and its
"starts in" are always current, and a change costs no cell rewriting.
"""

from __future__ import annotations

import heapq
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import accumulate
from typing import Any

from rich.text import Text

from backend.display import visible
from backend.protocol import JobStatus, JobUpdate

STATUS_STYLE = {
    JobStatus.QUEUED: "yellow",
    JobStatus.RUNNING: "bold cyan",
    JobStatus.DONE: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "magenta",
}

SORTS = ("submitted", "status", "type", "waited", "ran", "text")  # `s` cycles through these
NEWLINE = "⏎"  # a newline in a one-line cell
STATUS_WIDTH = 22  # the STATUS column: `running ▰▰▰▰▰▰▰▰ 100%`, `queued #9982 in ~2h01m`


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
            submitted_at=seconds(update["submitted_at"]) or 0.0,
            started_at=seconds(update["started_at"]),
            finished_at=seconds(update["finished_at"]),
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
        # The lowest seq of the newest-jobs window the feed keeps complete: every job from
        # here up is held. Jobs below it may be held too (a notification about an old job),
        # so the search of older jobs starts here, not below the lowest seq held.
        self.floor = 0
        self._queued: list[int] = []  # seqs of the queued jobs we know, ascending
        # Seqs of queued jobs read by a search of older jobs but not kept (they did not match):
        # with them, a kept older job's rank is exact (the search reads newest first).
        self._unseen: list[int] = []
        self._delays: dict[int, float] = {}  # seq -> delay of each queued job we know
        self._ahead: list[float] | None = None  # prefix sums of those delays, built on demand
        self._running: str | None = None  # the id of the running job, if we know it

    def reset(self, updates: Iterable[JobUpdate], counts: dict[str, int], total: int) -> None:
        """Forget everything and start from a snapshot (newest first)."""
        self.by_id.clear()
        self._queued.clear()
        self._unseen.clear()
        self._delays.clear()
        self._ahead = None
        self._running = None
        for update in updates:
            self.put(update)
        self.counts, self.total = dict(counts), total
        held = len(self.by_id)
        self.floor = 0 if held >= total else min((j.seq for j in self.by_id.values()), default=0)

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
            self._delays[job.seq] = job.delay
            self._ahead = None
        if job.status is JobStatus.RUNNING:
            self._running = job.id
        elif self._running == job.id:
            self._running = None
        self.by_id[job.id] = job
        return job, old

    def forget(self, job_id: str) -> Job | None:
        """Drop a job the server no longer knows (or that the row cap pushes out)."""
        job = self.by_id.pop(job_id, None)
        if job is not None:
            if self._running == job_id:
                self._running = None
            if job.status is JobStatus.QUEUED:
                self._unqueue(job.seq)
        return job

    def overflow(
        self, cap: int, outside: Iterable[str] = (), pinned: str | None = None
    ) -> list[str]:
        """The ids of the oldest jobs past `cap`, not counting the `outside` ones (a search's
        older jobs) and never the running one nor the `pinned` one (under the cursor); the
        window's floor moves up past them, so a search of older jobs reads them again."""
        spared: set[str | None] = {job_id for job_id in outside if job_id in self.by_id}
        extra = len(self.by_id) - len(spared) - cap
        if extra <= 0:
            return []
        spared |= {self._running, pinned}
        oldest = heapq.nsmallest(
            extra,
            (job for job in self.by_id.values() if job.id not in spared),
            key=lambda j: j.seq,
        )
        if oldest:
            self.floor = max(self.floor, oldest[-1].seq + 1)
        return [job.id for job in oldest]

    def note_unseen(self, update: JobUpdate) -> None:
        """A search read this job and did not keep it: if queued, it still counts in ranks."""
        if update["status"] == JobStatus.QUEUED and update["id"] not in self.by_id:
            insort(self._unseen, update["seq"])

    def forget_unseen(self) -> None:
        self._unseen.clear()

    def rank_of(self, seq: int) -> int:
        """1 for the queued job that runs next, 2 for the one after, and so on."""
        after = len(self._queued) - bisect_right(self._queued, seq)
        after += len(self._unseen) - bisect_right(self._unseen, seq)
        return max(1, self.counts.get(JobStatus.QUEUED, 0) - after)

    def starts_in(self, job: Job, now: float) -> float:
        """Seconds until this queued job starts, about: what the running job has left, the
        delays of the queued jobs ahead that we hold, and their mean for those we do not."""
        running = self.running
        left = 0.0
        if running is not None and running.started_at is not None:
            left = max(0.0, running.started_at + running.delay - now)
        if self._ahead is None:
            self._ahead = [0.0, *accumulate(self._delays[seq] for seq in self._queued)]
        known = bisect_left(self._queued, job.seq)
        ahead = self.rank_of(job.seq) - 1
        mean = self._ahead[-1] / len(self._queued) if self._queued else job.delay
        return left + self._ahead[known] + max(0, ahead - known) * mean

    @property
    def running(self) -> Job | None:
        return None if self._running is None else self.by_id.get(self._running)

    def _unqueue(self, seq: int) -> None:
        _discard(self._queued, seq)
        self._delays.pop(seq, None)
        self._ahead = None


def _discard(seqs: list[int], seq: int) -> None:
    """Remove `seq` from the ascending list, if it is there."""
    index = bisect_left(seqs, seq)
    if index < len(seqs) and seqs[index] == seq:
        del seqs[index]


# -- cells ------------------------------------------------------------------------------
#
# A row is built when it is drawn, so cells that repeat (types, plain statuses, clock
# times, durations) are shared cached `Text` objects. Everything that came from a user
# passes `visible` first: a job's text never reaches the terminal as control sequences.


def status_cell(job: Job, jobs: Jobs, now: float) -> Text:
    """`queued #3 in ~12s`, `running ▰▰▰▱▱ 45%`, `done`… in the status's colour."""
    if job.status is JobStatus.QUEUED:
        return _queued(jobs.rank_of(job.seq), duration(jobs.starts_in(job, now), whole=True))
    if job.status is JobStatus.RUNNING:
        fraction = progress(job, now)
        filled = round(fraction * 8)
        bar = "▰" * filled + "▱" * (8 - filled)
        return Text(f"running {bar} {fraction:4.0%}", style=STATUS_STYLE[job.status])
    return _finished(job.status)


def text_cell(job: Job, width: int) -> Text:
    """The job's text on one line, cut to `width` with a `…` that stays inside it; a
    newline shows as ⏎, control characters as escapes."""
    shown = visible(job.preview.replace("\r\n", "\n").replace("\n", NEWLINE))
    if len(job.preview) < job.length:
        shown += "…"
    cell = Text(shown, no_wrap=True, overflow="ellipsis", end="")
    cell.truncate(width, overflow="ellipsis", pad=True)
    return cell


@lru_cache(maxsize=4096)
def _queued(rank: int, wait: str) -> Text:
    text = f"queued #{rank} in ~{wait}"
    if len(text) > STATUS_WIDTH:
        text = f"queued #{rank} ~{wait}"  # a long queue: the rank and the wait still fit
    return Text(text, style=STATUS_STYLE[JobStatus.QUEUED])


@lru_cache(maxsize=16)
def _finished(status: JobStatus) -> Text:
    return Text(status.value, style=STATUS_STYLE[status])


@lru_cache(maxsize=64)
def plain(text: str) -> Text:
    """A cached cell of plain text (a type name, an id): never markup."""
    return Text(visible(text))


@lru_cache(maxsize=4096)
def clock(second: int) -> Text:
    """`14:03:07`, local time."""
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


def duration(seconds: float | None, *, whole: bool = False) -> str:
    """`0.4s`, `12s`, `3m05s`, `2h01m`, `3d04h`; empty for None; `whole`: no tenths."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10 and not whole:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


def sort_key(column: str, now: float) -> Callable[[Job], Any]:
    """The key that orders jobs by `column`."""
    keys: dict[str, Callable[[Job], Any]] = {
        "submitted": lambda job: job.seq,
        "status": lambda job: (list(JobStatus).index(job.status), job.seq),
        "type": lambda job: (job.type, job.seq),
        "waited": lambda job: (job.waited(now), job.seq),
        "ran": lambda job: (job.ran(now) or -1.0, job.seq),
        "text": lambda job: (job.preview.casefold(), job.seq),
    }
    return keys[column]


def seconds(stamp: str | None) -> float | None:
    """An ISO 8601 time from the wire as epoch seconds."""
    return None if stamp is None else datetime.fromisoformat(stamp).timestamp()
