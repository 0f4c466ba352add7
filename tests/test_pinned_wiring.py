"""Wiring the suite checked only late: each setting reaching its component, and the store's
and journal's small steps, pinned by tests that take milliseconds (issue 14).

`make mutate` runs, for each mutant, the tests that reach the mutated function, fastest
first, and stops at the first failure. The mutants here were killed, but only by slow
tests that come late: 13 to 111 s each (TESTING.md, "Late kills made early"). These tests
run in process, on a memory store or a journal in tmp_path, so they come first and end
such a mutant at once. Reading an aiohttp object's configured attributes is the point
where the wiring itself is the behaviour (a keep-alive of 4.5 s is not worth a 4.5 s test).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from backend import ws
from backend.app import (
    API,
    SETTINGS,
    SHUTDOWN_GRACE,
    STORE,
    WORKER,
    _worker,
    create_app,
    limits,
    served_url,
    start,
)
from backend.connections import Gate, GatedSite, _Guarded
from backend.envelope import dumps
from backend.gate import HTTP_LOG
from backend.journal import MOST_ROWS, VACUUM_PAGES, Journal, Shared, _append, _Group
from backend.journaled import JournaledStore, _all
from backend.protocol import (
    HEALTH_PATH,
    RPC_PATH,
    WS_PATH,
    ErrorCode,
    JobStatus,
    StorageUnavailable,
)
from backend.settings import Settings
from backend.store import Limits, MemoryStore, iso, job_object
from backend.worker import _interrupted
from tests.conftest import until

# Every value differs from its default, so a setting dropped on its way shows.
WIRED = Settings(
    port=0,
    db=":memory:",
    token="wired-token",
    max_body_bytes=12_345,
    max_wait=7.5,
    max_batch=9,
    max_subscribers=3,
    max_connections=11,
    head_timeout=2.5,
    keepalive_timeout=4.5,
    access_log=True,
)
DEADLINE = 2.0  # seconds to wait for what takes milliseconds (a loaded machine)


# -- create_app: every setting reaches its component -------------------------------------


async def test_create_app_hands_each_setting_to_its_component() -> None:
    """The body limit, the Api's max_wait and max_batch and the hub's token, message size and
    socket cap are the settings' values; the app keeps its settings and its store."""
    settings = WIRED
    app = create_app(settings)
    assert app._client_max_size == 12_345  # a chunked body past it is refused while read
    assert app[SETTINGS] is settings
    api = app[API]
    assert (api.store, api.max_wait, api.max_batch) == (app[STORE], 7.5, 9)
    hub = app[ws.HUB]
    assert (hub.queue, hub.api) == (app[STORE], api)
    assert (hub.token, hub.max_message, hub.max_sockets) == ("wired-token", 12_345, 3)


async def test_create_app_never_inflates_and_logs_through_the_filter() -> None:
    """Request handlers get exactly auto_decompress off and the filtered HTTP log."""
    app = create_app(WIRED)
    assert app._handler_args == {"auto_decompress": False, "logger": HTTP_LOG}


async def test_create_app_serves_its_routes_and_hooks() -> None:
    """POST /rpc, GET /healthz and GET /ws are routed; the worker, the waiters' wake-up and
    the sockets' closing are hooked to the app's life."""
    app = create_app(WIRED)
    routes = {
        (route.method, resource.canonical)
        for resource in app.router.resources()
        for route in resource
    }
    assert {("POST", RPC_PATH), ("GET", HEALTH_PATH), ("GET", WS_PATH)} <= routes
    assert len(app.cleanup_ctx) == 1  # the worker: started with the app, stopped with it
    assert app[ws.HUB].close_all in app.on_shutdown
    assert len(app.on_shutdown) == 2  # and the store's close, which wakes the waiters


# -- start: the runner and the site -------------------------------------------------------


