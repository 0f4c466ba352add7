"""Parked `wait` calls: each costs O(1) to add, wake and drop, and a change wakes only its own.

The store used to share one asyncio.Event between all waits and replace it on every
change: each change woke every wait (one submit took 473 ms with 50 000 held), and
asyncio.Event removes a cancelled waiter from a list, so dropping 50 000 of them took
16.7 s of one event loop. Here every wait has its own future, filed under its job's id
in a dict: adding and dropping are dict operations, and a change wakes the futures of
the job it changed.

A queued job's position changes without the job itself changing: when the running job
finishes, every queued job moves up one; when a queued job is cancelled, the jobs behind
it do. Waits that watch a position are therefore also filed under the job's `seq`, in
a sorted list, so that those behind a cancelled job are a bisect away.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right, insort
from typing import TypeVar

from backend import pacing

K = TypeVar("K", str, int)
Parked = dict[asyncio.Future[None], None]  # an insertion-ordered set with O(1) removal


class Waiters:
    """Futures parked until a job changes, by job id, and by seq for position watchers."""

    def __init__(self) -> None:
        self._by_job: dict[str, Parked] = {}
        self._by_seq: dict[int, Parked] = {}  # waits that watch a queued job's position
        self._seqs: list[int] = []  # the keys of _by_seq, sorted; may hold stale ones
        self.count = 0  # waits parked now

    async def wait(self, job_id: str, seq: int | None = None) -> None:
        """Return at the next change of job `job_id` (and, given its `seq`, of its position)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        _park(self._by_job, job_id, future)
        if seq is not None:
            if seq not in self._by_seq:
                insort(self._seqs, seq)
            _park(self._by_seq, seq, future)
        self.count += 1
        try:
            await future
        finally:
            self.count -= 1
            _unpark(self._by_job, job_id, future)
            if seq is not None:
                _unpark(self._by_seq, seq, future)
                self._sweep()

    def wake(self, job_id: str) -> None:
        """Job `job_id` changed: wake its waits."""
        _wake(self._by_job.pop(job_id, None))

    def wake_positions_behind(self, seq: int) -> None:
        """Every queued job after `seq` moved up: wake the waits that watch their position."""
        start = bisect_right(self._seqs, seq)
        for behind in self._seqs[start:]:
            _wake(self._by_seq.pop(behind, None))
        del self._seqs[start:]

    def wake_all(self) -> None:
        """Wake every wait (the store is closing)."""
        for parked in (*self._by_job.values(), *self._by_seq.values()):
            _wake(parked)
        self._by_job.clear()
        self._by_seq.clear()
        self._seqs.clear()

    def _sweep(self) -> None:
        """Drop the seqs nobody watches any more once they are most of the list (amortized)."""
        if len(self._seqs) > 2 * len(self._by_seq) + 64:
            self._seqs = sorted(self._by_seq)


def _park(table: dict[K, Parked], key: K, future: asyncio.Future[None]) -> None:
    table.setdefault(key, {})[future] = None


def _unpark(table: dict[K, Parked], key: K, future: asyncio.Future[None]) -> None:
    parked = table.get(key)  # a wake took it out, or another wait filed a new one since
    if parked is not None:
        parked.pop(future, None)
        if not parked:
            del table[key]


def _wake(parked: Parked | None) -> None:
    if parked:
        pacing.wake(parked)  # 10 000 waits on one job return over several turns, not one
