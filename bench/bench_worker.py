"""The worker: the gap between one job finishing and the next starting, and real-scale timing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from datetime import datetime

from backend.protocol import JobStatus
from backend.store import Job, Limits, MemoryStore
from backend.worker import Worker
from bench.common import Row, Rpc, Server, log, median, percentile

GAP_JOBS = 1000
REAL_JOBS = 4  # `reverse` at time scale 1: 2 s each, 8 s in all
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as taskrpc-server logs


async def cycle(store: MemoryStore, jobs: int) -> tuple[list[float], float]:
    """(seconds from each job's `done` to the next one's `running` as a listener sees them,
    seconds per job overall) for `jobs` jobs on `store`, run by one worker."""
    seen: list[tuple[JobStatus, float]] = []
    all_done = asyncio.Event()

    def listener(job: Job) -> None:
        if job.status is not JobStatus.QUEUED:
            seen.append((job.status, time.perf_counter()))
            if len(seen) == 2 * jobs:
                all_done.set()

    await asyncio.gather(*(store.submit("reverse", "hello world") for _ in range(jobs)))
    store.subscribe(listener)
    began = time.perf_counter()
    worker = asyncio.create_task(Worker(store).run())
    async with asyncio.timeout(120):
        await all_done.wait()
    took = time.perf_counter() - began
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    gaps = [
        started - finished
        for (was, finished), (now, started) in zip(seen[1::2], seen[2::2], strict=False)
        if was is JobStatus.DONE and now is JobStatus.RUNNING
    ]
    return gaps, took / jobs


async def _gaps(jobs: int) -> list[float]:
    """The gaps of `jobs` jobs on a memory-only store at time scale 0."""
    gaps, _ = await cycle(MemoryStore(Limits(time_scale=0.0, max_queued=jobs)), jobs)
    return gaps


def gap(level: int) -> list[float]:
    """The gaps with the server's log format and `level`, logging to /dev/null."""
    root = logging.getLogger()
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - closed below
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    old_level, old_handlers = root.level, root.handlers[:]
    root.handlers[:] = [handler]
    root.setLevel(level)
    try:
        return asyncio.run(_gaps(GAP_JOBS))
    finally:
        root.handlers[:] = old_handlers
        root.setLevel(old_level)
        handler.stream.close()


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def real_scale() -> tuple[float, float]:
    """(total seconds, sum of delays) for REAL_JOBS `reverse` jobs on a real-scale server."""
    with Server.taskrpc("--time-scale", "1") as server:
        rpc = Rpc(server.port)
        ids = rpc.submit_many("reverse", "hello world", REAL_JOBS)
        last = rpc.call("wait", id=ids[-1], timeout=REAL_JOBS * 2 + 10)
        first = rpc.call("status", id=ids[0])
        rpc.close()
    if last["status"] != "done":
        raise RuntimeError(f"the last job is {last['status']}")
    total = _epoch(last["finished_at"]) - _epoch(first["started_at"])
    return total, REAL_JOBS * first["delay"]


def rows() -> list[Row]:
    log(f"gap between jobs: {GAP_JOBS} jobs at time scale 0, in-process")
    info = [g * 1e3 for g in gap(logging.INFO)]
    quiet = [g * 1e3 for g in gap(logging.WARNING)]
    log(f"real-scale run: {REAL_JOBS} reverse jobs at time scale 1")
    total, delays = real_scale()
    overhead = (total - delays) / REAL_JOBS * 1e3
    gap_ms = median(info)
    return [
        Row(
            f"gap job done → next running, {GAP_JOBS} queued, scale 0",
            f"{gap_ms:.3f} ms median",
            "—",
            None,
            "median < 0.2 ms",
            gap_ms < 0.2,
            f"p99 {percentile(info, 0.99):.3f} ms at log level info (the default); "
            f"median {median(quiet):.3f} ms, p99 {percentile(quiet, 0.99):.3f} ms at warning; "
            "MemoryStore + Worker in-process, timed by a listener",
        ),
        Row(
            f"real-scale total vs sum of delays, {REAL_JOBS} reverse jobs",
            f"{total:.3f} s",
            f"{delays:.3f} s delays",
            total / delays,
            "≤ 1 ms per job over",
            abs(overhead) <= 1.0,
            f"{overhead:+.3f} ms per job (server timestamps have 1 ms resolution)",
        ),
    ]
