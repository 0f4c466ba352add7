"""Behaviours that planted faults once slipped past (issue 14): worker, store, wait, list, body.

Each test here failed with its fault planted (see TESTING.md) and passes without it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import aiohttp
import pytest

from backend.jobs import JOB_TYPES, JobType
from backend.protocol import HEALTH_PATH, JobStatus
from backend.store import Job, Limits, MemoryStore
from backend.worker import OFFLOAD_ABOVE, Worker
from tests.conftest import FAST, StartServer, until

SLOW = 1000.0  # time scale at which no job finishes during a test


@pytest.fixture
async def store() -> MemoryStore:
    """A store whose worker the test starts itself (so it can change a job's type first)."""
    return MemoryStore(Limits(time_scale=FAST))


@asynccontextmanager
async def running(store: MemoryStore) -> AsyncIterator[None]:
    """A worker on `store` for the length of an `async with`."""
    worker = asyncio.create_task(Worker(store).run())
    try:
        yield
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker


async def test_cancel_during_a_threaded_transform_stands(store: MemoryStore) -> None:
    """A cancel landing while a long text is transformed in a thread: cancelled, recorded once."""
    started, release = threading.Event(), threading.Event()

    def blocking(text: str) -> str:
        started.set()
        release.wait(10)
        return text[::-1]

    job = await store.submit("reverse", "x" * (OFFLOAD_ABOVE + 1))
    job.type = replace(JOB_TYPES[0], transform=blocking)
    async with running(store):
        await until(started.is_set, what="the transform started in its thread")
        await store.cancel(job.id)
        release.set()
        after = await store.submit("reverse", "ab")
        await store.wait(after, 10)
        assert after.status is JobStatus.DONE, "the worker survives the late finish"
        assert job.status is JobStatus.CANCELLED
        assert job.result is None
        counts = store.counts()
        assert (counts["cancelled"], counts["done"], counts["running"]) == (1, 1, 0)
        assert [j.id for j in store.newest(JobStatus.CANCELLED)] == [job.id]


async def test_positions_after_the_worker_skipped_a_cancelled_job(store: MemoryStore) -> None:
    """Once the worker passes a cancelled job, the jobs behind it count one fewer ahead."""
    store.limits = replace(store.limits, time_scale=SLOW)
    first, second, third, fourth = [await store.submit(1, t) for t in "abcd"]
    async with running(store):
        await until(lambda: first.status is JobStatus.RUNNING)
        await store.cancel(second.id)
        assert (store.position(third), store.position(fourth)) == (1, 2)
        await store.cancel(first.id)  # the worker skips `second` and starts `third`
        await until(lambda: third.status is JobStatus.RUNNING)
        assert store.position(fourth) == 1
        fifth = await store.submit(1, "e")
        assert store.position(fifth) == 2
        await store.cancel(third.id)
        await until(lambda: fourth.status is JobStatus.RUNNING)
        assert store.position(fifth) == 1


class _Odd(Exception):
    """Not a ValueError nor a TypeError: a transform may raise anything."""


@pytest.mark.parametrize("error", [_Odd("odd"), KeyError("k"), ZeroDivisionError("z")])
async def test_a_transform_raising_anything_fails_its_job_only(
    store: MemoryStore, error: Exception
) -> None:
    """Any exception from a transform fails that job; the worker runs the next."""

    def explode(text: str) -> str:
        raise error

    bad = await store.submit(1, "x")
    bad.type = JobType(9, "broken", "fails", 0.0, explode, len)
    good = await store.submit(1, "ab")
    async with running(store):
        await store.wait(good, 10)
    assert bad.status is JobStatus.FAILED
    assert bad.error is not None
    assert bad.error.startswith(type(error).__name__ + ":")
    assert good.status is JobStatus.DONE


async def test_wait_returns_when_only_the_position_changes(start_server: StartServer) -> None:
    """Given status and position, wait returns as soon as the position moves, still queued."""
    server = await start_server(time_scale=SLOW)
    ids = [(await server.call("submit", [1, t]))["result"]["id"] for t in "abc"]
    await until(lambda: server.store.running is not None)
    third = (await server.call("status", {"id": ids[2]}))["result"]
    assert (third["status"], third["position"]) == ("queued", 2)
    params = {"id": ids[2], "timeout": 30, "status": "queued", "position": 2}
    waiter = asyncio.create_task(server.call("wait", params))
    await until(lambda: server.store.waiting == 1)  # parked, so the cancel must wake it
    assert not waiter.done(), "nothing changed yet"
    await server.store.cancel(ids[1])  # a job ahead leaves: position 2 -> 1
    answer = (await asyncio.wait_for(waiter, 5))["result"]
    assert (answer["status"], answer["position"]) == ("queued", 1)


async def test_wait_with_timeout_zero_returns_at_once(start_server: StartServer) -> None:
    """`timeout: 0` answers with the job as it is, without waiting."""
    server = await start_server(time_scale=SLOW)
    job_id = (await server.call("submit", [1, "a"]))["result"]["id"]
    start = time.monotonic()
    answer = (await server.call("wait", {"id": job_id, "timeout": 0}))["result"]
    assert time.monotonic() - start < 0.5
    assert answer["status"] in ("queued", "running")


async def test_a_wait_in_a_batch_runs_beside_the_other_calls(start_server: StartServer) -> None:
    """A batch of two 0.4 s waits and a status takes about 0.4 s, not 0.8 s: side by side."""
    server = await start_server(time_scale=SLOW)
    job_id = (await server.call("submit", [1, "a"]))["result"]["id"]
    batch = [
        {"jsonrpc": "2.0", "method": "wait", "params": {"id": job_id, "timeout": 0.4}, "id": 1},
        {"jsonrpc": "2.0", "method": "status", "params": {"id": job_id}, "id": 2},
        {"jsonrpc": "2.0", "method": "wait", "params": {"id": job_id, "timeout": 0.4}, "id": 3},
    ]
    start = time.monotonic()
    status, body = await server.post(batch)
    elapsed = time.monotonic() - start
    assert status == 200
    assert sorted(item["id"] for item in body) == [1, 2, 3]
    assert all("result" in item for item in body)
    assert 0.4 <= elapsed < 0.75, elapsed


async def test_next_cursor_is_null_when_the_last_page_is_exactly_full(
    start_server: StartServer,
) -> None:
    """Six jobs in pages of three: the second page is full and has no next page."""
    server = await start_server(time_scale=SLOW)
    for n in range(6):
        await server.call("submit", [1, f"t{n}"])
    first = (await server.call("list", {"limit": 3}))["result"]
    assert first["next_cursor"] is not None
    second = (await server.call("list", {"limit": 3, "cursor": first["next_cursor"]}))["result"]
    assert len(second["jobs"]) == 3
    assert second["next_cursor"] is None
    whole = (await server.call("list", {"limit": 6}))["result"]
    assert len(whole["jobs"]) == 6
    assert whole["next_cursor"] is None


async def test_a_body_of_exactly_max_body_bytes_is_accepted(start_server: StartServer) -> None:
    """A body of max_body_bytes is answered; one byte more is refused with 413."""
    server = await start_server(max_body_bytes=1000)
    request = b'{"jsonrpc": "2.0", "method": "types", "id": 1}'
    exact = request + b" " * (1000 - len(request))
    assert len(exact) == 1000
    status, body = await server.post(exact)
    assert status == 200
    assert [t["name"] for t in body["result"]] == ["reverse", "swap", "repeat"]
    status, _ = await server.post(exact + b" ")
    assert status == 413


async def test_health_names_the_running_job(start_server: StartServer) -> None:
    """/healthz (with the token, here none is set) says a job runs, which one, and how many
    wait behind it."""
    server = await start_server(time_scale=SLOW)
    first = (await server.call("submit", [3, "runs"]))["result"]["id"]
    await until(lambda: server.store.running is not None, what="the first job to start")
    await server.call("submit", [3, "waits"])
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + HEALTH_PATH) as reply,
    ):
        health = await reply.json()
    assert (reply.status, health["status"]) == (200, "ok")
    assert (health["running"], health["running_id"], health["queued"]) == (True, first, 1)


class CancelledInTake(MemoryStore):
    """A store where a cancel lands while `take` is still on its way back to the worker, as
    on a cluster, where the cancel can come through another server during the take."""

    async def take(self) -> Job:
        job = await super().take()
        if job.data == "cancelled in take":
            await self.cancel(job.id)
        return job


async def test_a_job_cancelled_during_its_take_is_not_run() -> None:
    """A job whose cancel lands before the worker starts it is not slept on: the next runs."""
    store = CancelledInTake(Limits(time_scale=SLOW))
    async with running(store):
        first = await store.submit("reverse", "cancelled in take")
        await until(lambda: first.status is JobStatus.CANCELLED, what="the cancel")
        store.limits = replace(store.limits, time_scale=FAST)
        second = await store.submit("reverse", "runs next")
        async with asyncio.timeout(5):
            done = await store.wait(second, timeout=5)
        assert done.status is JobStatus.DONE
