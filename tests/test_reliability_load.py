"""Reliability under load: thousands of submits from many clients, then memory back to its bound."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from backend.protocol import JobStatus
from backend.store import Job
from cli.client import Client
from tests.conftest import Server, StartServer, until

CLIENTS = 100
PER_CLIENT = 50  # 100 x 50 = 5 000 submits
KEPT = 1_000  # max_finished during the load test: most finished jobs get evicted
TYPES = ("reverse", "swap", "repeat")
BACKEND = str(Path(__file__).resolve().parent.parent / "backend")


def expected(job_type: str, text: str) -> str:
    """The result for ASCII text, computed independently of backend.jobs."""
    if job_type == "reverse":
        return text[::-1]
    if job_type == "swap":
        chars = list(text)
        for i in range(0, len(chars) - 1, 2):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        return "".join(chars)
    return "".join(char * n for n, char in enumerate(text, start=1))


class Recorder:
    """Everything the queue reports while it runs: starts in order, and each outcome."""

    def __init__(self) -> None:
        self.queued: list[str] = []
        self.started: list[str] = []
        self.outcome: dict[str, tuple[JobStatus, str | None]] = {}
        self.finishes: Counter[str] = Counter()

    def __call__(self, job: Job) -> None:
        if job.status is JobStatus.QUEUED:
            self.queued.append(job.id)
        elif job.status is JobStatus.RUNNING:
            self.started.append(job.id)
        elif job.status.finished:
            self.finishes[job.id] += 1
            self.outcome[job.id] = (job.status, job.result)


async def test_5000_submits_from_100_clients_run_once_in_order(start_server: StartServer) -> None:
    """5 000 concurrent submits: unique ids, none fail, each runs once, FIFO, right result."""
    server = await start_server(time_scale=0, max_finished=KEPT)
    recorder = Recorder()
    unsubscribe = server.store.subscribe(recorder)
    submitted: dict[str, tuple[str, str]] = {}  # id -> (type, text)
    per_client: list[list[str]] = []

    async def one_client(number: int) -> None:
        ids: list[str] = []
        async with Client(server.url) as client:
            for n in range(PER_CLIENT):
                job_type = TYPES[(number + n) % len(TYPES)]
                text = f"c{number}n{n}-{'xyz'[: n % 4]}"
                job = await client.submit(job_type, text)  # raises on any failed request
                assert job["id"] not in submitted, f"duplicate id {job['id']}"
                submitted[job["id"]] = (job_type, text)
                ids.append(job["id"])
        per_client.append(ids)

    async with asyncio.timeout(60):
        await asyncio.gather(*(one_client(number) for number in range(CLIENTS)))
    total = CLIENTS * PER_CLIENT
    assert len(submitted) == total
    await until(lambda: len(recorder.outcome) == total, timeout=30, what="every job to finish")
    unsubscribe()

    assert recorder.started == recorder.queued, "jobs did not start in submission order"
    assert sorted(recorder.started) == sorted(submitted), "some job ran twice or never"
    assert set(recorder.finishes.values()) == {1}, "some job finished more than once"
    for job_id, (job_type, text) in submitted.items():
        assert recorder.outcome[job_id] == (JobStatus.DONE, expected(job_type, text)), job_id
    for ids in per_client:  # what each client alone can see: its jobs ran in its order
        positions = [recorder.started.index(job_id) for job_id in ids]
        assert positions == sorted(positions)

    kept = recorder.started[-KEPT:]  # the newest finished jobs are still answerable
    async with Client(server.url) as client:
        for job_id in kept[-50:]:
            assert await client.result(job_id) == expected(*submitted[job_id])
    assert list(server.memory_store._jobs) == kept, (
        "finished jobs beyond max_finished were not evicted"
    )
    assert not server.memory_store._pending
    assert not any(server.memory_store._holes.values())
    assert server.store.counts() == {**dict.fromkeys(map(str, JobStatus), 0), "done": KEPT}


async def _submit_batches(server: Server, jobs: int) -> None:
    """Submit `jobs` jobs in batches of 100 and wait until the queue is idle again."""
    for start in range(0, jobs, 100):
        batch: list[dict[str, Any]] = [
            {
                "jsonrpc": "2.0",
                "method": "submit",
                "params": {"type": TYPES[n % 3], "data": f"memory test job {n:06d}"},
                "id": n,
            }
            for n in range(start, start + 100)
        ]
        status, answer = await server.post(batch)
        assert status == 200
        assert all("result" in response for response in answer)
    await until(
        lambda: server.store.queued == 0 and server.store.running is None,
        timeout=20,
        what="the queue to drain",
    )


def _backend_bytes() -> int:
    """Bytes allocated by backend/ code that are still alive."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(inclusive=True, filename_pattern=BACKEND + "/*")]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def test_memory_returns_to_its_bound_once_finished_jobs_are_evicted(
    start_server: StartServer,
) -> None:
    """Past max_finished, more jobs do not grow the memory the server holds for them."""
    bound = 200
    server = await start_server(time_scale=0, max_finished=bound)
    tracemalloc.start()
    try:
        await _submit_batches(server, 3 * bound)  # fill up to the bound, and past it
        at_bound = _backend_bytes()
        await _submit_batches(server, 6 * bound)  # 1 200 more jobs: all but `bound` evicted
        after = _backend_bytes()
    finally:
        tracemalloc.stop()
    assert len(server.memory_store._jobs) == bound
    # Kept, 1 200 more jobs hold about 640 KiB; dict slack after churn is about 25 KiB.
    assert after - at_bound < 128 * 1024, (at_bound, after)
