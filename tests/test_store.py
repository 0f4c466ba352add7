"""The store and its one worker: order, exclusivity, transitions, cancel, failure, limits.

Every store-behaviour test runs against both single-server stores (memory only, and
memory plus the SQLite journal): one contract.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backend.jobs import JobType
from backend.journaled import JournaledStore
from backend.pgstore import PgStore
from backend.protocol import (
    AlreadyFinished,
    InvalidParams,
    JobCancelled,
    JobNotFound,
    JobStatus,
    QueueFull,
    ResultNotReady,
    ServerBusy,
)
from backend.store import Job, Limits, MemoryStore, Store, iso, new_id
from backend.waiters import Waiters
from backend.worker import Worker
from tests.conftest import FAST, until
from tests.pg import Cluster, drop_database, new_database

NewStore = Callable[[Limits], Awaitable[Store]]


@pytest.fixture(params=["memory", "journaled", "postgres"])
async def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NewStore]:
    """Open stores of the parametrised kind with the given limits; all shut down at the end.
    Each PostgreSQL store gets a database of its own on the session's cluster."""
    opened: list[Store] = []
    databases: list[str] = []
    cluster: Cluster | None = None
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")

    async def make(limits: Limits) -> Store:
        made: Store
        if request.param == "memory":
            made = MemoryStore(limits)
        elif cluster is None:
            made = JournaledStore(str(tmp_path / f"store-{len(opened)}.db"), limits)
        else:
            databases.append(await new_database(cluster))
            made = PgStore(databases[-1], limits)
        await made.open()
        opened.append(made)
        return made

    yield make
    for made in opened:
        made.close()
        await made.shutdown()
    for url in databases:
        assert cluster is not None
        await drop_database(cluster, url)


@pytest.fixture
async def store(new_store: NewStore) -> AsyncIterator[Store]:
    """A store with its worker running at the fast time scale."""
    jobs = await new_store(Limits(time_scale=FAST))
    worker = asyncio.create_task(Worker(jobs).run())
    yield jobs
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker


def rescale(store: Store, time_scale: float) -> None:
    """Jobs submitted from now on sleep at `time_scale` (the limits are one frozen value)."""
    store.limits = replace(store.limits, time_scale=time_scale)


def known(store: Store, job: Job) -> bool:
    """True if the store still holds the job (retention has not forgotten it)."""
    try:
        store.get(job.id)
    except JobNotFound:
        return False
    return True


async def finish(store: Store, job: Job) -> Job:
    """Wait (on the store's own events) until the job finishes."""
    return await store.wait(job, timeout=10)


async def test_fifo_and_never_two_at_once(store: Store) -> None:
    """24 mixed jobs run in submission order, each starting only after the previous finished."""
    jobs = [await store.submit((n % 3) + 1, f"job {n}") for n in range(24)]
    await finish(store, jobs[-1])
    assert all(job.status is JobStatus.DONE for job in jobs)
    starts = [job.started_at or 0.0 for job in jobs]
    assert starts == sorted(starts)
    for before, after in itertools.pairwise(jobs):
        assert before.finished_at is not None
        assert after.started_at is not None
        assert after.started_at >= before.finished_at


async def test_transitions_in_order(store: Store) -> None:
    """Every job goes queued → running → done, each change reported once."""
    seen: list[tuple[str, JobStatus]] = []
    store.subscribe(lambda job: seen.append((job.id, job.status)))
    first, second = await store.submit("reverse", "ab"), await store.submit("swap", "ab")
    await finish(store, second)
    for job in (first, second):
        assert [status for job_id, status in seen if job_id == job.id] == [
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.DONE,
        ]


async def test_result_many_times(store: Store) -> None:
    """A result can be read again and again."""
    job = await finish(store, await store.submit(3, "пример"))
    assert {store.result(job.id) for _ in range(5)} == {"прриииммммееееерррррр"}


async def test_result_not_ready_then_ready(store: Store) -> None:
    """Before it is done a result is not ready; after, it is."""
    rescale(store, 100.0)
    job = await store.submit(1, "ab")
    with pytest.raises(ResultNotReady, match="not ready"):
        store.result(job.id)
    rescale(store, FAST)
    quick = await store.submit(1, "cd")
    await store.cancel(job.id)
    await finish(store, quick)
    assert store.result(quick.id) == "dc"


