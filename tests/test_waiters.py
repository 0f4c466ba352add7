"""Waits: O(1) bookkeeping, woken by their own job only, capped; and the other queue bounds."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any

import aiohttp
import pytest

from backend.pacing import DECODE_PER_TURN, SLICE, decode_turn, side_by_side
from backend.protocol import ErrorCode, JobStatus
from backend.store import Limits, MemoryStore
from backend.waiters import Waiters
from tests.conftest import StartServer, until

SLOW = 1000.0  # time scale at which no job finishes during a test


async def test_a_wake_reaches_only_the_waits_of_its_job() -> None:
    """wake(a) ends the waits on a and leaves the waits on b parked; dropped, those leave
    nothing filed behind (a job that never changes again must not hold them)."""
    waiters = Waiters()
    on_a = [asyncio.create_task(waiters.wait("a")) for _ in range(100)]
    on_b = [asyncio.create_task(waiters.wait("b")) for _ in range(100)]
    await until(lambda: waiters.count == 200, what="200 parked waits")
    waiters.wake("a")
    await asyncio.wait_for(asyncio.gather(*on_a), 10)  # woken, or a failure (not a hang)
    assert waiters.count == 100
    assert not any(task.done() for task in on_b)
    for task in on_b:
        task.cancel()
    await asyncio.gather(*on_b, return_exceptions=True)
    assert waiters.count == 0
    assert waiters._by_job == {}


async def test_a_wait_filed_between_a_wake_and_the_return_of_its_waits() -> None:
    """A wait filed on a job after a wake, before the waits it woke have returned: each returns
    at its own wake, and both leave nothing filed behind."""
    waiters = Waiters()
    first = asyncio.create_task(waiters.wait("x"))
    await until(lambda: waiters.count == 1, what="a parked wait")
    second = asyncio.create_task(waiters.wait("x"))  # parks after the wake, before first returns
    waiters.wake("x")
    await asyncio.wait_for(first, 10)
    assert not second.done()
    waiters.wake("x")
    await asyncio.wait_for(second, 10)
    assert waiters._by_job == {}


async def test_a_move_up_wakes_the_position_watchers_behind_only() -> None:
    """wake_positions_behind(s) wakes the waits that watch jobs after s, not before it."""
    waiters = Waiters()
    watching = {seq: asyncio.create_task(waiters.wait(f"job{seq}", seq)) for seq in range(10)}
    plain = asyncio.create_task(waiters.wait("job7"))  # waits for job7 itself, not its place
    await until(lambda: waiters.count == 11, what="11 parked waits")
    waiters.wake_positions_behind(4)
    await asyncio.wait_for(
        asyncio.gather(*(watching[seq] for seq in range(5, 10))), 10
    )  # woken, or a failure (not a hang)
    assert not any(watching[seq].done() for seq in range(5))
    assert not plain.done()
    waiters.wake_all()
    await asyncio.wait_for(
        asyncio.gather(*watching.values(), plain), 10
    )  # woken, or a failure (not a hang)
    assert waiters.count == 0


async def test_dropping_many_waits_is_quick() -> None:
    """Cancelling 20 000 parked waits takes well under a second (it was quadratic)."""
    waiters = Waiters()
    tasks = [asyncio.create_task(waiters.wait("same", 1)) for _ in range(20_000)]
    await until(lambda: waiters.count == 20_000, what="20 000 parked waits")
    loop = asyncio.get_running_loop()
    started = loop.time()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert waiters.count == 0
    assert loop.time() - started < 1.0


@pytest.mark.parametrize("parked", [200, 201])  # both parities meet the bound exactly
async def test_stale_seqs_are_swept_once_they_pass_twice_the_watched_ones_plus_64(
    parked: int,
) -> None:
    """The sorted list of watched seqs keeps stale entries up to twice the watched seqs plus 64
    (a memory bound), and is rebuilt only past that (each rebuild's cost is spread over as many
    drops as it frees): after every drop of a position wait, one or the other holds."""
    waiters = Waiters()
    watched = [asyncio.create_task(waiters.wait(f"kept{seq}", seq)) for seq in range(10)]
    dropped = [asyncio.create_task(waiters.wait(f"job{seq}", 100 + seq)) for seq in range(parked)]
    await until(lambda: waiters.count == parked + 10, what="the parked waits")
    rebuilds = 0
    for task in dropped:
        before = len(waiters._seqs)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        live = len(waiters._by_seq)
        if len(waiters._seqs) == before:
            assert before <= 2 * live + 64, (before, live)
        else:
            assert before > 2 * live + 64, (before, live)
            assert waiters._seqs == sorted(waiters._by_seq)
            rebuilds += 1
    assert rebuilds == 1  # 210 or 211 seqs, down to the 72 or 73 still watched
    waiters.wake_positions_behind(-1)
    await asyncio.wait_for(asyncio.gather(*watched), 10)  # woken, or a failure (not a hang)


def _wait(job_id: str, timeout: float = 30) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "wait", "params": {"id": job_id, "timeout": timeout}}


async def test_waits_past_max_waiters_get_server_busy_at_once(
    start_on_each_store: StartServer,
) -> None:
    """Past max_waiters waits in progress, a wait answers at once: -32008 with the job as data."""
    server = await start_on_each_store(time_scale=SLOW, max_waiters=3)
    job = await server.store.submit("reverse", "x")
    await until(lambda: job.status is JobStatus.RUNNING, what="the job to run")
    held = [
        asyncio.create_task(server.call("wait", {"id": job.id, "timeout": 30})) for _ in range(3)
    ]
    await until(lambda: server.store.waiting == 3, what="3 waits held")
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as reply:
        assert (await reply.json())["waiting"] == 3  # what an operator sees of the limit
    async with asyncio.timeout(5):
        answer = await server.call("wait", {"id": job.id, "timeout": 30})
    assert answer["error"]["code"] == ErrorCode.SERVER_BUSY
    assert answer["error"]["data"]["id"] == job.id
    assert answer["error"]["data"]["status"] == JobStatus.RUNNING
    await server.store.cancel(job.id)  # the held ones end with the job
    for done in await asyncio.gather(*held):
        assert done["result"]["status"] == JobStatus.CANCELLED


async def test_the_characters_of_queued_texts_are_bounded(start_on_each_store: StartServer) -> None:
    """Past max_queued_chars of waiting text, a submit is refused as queue full."""
    server = await start_on_each_store(time_scale=SLOW, max_queued_chars=25)
    await server.store.submit("reverse", "x" * 10)
    await until(lambda: server.store.running is not None, what="the first job to run")
    for _ in range(2):
        await server.store.submit("reverse", "x" * 10)  # 20 characters wait
    answer = await server.call("submit", {"type": "reverse", "data": "x" * 6})
    assert answer["error"]["code"] == ErrorCode.QUEUE_FULL
    assert "characters" in answer["error"]["message"]
    assert "result" in await server.call("submit", {"type": "reverse", "data": "x" * 5})


async def test_a_sent_text_keeps_no_utf8_copy(start_server: StartServer) -> None:
    """Sending a job's emoji text (status, wait) does not double what the kept text costs."""
    server = await start_server(time_scale=SLOW)
    job = await server.store.submit("reverse", "😀" * 10_000)
    before = sys.getsizeof(job.data)
    for _ in range(2):
        assert (await server.call("status", {"id": job.id}))["result"]["data"] == job.data
    assert sys.getsizeof(job.data) == before


