"""Store behaviours that the survivors of a full mutation run showed unpinned (issue 14).

Each test here failed with the mutants it names planted by hand (TESTING.md, "Survivors of
the full run, second pass"). In-process stores, a real SQLite file for the journaled one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest

from backend import store as store_module
from backend import worker as worker_module
from backend.jobs import lookup
from backend.journaled import PRESTART_SCAN, JournaledStore
from backend.protocol import PREVIEW_CHARS, InvalidParams, JobStatus, QueueFull, ServerBusy
from backend.store import Limits, MemoryStore, id_key, iso, job_summary, kind
from backend.worker import Worker
from tests.conftest import until

FAST = Limits(time_scale=100.0)


def test_text_not_sixteen_characters_long_keys_as_itself() -> None:
    """Only a 16-character id can key as a number: `b` is not the id `aaaaaaaaaaaaaaab`."""
    for text in ("b", "abc", "a" * 15, "a" * 17):
        assert id_key(text) == text
    assert isinstance(id_key("a" * 16), int)


def test_an_id_that_is_not_text_is_refused_by_its_type_name() -> None:
    """`get` of a number is InvalidParams naming the type that came: `int`."""
    with pytest.raises(InvalidParams, match=r"^id must be a string, not int$"):
        MemoryStore(FAST).get(5)


async def test_a_summary_gives_when_the_job_was_submitted_started_and_finished() -> None:
    """A listing's summary has the three times of a finished job, read from the store's clock."""
    now = [1000.0]
    store = MemoryStore(FAST, clock=lambda: now[0])
    job = await store.submit("swap", "ab")
    now[0] = 1001.5
    assert await store.take() is job
    now[0] = 1003.25
    await store.finish(job, JobStatus.DONE, result="ba")
    summary = job_summary(job, None)
    times = (summary["submitted_at"], summary["started_at"], summary["finished_at"])
    assert times == (iso(1000.0), iso(1001.5), iso(1003.25))


async def test_a_preview_reads_at_most_four_code_points_a_character() -> None:
    """Long clusters cut a preview at 4 * PREVIEW_CHARS code points: a listing stays bounded."""
    text = ("e" + "\u0301" * 4) * PREVIEW_CHARS  # five code points a character
    job = await MemoryStore(FAST).submit("swap", text)
    assert job_summary(job, 0)["preview"] == text[: PREVIEW_CHARS * 4]


async def test_a_cancelled_queued_job_gives_its_characters_back_to_the_queue() -> None:
    """After a cancel, the queue holds max_queued_chars of text again, exactly."""
    store = MemoryStore(Limits(time_scale=100.0, max_queued_chars=10))
    first = await store.submit("swap", "x" * 6)
    with pytest.raises(QueueFull):
        await store.submit("swap", "y" * 5)
    await store.cancel(first.id)
    assert (await store.submit("swap", "y" * 10)).status is JobStatus.QUEUED


async def test_the_first_queued_job_sees_its_position_move_when_the_first_job_ends() -> None:
    """A position wait on seq 1 returns when the job of seq 0 ends: it moved up one."""
    store = MemoryStore(FAST)
    first, second = [await store.submit("swap", text) for text in "ab"]
    assert (first.seq, second.seq) == (0, 1)
    assert await store.take() is first
    seen = store.position(second)
    waiting = asyncio.create_task(store.wait(second, 60, JobStatus.QUEUED, seen))
    await until(lambda: store._waiters.count == 1, what="the parked wait")
    await store.finish(first, JobStatus.DONE, result="a")
    assert await asyncio.wait_for(waiting, 5) is second
    assert store.position(second) == 0


async def test_a_wait_whose_answer_is_there_is_answered_when_the_waits_are_full() -> None:
    """With max_waiters parked, a wait on a job already changed from what it saw returns at
    once (status or position); only one that would have to wait is ServerBusy."""
    store = MemoryStore(Limits(time_scale=100.0, max_waiters=1))
    running, queued, parked_on = [await store.submit("swap", text) for text in "abc"]
    assert await store.take() is running
    parked = asyncio.create_task(store.wait(parked_on, 60, JobStatus.QUEUED))
    await until(lambda: store._waiters.count == 1, what="the parked wait")
    assert await store.wait(running, 60, JobStatus.QUEUED) is running
    position = store.position(queued)
    assert position is not None
    assert await store.wait(queued, 60, JobStatus.QUEUED, position + 1) is queued
    with pytest.raises(ServerBusy):
        await store.wait(queued, 60, JobStatus.QUEUED, position)
    await store.cancel(parked_on.id)
    assert await asyncio.wait_for(parked, 5) is parked_on


async def test_a_wait_with_no_time_takes_no_place_from_the_waits() -> None:
    """wait(timeout=0) returns without parking: a wait beside it still parks at max_waiters=1."""
    store = MemoryStore(Limits(time_scale=100.0, max_waiters=1))
    job = await store.submit("swap", "a")
    at_once = asyncio.create_task(store.wait(job, 0, JobStatus.QUEUED))
    parked = asyncio.create_task(store.wait(job, 60, JobStatus.QUEUED))
    await until(lambda: at_once.done() and store._waiters.count == 1, what="one parked wait")
    assert at_once.result() is job
    await store.cancel(job.id)
    assert await asyncio.wait_for(parked, 5) is job


async def test_only_a_wait_on_a_queued_jobs_position_is_filed_by_seq() -> None:
    """A wait on the status alone is not woken by moves in the queue: it is not filed by seq."""
    store = MemoryStore(FAST)
    queued = await store.submit("swap", "a")
    status_only = asyncio.create_task(store.wait(queued, 60, JobStatus.QUEUED))
    await until(lambda: store._waiters.count == 1, what="the status wait")
    assert store._waiters._by_seq == {}  # the waits parked by seq, which queue moves wake
    watching = asyncio.create_task(store.wait(queued, 60, JobStatus.QUEUED, 0))
    await until(lambda: store._waiters.count == 2, what="the position wait")
    assert list(store._waiters._by_seq) == [queued.seq]
    await store.cancel(queued.id)
    assert list(await asyncio.wait_for(asyncio.gather(status_only, watching), 5)) == [queued] * 2


async def test_a_job_ending_at_clock_zero_logs_that_time(caplog: pytest.LogCaptureFixture) -> None:
    """The info line takes an end at 0.0 on the store's clock as a time, not as none."""
    store = MemoryStore(FAST, clock=lambda: 0.0)
    job = await store.submit("swap", "a")
    caplog.set_level(logging.INFO, "taskrpc.store")
    await store.cancel(job.id)
    says = f"job {job.id} swap cancelled (waited 0.000 s, ran 0.000 s)"
    assert [record.getMessage() for record in caplog.records] == [says]