@pytest.fixture
async def started() -> AsyncIterator[tuple[web.AppRunner, str]]:
    """A real server on a free 127.0.0.1 port, with the WIRED settings; cleaned up after."""
    runner, url = await start(WIRED)
    try:
        yield runner, url
    finally:
        await runner.cleanup()


async def test_start_configures_the_runner(started: tuple[web.AppRunner, str]) -> None:
    """Handlers are cancelled when their client leaves; keep-alive, the access log and the
    shutdown grace are the settings'; handlers log through the filter."""
    runner, _ = started
    server = runner.server
    assert server is not None
    assert server.handler_cancellation is True
    assert server._kwargs["keepalive_timeout"] == 4.5
    assert server._kwargs["access_log"] is logging.getLogger("aiohttp.access")
    assert runner._shutdown_timeout == SHUTDOWN_GRACE  # in-flight requests' time to finish
    handler = server()  # what each new connection gets
    assert handler.logger is HTTP_LOG
    assert handler._keepalive_timeout == 4.5


async def test_the_worker_task_is_named(started: tuple[web.AppRunner, str]) -> None:
    """The worker's task carries a name a person finds in a task dump (py-spy, aiomonitor,
    asyncio's own warnings)."""
    runner, _ = started
    assert runner.app[WORKER].get_name() == "taskrpc-worker"


async def test_a_cleanup_cancelled_while_the_worker_stops_stays_cancelled() -> None:
    """The app's cleanup, cancelled while it waits for the worker to stop, still shuts the
    store down and then ends cancelled: the cancellation is not swallowed with the worker's."""
    shut: list[bool] = []

    class Recorded(MemoryStore):
        async def shutdown(self) -> None:
            shut.append(True)
            await super().shutdown()

    app = web.Application()
    app[STORE] = Recorded(Limits())
    lifetime = _worker(app)
    await anext(lifetime)  # started: the store open, the worker running
    cleanup = asyncio.create_task(anext(lifetime, None))
    await asyncio.sleep(0)  # the cleanup has cancelled the worker and waits for it
    assert not app[WORKER].done()
    cleanup.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cleanup
    assert app[WORKER].cancelled()
    assert shut == [True]


async def test_start_listens_through_the_gate(started: tuple[web.AppRunner, str]) -> None:
    """The one site listens on 127.0.0.1 through a gate with the settings' cap and deadline."""
    runner, url = started
    (site,) = runner.sites
    assert isinstance(site, GatedSite)
    assert site.gate is not None
    assert (site.gate.limit, site.gate.head_timeout) == (11, 2.5)
    assert url == f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_start_without_access_log_logs_no_request() -> None:
    """--access-log off: the runner's handlers get no access logger."""
    runner, _ = await start(replace(WIRED, access_log=False))
    try:
        assert runner.server is not None
        assert runner.server._kwargs["access_log"] is None
    finally:
        await runner.cleanup()


# -- rpc: the notification's 204, the body deadline ---------------------------------------