async def test_cancel_queued(store: Store) -> None:
    """A cancelled queued job never runs; the ones behind it move up and still run."""
    rescale(store, 1.0)
    running = await store.submit(1, "a")
    await until(lambda: running.status is JobStatus.RUNNING)
    rescale(store, FAST)
    queued = [await store.submit(1, f"{n}") for n in range(3)]
    assert [store.position(job) for job in queued] == [1, 2, 3]
    await store.cancel(queued[1].id)
    assert queued[1].status is JobStatus.CANCELLED
    assert [store.position(job) for job in queued] == [1, None, 2]
    await store.cancel(running.id)
    await finish(store, queued[2])
    assert queued[1].started_at is None
    assert [job.status for job in queued] == [JobStatus.DONE, JobStatus.CANCELLED, JobStatus.DONE]
    with pytest.raises(JobCancelled):
        store.result(queued[1].id)


async def test_cancel_running(store: Store) -> None:
    """Cancelling the running job stops it at once and the next one starts."""
    rescale(store, 10.0)  # reverse sleeps 20 s unless stopped
    job = await store.submit(1, "a")
    await until(lambda: job.status is JobStatus.RUNNING)
    rescale(store, FAST)
    after = await store.submit(1, "b")
    await store.cancel(job.id)
    assert job.status is JobStatus.CANCELLED
    await finish(store, after)
    assert after.status is JobStatus.DONE
    assert job.result is None


async def test_cancel_finished_is_refused(store: Store) -> None:
    """A finished job cannot be cancelled, and says so."""
    job = await finish(store, await store.submit(1, "a"))
    with pytest.raises(AlreadyFinished, match="already done"):
        await store.cancel(job.id)