async def _journaled(path: Path) -> JournaledStore:
    store = JournaledStore(str(path), FAST)
    await store.open()
    return store


async def test_finish_starts_the_next_job_only_within_prestart_scan_of_the_head(
    tmp_path: Path,
) -> None:
    """`finish` starts the next job in its own commit past up to PRESTART_SCAN cancelled
    ones, and no further (a bound on its look): past more, `take` starts it."""

    async def started_by_finish(cancelled: int) -> bool:
        store = await _journaled(tmp_path / f"scan-{cancelled}.db")
        try:
            head = await store.submit("swap", "head")
            skipped = await asyncio.gather(*(store.submit("swap", "x") for _ in range(cancelled)))
            after = await store.submit("swap", "next")
            await asyncio.gather(*(store.cancel(job.id) for job in skipped))
            assert await store.take() is head
            await store.finish(head, JobStatus.DONE, result="daeh")
            started = after.status is JobStatus.RUNNING
            assert await store.take() is after
            return started
        finally:
            store.close()
            await store.shutdown()

    assert await started_by_finish(PRESTART_SCAN)
    assert not await started_by_finish(PRESTART_SCAN + 1)


async def test_a_cancel_committed_before_a_finish_keeps_the_next_job_from_starting(
    tmp_path: Path,
) -> None:
    """The job a finish would start was cancelled in the commit just before: it stays
    cancelled, and nothing runs."""
    store = await _journaled(tmp_path / "race.db")
    try:
        head, after = [await store.submit("swap", text) for text in ("head", "next")]
        assert await store.take() is head
        await asyncio.gather(store.cancel(after.id), store.finish(head, JobStatus.DONE))
        assert (head.status, after.status) == (JobStatus.DONE, JobStatus.CANCELLED)
        assert store.counts()["running"] == 0
    finally:
        store.close()
        await store.shutdown()