async def _exchange(url: str, raw: bytes) -> tuple[bytes, bytes]:
    """Send raw bytes to the server; returns the response's head (lower case) and body."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        async with asyncio.timeout(DEADLINE):
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            _, _, length = head.partition(b"\r\ncontent-length: ")
            body = await reader.readexactly(int(length.split(b"\r\n", 1)[0] or 0))
    finally:
        writer.close()
    return head, body


def _post(body: bytes, *headers: str) -> bytes:
    lines = [f"POST {RPC_PATH} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"Authorization: Bearer {WIRED.token}", *headers, "", ""]
    return "\r\n".join(lines).encode() + body


async def test_a_notification_is_answered_204(started: tuple[web.AppRunner, str]) -> None:
    """A request without an id gets HTTP 204 and no body."""
    note = dumps({"jsonrpc": "2.0", "method": "types"})
    head, body = await _exchange(started[1], _post(note, f"Content-Length: {len(note)}"))
    assert head.startswith(b"http/1.1 204 ")
    assert body == b""


async def test_a_stalled_body_meets_the_body_deadline() -> None:
    """A body that stops short of its length is answered 408 at --body-timeout (10 ms)."""
    runner, url = await start(replace(WIRED, body_timeout=0.01))
    try:
        head, body = await _exchange(url, _post(b"[1, 2", "Content-Length: 100"))
    finally:
        await runner.cleanup()
    assert head.startswith(b"http/1.1 408 ")
    assert b"within 0.01 s (--body-timeout)" in body
    assert int(body.split(b'"code":', 1)[1].split(b",", 1)[0]) == ErrorCode.PARSE_ERROR


# -- connections: the gate's count, a guarded connection's head deadline ------------------


def test_the_gate_counts_each_connection_once_up_to_its_limit() -> None:
    """Each guarded connection counts one; past the limit the gate refuses; a closed one
    frees its place."""
    gate = Gate(asyncio.Protocol, limit=2, head_timeout=60.0)
    first = gate()
    assert isinstance(first, _Guarded)
    assert gate.open == 1
    assert isinstance(gate(), _Guarded)
    assert gate.open == 2
    assert not isinstance(gate(), _Guarded)  # refused: a 503, then closed
    assert gate.open == 2
    first.connection_lost(None)
    assert gate.open == 1


class _Transport(asyncio.Transport):
    """A stand-in connection: records that it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = asyncio.Event()

    def close(self) -> None:
        self.closed.set()

    def is_closing(self) -> bool:
        return self.closed.is_set()


class _Inner(asyncio.Protocol):
    """A stand-in for aiohttp's protocol: records the transport it was given."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


async def test_a_connection_without_a_head_is_closed_at_the_head_timeout() -> None:
    """The inner protocol gets the connection at once, and it is closed once head_timeout
    passes without a request head."""
    inner = _Inner()
    gate = Gate(lambda: inner, limit=1, head_timeout=0.001)
    guarded = gate()
    transport = _Transport()
    guarded.connection_made(transport)
    assert inner.transport is transport
    async with asyncio.timeout(DEADLINE):
        await transport.closed.wait()


# -- store: the job object and its times ---------------------------------------------------


class _Clock:
    """A clock the test moves: the store's times are exactly what it says."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_iso_carries_a_rounded_up_second() -> None:
    """A fraction that rounds to a whole second moves to the next second, .000."""
    assert iso(1.9999996) == "1970-01-01T00:00:02.000Z"
    assert iso(1.25) == "1970-01-01T00:00:01.250Z"


async def test_the_job_object_has_each_of_its_own_times() -> None:
    """Submitted, started, finished and the estimated finish: each its own, as ISO 8601."""
    clock = _Clock(1_000_000_000.25)
    store = MemoryStore(Limits(time_scale=1.0), clock=clock)
    job = await store.submit("reverse", "ab")
    clock.now = 1_000_000_001.5
    assert await store.take() is job
    clock.now = 1_000_000_002.75
    await store.finish(job, JobStatus.DONE, result="ba")
    assert job_object(job, None, 1_000_000_003.125) == {
        "id": job.id,
        "type": "reverse",
        "status": "done",
        "position": None,
        "data": "ab",
        "delay": 2.0,
        "submitted_at": "2001-09-09T01:46:40.250Z",
        "started_at": "2001-09-09T01:46:41.500Z",
        "finished_at": "2001-09-09T01:46:42.750Z",
        "estimated_finish_at": "2001-09-09T01:46:43.125Z",
        "error": None,
        "attempts": 1,
    }


# -- journaled store: one commit between two jobs, the retention's delete ----------------


@pytest.fixture
async def journaled(tmp_path: Path) -> AsyncIterator[tuple[JournaledStore, _Clock]]:
    """A journaled store on a new file in tmp_path, with a clock the test moves."""
    clock = _Clock(5000.0)
    store = JournaledStore(str(tmp_path / "j.db"), Limits(time_scale=1000.0), clock=clock)
    await store.open()
    try:
        yield store, clock
    finally:
        store.close()
        await store.shutdown()


