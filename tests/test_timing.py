"""Timing at real scale: each type takes its nominal delay; clients never wait on a job."""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
import pytest

from backend.jobs import JOB_TYPES, JobType
from backend.protocol import JobStatus
from backend.worker import OFFLOAD_ABOVE
from cli.client import Client
from cli.render import seconds
from tests.conftest import StartServer, until

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("job_type", JOB_TYPES, ids=lambda t: t.name)
async def test_real_delay(start_server: StartServer, job_type: JobType) -> None:
    """At time scale 1 a job takes its nominal delay: >= delay, < delay + 0.5 s."""
    server = await start_server(time_scale=1.0)
    async with Client(server.url) as client:
        began = time.monotonic()
        job = await client.submit(job_type.code, "пример")
        job = await client.wait(job["id"], timeout=job_type.delay + 5)
        waited = time.monotonic() - began
        assert await client.result(job["id"]) == job_type.transform("пример")
    started, finished = seconds(job["started_at"]), seconds(job["finished_at"])
    assert started is not None
    assert finished is not None
    assert job_type.delay <= finished - started < job_type.delay + 0.5
    assert job_type.delay <= waited < job_type.delay + 0.5


async def test_clients_never_wait_on_the_running_job(start_server: StartServer) -> None:
    """While a 2 s job runs, 500 status calls from 50 concurrent clients are all answered."""
    server = await start_server(time_scale=1.0)
    job = await server.store.submit("reverse", "x" * 5000)
    await until(lambda: job.status is JobStatus.RUNNING)
    began = time.monotonic()

    async def one_client() -> list[str]:
        answers = []
        async with aiohttp.ClientSession() as session:
            for n in range(10):
                request = {"jsonrpc": "2.0", "method": "status", "params": [job.id], "id": n}
                async with session.post(server.url + "/rpc", json=request) as reply:
                    answers.append((await reply.json())["result"]["status"])
        return answers

    results = await asyncio.gather(*(one_client() for _ in range(50)))
    elapsed = time.monotonic() - began
    assert sum(len(r) for r in results) == 500
    assert {status for r in results for status in r} == {"running"}
    assert job.status is JobStatus.RUNNING, f"answers took {elapsed:.2f} s, longer than the job"


async def test_a_heavy_transform_runs_off_the_loop(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a transform holds its thread on a large text, status calls still answer at once."""
    release = threading.Event()

    def heavy(text: str) -> str:
        release.wait(timeout=10)  # holds its thread, as a long computation would
        return text[::-1]

    slow = JobType(1, "reverse", "slow", 0.0, heavy, len)
    monkeypatch.setattr("backend.store.lookup", lambda key: slow)
    server = await start_server(time_scale=0.0)
    job = await server.store.submit(1, "x" * (OFFLOAD_ABOVE + 1))
    await until(lambda: job.status is JobStatus.RUNNING)
    latencies = []
    for _ in range(20):
        began = time.monotonic()
        assert (await server.call("status", [job.id]))["result"]["status"] == "running"
        latencies.append(time.monotonic() - began)
    release.set()
    await until(lambda: job.status is JobStatus.DONE)
    assert max(latencies) < 0.5, f"a status call waited {max(latencies):.2f} s"