@pytest.mark.parametrize("status", [None, *JobStatus])
async def test_pages_with_a_cursor_match_a_plain_filter(status: JobStatus | None) -> None:
    """Walking `newest` from any cursor gives the jobs a plain filter gives, newest first."""
    store = MemoryStore(Limits(time_scale=0, max_finished=40))
    jobs = [await store.submit("reverse", f"job {n}") for n in range(120)]
    for job in jobs[:60]:  # 60 finished: 40 kept, some done, some cancelled or failed
        taken = await store.take()
        outcome = (JobStatus.DONE, JobStatus.FAILED)[taken.seq % 7 == 0]
        await store.finish(taken, outcome, result="r", error="e")
        assert taken is job
    for job in jobs[70::3]:
        await store.cancel(job.id)
    await store.take()  # one running
    known = [job for job in jobs if store._jobs.get(job.id) is job]
    for before in (None, 0, 1, 50, 61, 75, 119, 500):
        expected = [
            job
            for job in reversed(known)
            if (before is None or job.seq < before) and (status is None or job.status is status)
        ]
        assert list(store.newest(status, before)) == expected, (status, before)


async def test_a_batch_starts_and_is_cancelled_a_slice_per_turn() -> None:
    """side_by_side starts at most SLICE tasks per loop turn, and cancels them likewise."""
    loop = asyncio.get_running_loop()
    turns = 0
    started_in_turn: list[int] = []

    async def parked(parked_at: list[int]) -> None:
        parked_at.append(turns)
        await asyncio.Future()  # forever, until cancelled

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ticker = loop.create_task(count_turns())
    calls = (parked(started_in_turn) for _ in range(4 * SLICE))
    batch = asyncio.ensure_future(side_by_side(calls))
    await until(lambda: len(started_in_turn) == 4 * SLICE, what="every task started")
    assert max(Counter(started_in_turn).values()) <= SLICE
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    ticker.cancel()


async def test_large_bodies_are_decoded_at_most_decode_per_turn_bytes_a_turn() -> None:
    """decode_turn lets DECODE_PER_TURN bytes through per loop turn; one larger body alone."""
    loop = asyncio.get_running_loop()
    turns = 0
    decoded: list[tuple[int, int]] = []  # (turn, size)

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def body(size: int) -> None:
        await decode_turn(size)
        decoded.append((turns, size))

    ticker = loop.create_task(count_turns())
    sizes = [86_000] * 50 + [2 * DECODE_PER_TURN] + [86_000] * 5
    await asyncio.gather(*(body(size) for size in sizes))
    ticker.cancel()
    per_turn: Counter[int] = Counter()
    alone: set[int] = set()
    for turn, size in decoded:
        per_turn[turn] += size
        if size > DECODE_PER_TURN:
            alone.add(turn)
    assert len(decoded) == len(sizes)
    assert all(total <= DECODE_PER_TURN or turn in alone for turn, total in per_turn.items())
    assert all(per_turn[turn] == 2 * DECODE_PER_TURN for turn in alone)