async def test_finish_starts_the_next_job_in_the_same_commit(
    journaled: tuple[JournaledStore, _Clock],
) -> None:
    """The next queued job is running, from the finish's time, once the finish returns;
    one commit for both."""
    store, clock = journaled
    first = await store.submit("reverse", "ab")
    second = await store.submit("reverse", "cd")
    assert await store.take() is first
    commits = store.journal.commits
    clock.now = 5001.0
    await store.finish(first, JobStatus.DONE, result="ba")
    assert store.journal.commits == commits + 1
    assert (first.status, second.status) == (JobStatus.DONE, JobStatus.RUNNING)
    assert (second.started_at, second.attempts) == (5001.0, 1)
    assert await store.take() is second


async def test_finish_passes_a_cancelled_job_to_start_the_next(
    journaled: tuple[JournaledStore, _Clock],
) -> None:
    """A cancelled job between the finished one and the next queued one is passed: the next
    one runs, and the queue holds only the job after it."""
    store, _ = journaled
    first, cancelled, second, third = [await store.submit("reverse", "ab") for _ in range(4)]
    assert await store.take() is first
    await store.cancel(cancelled.id)
    await store.finish(first, JobStatus.DONE, result="ba")
    assert (cancelled.status, second.status) == (JobStatus.CANCELLED, JobStatus.RUNNING)
    assert store.running is second
    assert store._next_queued() is third
    assert store.queued == 1


async def test_next_queued_is_the_first_queued_job(
    journaled: tuple[JournaledStore, _Clock],
) -> None:
    """Past cancelled jobs at the head, the first job still queued; none in an empty queue."""
    store, _ = journaled
    assert store._next_queued() is None
    cancelled = await store.submit("reverse", "ab")
    queued = await store.submit("reverse", "cd")
    await store.cancel(cancelled.id)
    assert store._next_queued() is queued


async def test_a_forgotten_job_leaves_the_file(
    tmp_path: Path,
) -> None:
    """A finished job dropped by --max-finished is deleted from the file; the kept one stays."""
    path = tmp_path / "kept.db"
    store = JournaledStore(str(path), Limits(time_scale=1000.0, max_finished=1))
    await store.open()
    try:
        old, kept = await store.submit("reverse", "ab"), await store.submit("reverse", "cd")
        await store.cancel(old.id)
        await store.cancel(kept.id)  # `old` is forgotten: its delete is posted
        await store.journal.write(lambda journal: None)  # after the delete, in commit order
        with contextlib.closing(sqlite3.connect(path)) as reader:
            ids = [row[0] for row in reader.execute("SELECT id FROM jobs ORDER BY seq")]
    finally:
        store.close()
        await store.shutdown()
    assert ids == [kept.id]


def test_all_runs_every_work_in_order_and_returns_their_outcomes(tmp_path: Path) -> None:
    """The works of one write run one after the other; each one's outcome comes back."""
    ran: list[int] = []

    def work(n: int) -> Callable[[Journal], int]:
        def run(journal: Journal) -> int:
            ran.append(n)
            return n * 10

        return run

    journal = Journal(str(tmp_path / "never-opened.db"))
    assert _all([work(1), work(2)])(journal) == [10, 20]
    assert ran == [1, 2]


# -- journal: posted writes, joined groups, the vacuum ------------------------------------


async def test_a_posted_write_runs_in_the_next_commit(tmp_path: Path) -> None:
    """`post` hands its work to the writer thread; after stop it is dropped."""
    journal = Journal(str(tmp_path / "posted.db"))
    await asyncio.to_thread(journal.open)
    journal.start()
    ran: list[str] = []
    try:
        journal.post(lambda journal: ran.append("posted"))
        await journal.write(lambda journal: ran.append("written"))
        assert ran == ["posted", "written"]
    finally:
        await journal.stop()
    journal.post(lambda journal: ran.append("late"))
    assert ran == ["posted", "written"]
    assert journal._outbox == []


