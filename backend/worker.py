"""The one worker: it takes the oldest queued job from the store, runs it, records the outcome.

One coroutine, `Worker.run`, owns execution: it sleeps the job's delay, applies its
transform and records the outcome, then takes the next. Nothing else runs jobs, so
"never two at a time" needs no lock on one server, and FIFO order is the store's.
A cancel reaches the running job as a change event from the store. When the store
cannot write (a full disk, a lost database), the worker retries the same step every
`RETRY` seconds: nothing is run twice or recorded out of order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from backend.protocol import JobStatus, StorageUnavailable
from backend.store import Job, Store

logger = logging.getLogger("taskrpc.worker")

OFFLOAD_ABOVE = 256  # texts longer than this are transformed in a thread, off the event loop
COARSE_MARGIN = 0.02  # seconds before a job's deadline where its long sleep ends
FINE_MARGIN = 0.001  # seconds before the deadline where it stops trusting timers
RETRY = 1.0  # seconds between two tries of a change the store could not keep

T = TypeVar("T")


class Worker:
    """Runs the store's queued jobs one at a time, oldest first, for as long as `run` runs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._job: Job | None = None  # the job being run
        self._interrupt = asyncio.Event()  # set to stop the running job
        store.subscribe(self._on_change)

    async def run(self) -> None:
        """Run the oldest queued job, then the next, forever."""
        while True:
            job = await _persist(self.store.take)
            await self._execute(job)

    async def _execute(self, job: Job) -> None:
        self._job, self._interrupt = job, asyncio.Event()
        if job.status is not JobStatus.RUNNING:  # a cancel landed while `take` came back
            self._interrupt.set()
        try:
            if await _interrupted(self._interrupt, job.delay):
                return  # cancelled while it slept; the cancel recorded it
            if len(job.data) > OFFLOAD_ABOVE:
                result = await asyncio.to_thread(job.type.transform, job.data)
            else:
                result = job.type.transform(job.data)
        except Exception as exc:
            logger.exception("job %s %s raised", job.id, job.type.name)
            error = f"{type(exc).__name__}: {exc}"
            await _persist(lambda: self.store.finish(job, JobStatus.FAILED, error=error))
        else:
            await _persist(lambda: self.store.finish(job, JobStatus.DONE, result=result))
        finally:
            self._job = None

    def _on_change(self, job: Job) -> None:
        """The running job stops once it is no longer running: a cancel (from any method, on
        any server), or, on a cluster, this server losing the runner lock."""
        running = self._job
        if running is not None and job.id == running.id and job.status is not JobStatus.RUNNING:
            self._interrupt.set()


async def _persist(change: Callable[[], Awaitable[T]]) -> T:
    """Make the store's change, trying again every RETRY seconds while it cannot keep it."""
    while True:
        try:
            return await change()
        except StorageUnavailable as exc:
            logger.warning("%s; trying again in %g s", exc.message, RETRY)
            await asyncio.sleep(RETRY)


async def _interrupted(event: asyncio.Event, delay: float) -> bool:
    """Sleep `delay` seconds, precisely; True if `event` was set first.

    A plain sleep overshoots: the kernel lets a long one run 0.1 % late (2 ms on a 2 s
    job) and asyncio rounds timeouts up to the millisecond. So this sleeps to 20 ms before
    the end, then to 1 ms before it, then yields to the loop until the deadline passes.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    for margin in (COARSE_MARGIN, FINE_MARGIN):
        step = deadline - margin - loop.time()
        if step > 0 and await _set_within(event, step):
            return True
    while True:
        await asyncio.sleep(0)
        if event.is_set():
            return True
        if loop.time() >= deadline:
            return False


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """True if `event` is set within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