async def test_failing_job_does_not_stop_the_next(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A transform that raises makes its job failed; the worker goes on."""

    def explode(text: str) -> str:
        raise ValueError("boom")

    if isinstance(store, PgStore):
        pytest.skip("a job type made up in one process cannot travel through a shared database")
    broken = JobType(9, "broken", "fails", 1.0, explode, len)
    with monkeypatch.context() as patch:
        patch.setattr("backend.store.lookup", lambda key: broken)
        bad = await store.submit(1, "x")
    good = await store.submit(1, "ab")
    await finish(store, good)
    assert bad.status is JobStatus.FAILED
    assert bad.error == "ValueError: boom"
    assert good.status is JobStatus.DONE
    assert "raised" in caplog.text


async def test_large_text_runs_off_the_loop(store: Store) -> None:
    """A large transform happens in a thread; its result is the same."""
    text = "ab" * 5000
    job = await finish(store, await store.submit(1, text))
    assert job.result == text[::-1]


async def test_position_and_estimate(store: Store) -> None:
    """A queued job knows how many run before it and, exactly, when it will finish."""
    if not isinstance(store, MemoryStore):
        pytest.skip("a cluster times jobs by the database's clock: there is no clock to set")
    rescale(store, 1.0)
    clock = [1000.0]
    store._clock = lambda: clock[0]
    first = await store.submit(3, "a")  # 7 s
    await until(lambda: first.status is JobStatus.RUNNING)
    second, third = await store.submit(2, "b"), await store.submit(1, "c")  # 5 s, 2 s
    assert store.position(second) == 1
    assert store.position(third) == 2
    assert store.estimated_finish(first) == 1007.0
    assert store.estimated_finish(second) == 1012.0
    assert store.estimated_finish(third) == 1014.0
    clock[0] = 1003.0  # 3 s into the first job
    assert store.estimated_finish(third) == 1014.0
    await store.cancel(second.id)
    assert store.position(third) == 1
    assert store.estimated_finish(third) == 1009.0
    await store.cancel(first.id)
    await store.cancel(third.id)


async def test_wait_returns_at_change(store: Store) -> None:
    """Given what the caller saw, wait returns at the next change of status or position."""
    rescale(store, 1.0)
    first = await store.submit(1, "a")
    second = await store.submit(1, "b")
    await until(lambda: first.status is JobStatus.RUNNING)
    assert store.position(second) == 1
    waiter = asyncio.create_task(store.wait(second, 10, JobStatus.QUEUED, 1))
    await asyncio.sleep(0)
    assert not waiter.done()
    await store.cancel(first.id)  # second moves up, then starts: a change either way
    assert await asyncio.wait_for(waiter, 5) is second
    assert (second.status, store.position(second)) != (JobStatus.QUEUED, 1)
    await store.cancel(second.id)


async def test_wait_times_out_quietly(store: Store) -> None:
    """wait returns the current state when its timeout passes, without an error."""
    rescale(store, 100.0)
    job = await store.submit(1, "a")
    start = time.monotonic()
    assert (await store.wait(job, 0.05)).status in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert 0.05 <= time.monotonic() - start < 2  # it waited its timeout, not less
    await store.cancel(job.id)


async def test_close_wakes_waiters(store: Store) -> None:
    """On shutdown every waiter returns at once."""
    rescale(store, 100.0)
    job = await store.submit(1, "a")
    waiters = [asyncio.create_task(store.wait(job, 60)) for _ in range(20)]
    await asyncio.sleep(0.01)
    assert not any(waiter.done() for waiter in waiters), "a waiter returned before close()"
    store.close()
    done, _ = await asyncio.wait(waiters, timeout=2)
    assert len(done) == 20


async def test_waits_past_the_cap_get_server_busy(new_store: NewStore) -> None:
    """Past max_waiters waits in progress a wait raises ServerBusy at once; a place freed
    is taken again."""
    jobs = await new_store(Limits(time_scale=FAST, max_waiters=3))
    job = await jobs.submit(1, "a")  # no worker: it stays queued
    held = [asyncio.create_task(jobs.wait(job, 60)) for _ in range(3)]
    await until(lambda: jobs.waiting == 3, what="3 waits held")
    with pytest.raises(ServerBusy, match="3 waits are in progress"):
        await jobs.wait(job, 60)
    held.pop().cancel()
    await until(lambda: jobs.waiting == 2, what="a place freed")
    held.append(asyncio.create_task(jobs.wait(job, 60)))
    await until(lambda: jobs.waiting == 3, what="the place taken again")
    jobs.close()
    await asyncio.gather(*held)
    assert jobs.waiting == 0


@pytest.fixture
def parks(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times a wait parked (again) on each job id: a wake makes a wait park again."""
    parked: Counter[str] = Counter()
    real = Waiters.wait

    async def spy(self: Waiters, job_id: str, seq: int | None = None) -> None:
        parked[job_id] += 1
        await real(self, job_id, seq)

    monkeypatch.setattr(Waiters, "wait", spy)
    return parked


async def test_a_change_wakes_only_its_jobs_waits(new_store: NewStore, parks: Counter[str]) -> None:
    """A change to one job wakes the waits on it, not the waits on other jobs."""
    jobs = await new_store(Limits(time_scale=FAST))
    other, changed = await jobs.submit(1, "a"), await jobs.submit(1, "b")  # no worker
    on_other = [asyncio.create_task(jobs.wait(other, 60, JobStatus.QUEUED)) for _ in range(5)]
    on_changed = asyncio.create_task(jobs.wait(changed, 60, JobStatus.QUEUED))
    await until(lambda: jobs.waiting == 6, what="6 waits held")
    await jobs.cancel(changed.id)
    assert await asyncio.wait_for(on_changed, 10) is changed
    assert parks[other.id] == 5, "a wait on another job was woken"
    assert not any(task.done() for task in on_other)
    jobs.close()
    await asyncio.gather(*on_other)


async def test_a_cancel_wakes_the_position_watchers_behind_it_only(
    new_store: NewStore, parks: Counter[str]
) -> None:
    """Cancelling a queued job wakes the waits that watch the positions behind it, and
    those only: the jobs before it did not move."""
    jobs = await new_store(Limits(time_scale=FAST))
    first, second, third = [await jobs.submit(1, text) for text in "abc"]  # no worker
    assert (jobs.position(first), jobs.position(third)) == (0, 2)
    ahead = asyncio.create_task(jobs.wait(first, 60, JobStatus.QUEUED, 0))
    behind = asyncio.create_task(jobs.wait(third, 60, JobStatus.QUEUED, 2))
    await until(lambda: jobs.waiting == 2, what="2 waits held")
    await jobs.cancel(second.id)
    assert await asyncio.wait_for(behind, 10) is third
    assert jobs.position(third) == 1
    assert parks[first.id] == 1, "the wait on a job before the cancelled one was woken"
    jobs.close()
    await ahead


async def test_unknown_id(store: Store) -> None:
    """An unknown id is JobNotFound; a non-string id is InvalidParams."""
    with pytest.raises(JobNotFound):
        store.get("nope")
    with pytest.raises(InvalidParams, match="id must be a string"):
        store.get(5)


async def test_one_info_line_per_job(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """At info a job logs one line, when it ends: id, type, outcome, waited and ran."""
    caplog.set_level(logging.INFO, logger="taskrpc.store")
    job = await finish(store, await store.submit(1, "a"))
    cancelled = await store.cancel((await store.submit(1, "b")).id)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 2, lines
    assert re.fullmatch(
        rf"job {job.id} reverse done \(waited \d+\.\d{{3}} s, ran \d+\.\d{{3}} s\)", lines[0]
    )
    ended = rf"job {cancelled.id} reverse cancelled \(waited \d+\.\d{{3}} s, ran \d+\.\d{{3}} s\)"
    assert re.fullmatch(ended, lines[1])


async def test_start_lines_at_debug(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """At debug a job also logs when it is queued and when it starts running."""
    caplog.set_level(logging.DEBUG, logger="taskrpc.store")
    job = await finish(store, await store.submit(1, "a"))
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert lines[0] == f"job {job.id} reverse queued (0 ahead)"
    assert lines[1].startswith(f"job {job.id} reverse running (waited ")


def test_ids_are_random_and_shell_safe() -> None:
    """Ids carry 80 random bits in [a-z2-7], never start with '-', never repeat."""
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    for job_id in ids:
        assert len(job_id) == 16
        assert set(job_id) <= set("abcdefghijklmnopqrstuvwxyz234567")
    # Each of the 32 letters is equally likely (5 bits each): 5 000 expected, sd about 70.
    counts = Counter("".join(ids))
    assert len(counts) == 32
    assert all(4_500 < count < 5_500 for count in counts.values()), counts


# -- limits ------------------------------------------------------------------------------------


async def test_text_limit(new_store: NewStore) -> None:
    """A text over max_text_chars is refused at submit, saying the limit."""
    store = await new_store(Limits(max_text_chars=5))
    await store.submit(1, "12345")
    with pytest.raises(InvalidParams, match="6 code points long; the limit is 5"):
        await store.submit(1, "123456")


async def test_result_limit(new_store: NewStore) -> None:
    """repeat is refused at submit when its result would exceed max_result_chars."""
    store = await new_store(Limits(max_result_chars=10))
    await store.submit(3, "1234")  # 10 characters
    await store.submit(1, "1234567890")  # reverse: same length
    with pytest.raises(InvalidParams, match="repeat on this text would be 15 code points"):
        await store.submit(3, "12345")


async def test_queue_limit(new_store: NewStore) -> None:
    """Once max_queued jobs wait, submit is refused with QueueFull."""
    store = await new_store(Limits(max_queued=2))
    await store.submit(1, "a")
    await store.submit(1, "b")
    with pytest.raises(QueueFull, match="queue is full"):
        await store.submit(1, "c")


async def test_queued_characters_limit(new_store: NewStore) -> None:
    """Past max_queued_chars of waiting text, submit is refused with QueueFull."""
    store = await new_store(Limits(max_queued_chars=10))
    await store.submit(1, "abcdef")
    with pytest.raises(QueueFull, match="characters of text waiting"):
        await store.submit(1, "ghijk")
    await store.submit(1, "ghij")  # exactly at the limit


async def test_finished_jobs_are_evicted_oldest_first(store: Store) -> None:
    """Only max_finished finished jobs are kept; the oldest are forgotten first."""
    store.limits = replace(store.limits, max_finished=3)
    jobs = [await store.submit(1, str(n)) for n in range(6)]
    await finish(store, jobs[-1])
    for job in jobs[:3]:
        with pytest.raises(JobNotFound):
            store.get(job.id)
    assert [store.get(job.id) for job in jobs[3:]] == jobs[3:]
    assert store.counts()["done"] == 3


async def test_results_kept_are_bounded_in_characters(store: Store) -> None:
    """Finished jobs are also forgotten, oldest first, once their results pass max_kept_chars."""
    store.limits = replace(store.limits, max_kept_chars=25)
    jobs = [await store.submit(1, "x" * 10) for _ in range(4)]
    await finish(store, jobs[-1])
    kept = [job for job in jobs if known(store, job)]
    assert kept == jobs[2:]  # 20 characters; a third result would make 30
    big = await finish(store, await store.submit(1, "y" * 40))
    assert store.result(big.id) == "y" * 40  # the newest is kept even when over the limit alone
    assert [known(store, job) for job in jobs] == [False] * 4


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
@example(1.9999996)  # the microseconds round up to the next second
@example(1.9999993)  # they round down to 999 999: .999, not the next second
def test_iso_is_datetimes_iso_8601(timestamp: float) -> None:
    """Timestamps read exactly as datetime writes them: UTC, milliseconds, a Z."""
    expected = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    assert iso(timestamp) == expected.replace("+00:00", "Z")


@given(st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.booleans()), max_size=60))
def test_positions_and_estimates_match_a_plain_count(plan: list[tuple[int, bool]]) -> None:
    """After any mix of submits and cancels, position and estimate equal a count over the store."""
    store = MemoryStore(clock=lambda: 1000.0)

    async def submit_then_cancel() -> list[Job]:
        jobs = [await store.submit(kind, "x") for kind, _ in plan]
        for job, (_, cancel) in zip(jobs, plan, strict=True):
            if cancel:
                await store.cancel(job.id)
        return jobs

    jobs = asyncio.run(submit_then_cancel())
    waiting = [job for job in jobs if job.status is JobStatus.QUEUED]
    for n, job in enumerate(waiting):
        assert store.position(job) == n
        expected = 1000.0 + sum(j.delay for j in waiting[: n + 1])
        assert store.estimated_finish(job) == pytest.approx(expected)


async def test_a_failing_listener_does_not_stop_the_worker(store: Store) -> None:
    """A listener that raises is logged; jobs still run."""

    def broken(job: Job) -> None:
        raise RuntimeError("listener bug")

    store.subscribe(broken)
    job = await finish(store, await store.submit(1, "ab"))
    assert job.status is JobStatus.DONE


async def test_mass_cancel_then_skip_keeps_the_loop_responsive(store: Store) -> None:
    """Skipping 20 000 cancelled jobs never holds the event loop for long."""
    rescale(store, 1000.0)
    blocker = await store.submit(1, "a")
    await until(lambda: blocker.status is JobStatus.RUNNING)
    rescale(store, 0.0)
    # Side by side, so that a journaled store commits them in a few groups.
    jobs = await asyncio.gather(*(store.submit(1, "x") for _ in range(20_000)))
    await asyncio.gather(*(store.cancel(job.id) for job in reversed(jobs[:-1])))
    assert store.position(jobs[-1]) == 1
    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0)
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    await store.cancel(blocker.id)
    await finish(store, jobs[-1])
    ticking.cancel()
    assert jobs[-1].status is JobStatus.DONE
    assert max(gaps) < 0.25, f"the loop was held for {max(gaps):.3f} s"