async def test_a_later_group_of_the_same_kind_joins_the_commits_last() -> None:
    """Appending writes whose first is a group of the commit's last kind merges the two:
    every item and every caller's future, in order; the rest follows."""
    loop = asyncio.get_running_loop()
    kind: Shared[int] = Shared(
        lambda journal, items: None, lambda items, out: None, lambda items: None
    )
    futures = [loop.create_future() for _ in range(3)]
    last = _Group(kind, [1], [futures[0]])
    head = _Group(kind, [2, 3], futures[1:])
    other = _Group(kind, [4], [])
    batch: list[Any] = [last]
    _append(batch, [head, other])
    assert batch == [last, other]
    assert last.items == [1, 2, 3]
    assert last.futures == futures


def test_the_vacuum_gives_free_pages_back(tmp_path: Path) -> None:
    """With VACUUM_PAGES free pages or more, the vacuum frees them all, and the count of
    deleted rows starts again."""
    journal = Journal(str(tmp_path / "vacuum.db"))
    journal.open()
    connection = journal.connection
    assert connection is not None
    try:
        text = "x" * 4000  # about a page a row
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO jobs (id, type, data, delay, status, submitted_at) "
            "VALUES (?, 'reverse', ?, 0, 'done', 0)",
            ((f"j{n}", text) for n in range(VACUUM_PAGES + 50)),
        )
        connection.execute("COMMIT")
        connection.execute("DELETE FROM jobs")
        free = "PRAGMA freelist_count"
        assert connection.execute(free).fetchone()[0] >= VACUUM_PAGES
        journal.deleted(VACUUM_PAGES)
        journal._vacuum(connection)
        assert connection.execute(free).fetchone()[0] == 0
        assert journal._deleted == 0
    finally:
        journal._release()


def test_limits_carry_every_store_setting() -> None:
    """Each setting the store obeys reaches it, not the store's own default."""
    settings = Settings(
        time_scale=0.5,
        max_text_chars=11,
        max_result_chars=66,
        max_queued=7,
        max_finished=9,
        max_kept_chars=1234,
        max_waiters=5,
        max_queued_chars=77,
        max_attempts=4,
    )
    assert limits(settings) == Limits(
        time_scale=0.5,
        max_text_chars=11,
        max_result_chars=66,
        max_queued=7,
        max_finished=9,
        max_kept_chars=1234,
        max_waiters=5,
        max_queued_chars=77,
        max_attempts=4,
    )
    assert limits(settings) != limits(Settings())


@pytest.mark.parametrize(
    ("host", "url"),
    [("127.0.0.1", "http://127.0.0.1:8765"), ("::1", "http://[::1]:8765"), ("h", "http://h:8765")],
)
def test_the_served_url_brackets_an_ipv6_address(host: str, url: str) -> None:
    """The start-up URL of an IPv6 address has it in brackets, as a URL needs."""
    assert served_url(host, 8765) == url


async def test_one_turns_joins_of_a_kind_are_one_write_until_another_write_comes(
    tmp_path: Path,
) -> None:
    """Joins of one kind in one turn reach `work` together; a write of another kind between
    them starts a new group (the order of writes holds)."""
    seen: list[list[int]] = []

    def work(journal: Journal, items: list[int]) -> None:
        seen.append(list(items))

    submits: Shared[int] = Shared(work, lambda items, out: None, lambda items: None)
    others: Shared[int] = Shared(work, lambda items, out: None, lambda items: None)
    journal = Journal(str(tmp_path / "groups.db"))
    await asyncio.to_thread(journal.open)
    journal.start()
    try:
        waits = [journal.join(submits, n) for n in range(4)]
        waits += [journal.join(others, 10), journal.join(others, 11), journal.join(submits, 20)]
        await asyncio.wait_for(asyncio.gather(*waits), 10)
    finally:
        await journal.stop()
    assert seen == [[0, 1, 2, 3], [10, 11], [20]]