async def test_the_worker_tries_a_change_the_disk_refuses_again_every_retry_seconds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finish the full disk refuses is tried again RETRY seconds later, not in a spin, and
    is kept once the disk has room."""
    monkeypatch.setattr(worker_module, "RETRY", 0.05)
    store = JournaledStore(
        str(tmp_path / "full.db"), Limits(time_scale=0.0, max_text_chars=100_000)
    )
    await store.open()
    job = await store.submit("reverse", "x" * 100_000)  # its result needs pages of its own
    await store.journal.limit_pages(0)
    caplog.set_level(logging.WARNING, "taskrpc.worker")
    worker = asyncio.create_task(Worker(store).run())
    try:
        await until(lambda: len(tries(caplog)) >= 3, what="three tries of the finish")
        times = tries(caplog)[:3]
        assert min(later - earlier for earlier, later in itertools.pairwise(times)) >= 0.04
        await store.journal.limit_pages(None)
        assert (await store.wait(job, 10)).status is JobStatus.DONE
    finally:
        worker.cancel()
        store.close()
        await store.shutdown()


def tries(caplog: pytest.LogCaptureFixture) -> list[float]:
    """When the worker said it would try a change again."""
    return [record.created for record in caplog.records if record.name == "taskrpc.worker"]


async def test_a_cancel_committed_before_a_take_makes_it_start_the_next_job(
    tmp_path: Path,
) -> None:
    """The head cancelled in the commit just before take() marks it running: take() passes
    it and starts the job after it."""
    store = await _journaled(tmp_path / "take-race.db")
    try:
        head, after = [await store.submit("swap", text) for text in ("head", "next")]
        _, taken = await asyncio.gather(store.cancel(head.id), store.take())
        assert taken is after
        assert (head.status, after.status) == (JobStatus.CANCELLED, JobStatus.RUNNING)
    finally:
        store.close()
        await store.shutdown()


@pytest.mark.parametrize(("jobs", "rows"), [(1, 1), (2, 2), (3, 4), (5, 8), (8, 8)])
async def test_a_batch_of_submits_is_one_insert_padded_to_a_power_of_two_rows(
    tmp_path: Path, jobs: int, rows: int
) -> None:
    """Submits of one turn are one INSERT whose rows are the power of two at or above their
    count (a few statement shapes to prepare, not one per batch size)."""
    store = await _journaled(tmp_path / f"insert-{jobs}.db")
    statements: list[str] = []
    try:
        connection = store._journal.connection
        assert connection is not None
        connection.set_trace_callback(statements.append)
        await asyncio.gather(*(store.submit("swap", f"job {n}") for n in range(jobs)))
        connection.set_trace_callback(None)
    finally:
        store.close()
        await store.shutdown()
    (insert,) = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    values = insert.partition("VALUES")[2].partition(") WHERE")[0]
    assert values.count("), (") + 1 == rows, insert


def test_jobs_share_their_kind_and_the_cache_of_kinds_is_bounded() -> None:
    """Every job of a type and delay holds the same `Kind`; the cache of kinds never holds
    more than its bound, however many time scales come and go."""
    reverse = lookup("reverse")
    assert reverse is not None
    assert kind(reverse, 2.0) is kind(reverse, 2.0)
    for n in range(2 * store_module._MOST_KINDS):
        kind(reverse, float(n))
        assert len(store_module._KINDS) <= store_module._MOST_KINDS


def test_a_job_keeps_ascii_text_as_bytes_and_gives_it_back_as_text() -> None:
    """ASCII text is held as bytes (a str costs 16 bytes more a job); other text as it is."""
    job = MemoryStore(FAST)._new_job("reverse", "plain")
    assert job._text == b"plain"
    assert job.data == "plain"
    other = MemoryStore(FAST)._new_job("reverse", "пример")
    assert other._text == other.data == "пример"


async def test_the_worker_lets_others_in_once_every_1024_cancelled_jobs_it_passes() -> None:
    """Passing cancelled jobs at the head of the queue gives the loop one turn after every
    1024 of them (and only then): a mass cancel never holds the loop for long."""

    async def turns_given(cancelled: int) -> int:
        store = MemoryStore(FAST)
        jobs = [await store.submit("swap", "x") for _ in range(cancelled)]
        head = await store.submit("swap", "head")
        for job in jobs:
            await store.cancel(job.id)
        taking = asyncio.ensure_future(store.take())
        turns = 0
        while not taking.done():  # each of our turns: one the worker gave
            await asyncio.sleep(0)
            turns += 1
        assert taking.result() is head
        return turns - 1  # the last one: take() had finished

    assert [await turns_given(n) for n in (1023, 1024, 2048)] == [0, 1, 2]