async def test_list_by_status_is_newest_first(store: Store) -> None:
    """Filtering by status lists newest first, whatever order jobs reached that status in."""
    rescale(store, 1000.0)
    jobs = [await store.submit(1, str(n)) for n in range(6)]
    await until(lambda: jobs[0].status is JobStatus.RUNNING)
    assert list(store.newest(JobStatus.RUNNING)) == [jobs[0]]
    for n in (1, 4, 2):
        await store.cancel(jobs[n].id)
    assert list(store.newest(JobStatus.CANCELLED)) == [jobs[4], jobs[2], jobs[1]]
    assert list(store.newest(JobStatus.CANCELLED, before=jobs[4].seq)) == [jobs[2], jobs[1]]
    assert list(store.newest(JobStatus.QUEUED)) == [jobs[5], jobs[3]]
    for job in (jobs[0], jobs[3], jobs[5]):
        await store.cancel(job.id)


async def test_a_memory_only_store_says_what_a_stop_loses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Memory only: stopping with a running and a queued job says that they are lost."""
    store = MemoryStore(Limits(time_scale=100.0))
    running = await store.submit(1, "a")
    await store.submit(1, "b")
    assert await store.take() is running
    store.close()
    assert f"job {running.id} running and 1 queued: they are lost" in caplog.text