async def test_a_write_that_never_reaches_the_disk_is_undone(tmp_path: Path) -> None:
    """A write whose commit fails runs its `undo`, and its caller gets StorageUnavailable."""
    journal = Journal(str(tmp_path / "undo.db"))
    await asyncio.to_thread(journal.open)
    journal.start()
    undone: list[str] = []

    def fill(journal: Journal) -> None:
        assert journal.connection is not None
        journal.connection.execute("INSERT INTO filler VALUES (zeroblob(100000))")

    def create(journal: Journal) -> None:
        assert journal.connection is not None
        journal.connection.execute("CREATE TABLE filler (b BLOB)")

    try:
        await journal.write(create)
        await journal.limit_pages(0)  # the disk is full from now on
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(journal.write(fill, undo=lambda: undone.append("undone")), 10)
    finally:
        await journal.stop()
    assert undone == ["undone"]


@pytest.mark.parametrize(
    ("parameters", "columns", "rows"),
    [(999, 7, 128), (100, 7, 8), (112, 7, 16), (7, 7, 1), (6, 7, 1), (32766, 1, MOST_ROWS)],
)
def test_a_statement_carries_the_largest_power_of_two_rows_that_fit(
    tmp_path: Path, parameters: int, columns: int, rows: int
) -> None:
    """Rows per insert: the largest power of two whose parameters fit SQLite's limit (at
    least one row), and never more than MOST_ROWS."""
    journal = Journal(str(tmp_path / "rows.db"))
    journal._max_parameters = parameters  # what open() reads from SQLite
    assert journal.most_rows(columns) == rows


async def test_a_reopened_store_has_the_books_it_stopped_with(tmp_path: Path) -> None:
    """Reopened, a journal's store counts each status, the queued text and the kept results
    as they were; finished jobs are oldest first by the time they finished (not by id); a
    run interrupted max_attempts times has failed at the reopening's time."""
    path, clock = str(tmp_path / "j.db"), _Clock(5000.0)
    store = JournaledStore(path, Limits(time_scale=1000.0), clock=clock)
    await store.open()
    done, interrupted, cancelled, queued, last = [
        await store.submit(kind, text)
        for kind, text in [
            ("reverse", "abc"),
            ("swap", "defg"),
            ("repeat", "hi"),
            ("reverse", "jklmn"),
            ("swap", "op"),
        ]
    ]
    clock.now = 5001.0
    await store.cancel(cancelled.id)  # finished before the job ahead of it
    assert await store.take() is done
    clock.now = 5002.0
    await store.finish(done, JobStatus.DONE, result="cba")
    assert await store.take() is interrupted
    store.close()
    await store.shutdown()  # the running job goes back to the head of the queue

    clock.now = 5003.0
    again = JournaledStore(path, Limits(time_scale=1000.0, max_attempts=1), clock=clock)
    await again.open()
    try:
        assert again.counts() == {"queued": 2, "running": 0, "done": 1, "failed": 1, "cancelled": 1}
        assert again.get(interrupted.id).status is JobStatus.FAILED
        assert again.get(interrupted.id).finished_at == 5003.0
        assert again._queued_chars == len("jklmn") + len("op")
        assert again._kept_chars == len("cba")
        finished = [again._by_key[key].id for key in again._finished]
        assert finished == [cancelled.id, done.id, interrupted.id]
        assert [again.get(job.id).status for job in (queued, last)] == [JobStatus.QUEUED] * 2
    finally:
        again.close()
        await again.shutdown()


async def test_a_running_job_past_its_time_adds_nothing_to_the_estimates() -> None:
    """The job behind a running one finishes, by the estimate, when the running job's time
    is up plus its own delay: none of it once the running job has overrun."""
    clock = _Clock(100.0)
    store = MemoryStore(Limits(time_scale=1.0), clock=clock)
    running = await store.submit("reverse", "ab")  # 2 s
    behind = await store.submit("reverse", "cd")
    assert await store.take() is running
    clock.now = 101.5
    assert store.estimated_finish(behind) == 101.5 + 0.5 + 2.0
    clock.now = 103.0  # 1 s over its time: a slow transform
    assert store.estimated_finish(behind) == 103.0 + 2.0
    assert store.position(behind) == 1


async def test_the_journal_thread_is_named_and_never_holds_the_process(
    journaled: tuple[JournaledStore, _Clock],
) -> None:
    """The writer thread carries a name a person finds in a thread dump, and is a daemon: a
    disk that never answers cannot keep the process from exiting."""
    store, _ = journaled
    thread = store.journal._thread
    assert thread is not None
    assert (thread.name, thread.daemon) == ("taskrpc-journal", True)


async def test_stop_commits_the_writes_handed_over_with_it(tmp_path: Path) -> None:
    """Writes that reach the thread together with the stop are committed before it ends."""
    journal = Journal(str(tmp_path / "stopping.db"))
    await asyncio.to_thread(journal.open)
    journal.start()
    inside, busy, ran = threading.Event(), threading.Event(), []

    def hold(journal: Journal) -> bool:  # holds the thread in a commit
        inside.set()
        return busy.wait(DEADLINE)

    first = journal.write(hold)
    await until(inside.is_set, what="the thread in the first commit")
    last = journal.write(lambda journal: ran.append("last"))
    stopping = asyncio.create_task(journal.stop())  # hands `last` over, then the stop
    await until(lambda: journal._writes.qsize() == 2, what="the last write and the stop queued")
    busy.set()
    await stopping
    assert ran == ["last"]
    await asyncio.gather(first, last)  # both committed: neither failed


async def test_a_write_after_the_stop_is_undone_and_says_the_server_is_stopping(
    tmp_path: Path,
) -> None:
    """After the stop, a write and a join each run their undo at once and fail with
    StorageUnavailable, saying the server is stopping."""
    journal = Journal(str(tmp_path / "stopped.db"))
    await asyncio.to_thread(journal.open)
    journal.start()
    await journal.stop()
    undone: list[object] = []
    kind: Shared[str] = Shared(
        work=lambda journal, items: None,
        apply=lambda items, outcome: None,
        undo=undone.extend,
    )
    writes = [
        journal.write(lambda journal: None, undo=lambda: undone.append("write")),
        journal.join(kind, "join"),
    ]
    assert undone == ["write", "join"]
    for write in writes:
        with pytest.raises(StorageUnavailable) as caught:
            await write
        assert str(caught.value) == "storage unavailable: the server is stopping"


@pytest.mark.parametrize("running", [False, True])
async def test_shutdown_says_how_many_jobs_will_resume(
    journaled: tuple[JournaledStore, _Clock], caplog: pytest.LogCaptureFixture, running: bool
) -> None:
    """The stop's warning counts the queued jobs and the running one put back, if any."""
    store, _ = journaled
    for _ in range(3):
        await store.submit("reverse", "ab")
    if running:
        await store.take()
    store.close()
    with caplog.at_level(logging.WARNING, logger="taskrpc.store"):
        await store.shutdown()
    said = "2 queued and 1 interrupted job" if running else "3 queued and 0 interrupted jobs"
    assert caplog.messages == [f"{said} will resume at the next start"]


async def test_the_lock_file_is_the_owners_alone(
    journaled: tuple[JournaledStore, _Clock], tmp_path: Path
) -> None:
    """The lock file beside the database (it names the server's pid and URL) is mode 0600,
    as the database is."""
    lock = tmp_path / "j.db.lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


async def test_a_short_job_sleeps_instead_of_spinning() -> None:
    """A job's wait sleeps on timers up to a millisecond before its end, however short the
    job: it does not spin the loop (a short wait burning CPU for its whole length)."""
    started = time.process_time()
    assert await _interrupted(asyncio.Event(), 0.3) is False
    assert time.process_time() - started < 0.1  # spinning would take ~0.3 s of CPU
