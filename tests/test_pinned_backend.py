"""Backend behaviours that mutation testing found unpinned (issue 14).

Each test here failed with the mutants it is about applied (`mutmut apply NAME`, TESTING.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp.http_exceptions import BadHttpMessage
from jsonrpcserver import Result, Success

from backend import connections, pacing, ws
from backend import journal as journal_module
from backend.app import _report_crash
from backend.collector import full_pass
from backend.envelope import parse
from backend.gate import MalformedRequests, same_secret
from backend.jobs import JOB_TYPES
from backend.journal import VACUUM_PAGES, Journal, Shared, _append, _Group, _Write, default_path
from backend.journaled import JournaledStore
from backend.loops import LoopUnavailable, choose
from backend.main import VisibleFormatter
from backend.pacing import DECODE_PER_TURN, SLICE, side_by_side
from backend.protocol import (
    WS_PATH,
    ErrorCode,
    JobStatus,
    Notification,
    ParseError,
    RpcError,
    ServerBusy,
    SocketMethod,
    StorageUnavailable,
)
from backend.rpc import openrpc
from backend.store import Job, Limits, MemoryStore, log_end
from backend.waiters import Waiters
from backend.ws import HUB
from tests.conftest import Server, StartServer, until


async def test_the_seqs_of_dropped_position_waits_do_not_pile_up() -> None:
    """Position waits that are dropped leave at most 64 stale seqs behind, however many."""
    waiters = Waiters()
    tasks = [asyncio.create_task(waiters.wait(f"job{seq}", seq)) for seq in range(1000)]
    await until(lambda: waiters.count == 1000, what="1000 parked waits")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert waiters.count == 0
    assert len(waiters._seqs) <= 64  # the sorted list of watched seqs, swept as it goes
    kept = asyncio.create_task(waiters.wait("job5000", 5000))  # a later wait is still woken
    await until(lambda: waiters.count == 1, what="a new parked wait")
    waiters.wake_positions_behind(4999)
    await asyncio.wait_for(kept, 5)


def test_each_parse_error_says_what_is_wrong() -> None:
    """A body that is not strict JSON is a parse error whose data names the reason."""
    for body, says in [
        (b"NaN", "NaN is not valid JSON"),
        (b"[-Infinity]", "-Infinity is not valid JSON"),
        (b"[1e400]", "number 1e400 is too large"),
        (b"\xff", "the body is not valid UTF-8"),
        (b"[" * 100_000, "the JSON is nested too deeply"),
    ]:
        with pytest.raises(ParseError) as refused:
            parse(body)
        assert refused.value.data == says, body[:20]


def test_the_loop_is_chosen_by_name() -> None:
    """--loop asyncio gives asyncio's own loop, --loop uvloop and auto give uvloop's."""
    label, factory = choose("asyncio")
    loop = factory()
    try:
        assert label == "asyncio"
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    for name in ("uvloop", "auto"):
        label, factory = choose(name)
        loop = factory()
        try:
            assert label == f"uvloop {version('uvloop')}"
            assert isinstance(loop, uvloop.Loop)
        finally:
            loop.close()


def test_a_missing_uvloop_is_one_line_that_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """--loop uvloop without uvloop says, in its own words, where it runs and what to use."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    with pytest.raises(LoopUnavailable) as refused:
        choose("uvloop")
    assert str(refused.value) == (
        "--loop uvloop: uvloop is not installed (it is for Linux and macOS); use --loop asyncio"
    )


def test_a_logged_traceback_keeps_its_lines_and_escapes_the_rest() -> None:
    """The server's log shows a traceback on several lines, its control characters escaped,
    while the message itself stays on one line."""
    try:
        raise ValueError("bad\x1b[31m\nthing")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "a\nb", None, sys.exc_info())
    text = VisibleFormatter("%(message)s").format(record)
    first, *rest = text.split("\n")
    assert first == "a\\x0ab"
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-2:] == ["ValueError: bad\\x1b[31m", "thing"]


async def test_a_cancelled_batch_cancels_every_call_it_started() -> None:
    """Cancelling a batch run side by side cancels each of its calls (a slice per turn)."""
    started: list[asyncio.Task[None]] = []

    async def parked() -> None:
        task = asyncio.current_task()
        assert task is not None
        started.append(task)
        await asyncio.Future()  # forever, until cancelled

    calls = (parked() for _ in range(2 * SLICE + 10))
    batch: asyncio.Task[list[None]] = asyncio.create_task(side_by_side(calls))
    await until(lambda: len(started) == 2 * SLICE + 10, what="every call started")
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    await until(lambda: all(task.done() for task in started), what="every call ended")
    assert all(task.cancelled() for task in started)


def test_refused_connections_are_logged_once_a_second_with_their_count(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Connections past the cap make one warning a second at most, counting those refused
    since the last one."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the clock connections reads
    gate = connections.Gate(asyncio.Protocol, limit=0, head_timeout=1.0)
    caplog.set_level(logging.WARNING, "taskrpc.connections")
    for at in (1000.0, 1000.5, 1000.9, 1001.0, 1001.5, 1002.0):
        now[0] = at
        gate()
    assert [record.getMessage().split(":")[0] for record in caplog.records] == [
        "refused 1 connection(s)",
        "refused 3 connection(s)",
        "refused 2 connection(s)",
    ]


async def test_limit_pages_lets_the_file_grow_by_that_many_pages(tmp_path: Path) -> None:
    """journal.limit_pages(n) leaves room for n more pages: some writes still fit."""
    store = JournaledStore(str(tmp_path / "room.db"), Limits(time_scale=1000.0))
    await store.open()
    try:
        for _ in range(10):
            await store.submit("reverse", "z" * 10_000)  # some 30 pages of 4 KiB
        await store.journal.limit_pages(20)
        for _ in range(2):
            await store.submit("reverse", "z" * 10_000)  # some 6 more
    finally:
        store.close()
        await store.shutdown()


def test_the_default_database_lives_in_the_home_folder_without_home_set() -> None:
    """With neither XDG_STATE_HOME nor HOME, the default database is under the user's home."""
    assert default_path({}) == Path.home() / ".local" / "state" / "taskrpc" / "taskrpc.db"


def test_a_method_without_a_docstring_has_an_empty_summary() -> None:
    """openrpc() describes a method that has no docstring with an empty summary."""

    async def bare() -> Result:
        return Success(None)

    bare.__doc__ = None
    (method,) = openrpc({"types": bare})["methods"]
    assert (method["name"], method["summary"], method["params"]) == ("types", "", [])


@pytest.mark.parametrize(
    ("started", "finished", "status", "says"),
    [
        (11.25, 14.0, JobStatus.DONE, "done (waited 1.250 s, ran 2.750 s)"),
        (None, 13.5, JobStatus.CANCELLED, "cancelled (waited 3.500 s, ran 0.000 s)"),
    ],
)
def test_a_jobs_info_line_gives_the_time_it_waited_and_ran(
    started: float | None,
    finished: float,
    status: JobStatus,
    says: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job's one info line: waited from submit to start (or end), ran from start to end."""
    job = Job("j1", JOB_TYPES[0], "text", 0.0, 0, submitted_at=10.0, status=status)
    job.started_at, job.finished_at = started, finished
    caplog.set_level(logging.INFO, "taskrpc.store")
    log_end(job)
    assert [record.getMessage() for record in caplog.records] == [f"job j1 reverse {says}"]


async def test_a_full_disk_is_logged_once_and_so_is_its_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Writes failing in a row log one error; the first that works again logs one warning.
    A failing batch answers every waiting writer, whatever unwaited posts it holds."""
    journal = Journal(str(tmp_path / "full.db"))
    await asyncio.to_thread(journal.open)
    journal.start()
    try:
        await journal.write(lambda j: _sql(j, "CREATE TABLE filler (b BLOB)"))
        await journal.limit_pages(0)
        caplog.set_level(logging.INFO, "taskrpc.journal")
        for _ in range(3):
            journal.post(lambda j: _sql(j, "INSERT INTO filler VALUES (zeroblob(100000))"))
            fill = journal.write(lambda j: _sql(j, "INSERT INTO filler VALUES (zeroblob(100000))"))
            with pytest.raises(StorageUnavailable):
                await asyncio.wait_for(fill, 10)
        await journal.limit_pages(None)
        for _ in range(2):
            await journal.write(lambda j: _sql(j, "INSERT INTO filler VALUES (zeroblob(100000))"))
    finally:
        await journal.stop()
    said = [(record.levelname, record.getMessage().split(" ")[0]) for record in caplog.records]
    assert said == [("ERROR", "cannot"), ("WARNING", "the")], caplog.records


def _sql(journal: Journal, statement: str) -> None:
    assert journal.connection is not None
    journal.connection.execute(statement)


async def test_a_connection_closed_for_sending_no_head_frees_its_place(
    start_server: StartServer,
) -> None:
    """With room for one connection, one closed by the head deadline leaves room for the next."""
    server = await start_server(head_timeout=0.1, max_connections=1)
    port = int(server.url.rsplit(":", 1)[1])
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(5):
        assert await silent_reader.read() == b""  # closed by the server, unanswered
    silent.close()
    deadline = time.monotonic() + 5
    while not await _answers(port):  # the server may not have seen the close yet
        assert time.monotonic() < deadline, "no room for a new connection"
        await asyncio.sleep(0.01)


async def _answers(port: int) -> bool:
    """True if a new connection to `port` gets 200 for /healthz (not 503: no room)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(5):
            return (await reader.readline()).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


def test_a_full_garbage_collection_logs_what_it_freed_and_how_long_it_took(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The collector's full pass logs at debug the objects freed and its time in ms."""
    caplog.set_level(logging.DEBUG, "taskrpc.collector")
    full_pass()
    (line,) = [record.getMessage() for record in caplog.records]
    took = re.fullmatch(r"full garbage collection: \d+ objects freed in (\d+) ms", line)
    assert took is not None, line
    assert int(took[1]) < 60_000


def _malformed(
    message: str, args: tuple[object, ...] = ("10.0.0.7",), level: int = logging.ERROR
) -> logging.LogRecord:
    """aiohttp's log record for a request it could not parse, with its exception attached."""
    try:
        raise BadHttpMessage(message)
    except BadHttpMessage:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "aiohttp.server", level, __file__, 1, "Error handling request from %s", args, exc_info
    )


def test_malformed_requests_are_one_warning_line_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first malformed request is one WARNING line without a traceback; the next within
    a second are dropped and counted in the next line; other records pass unchanged."""
    now = [0.5]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    rule = MalformedRequests()
    first = _malformed("Invalid method\nsecond line")
    assert rule.filter(first)
    assert first.getMessage() == "malformed HTTP request from 10.0.0.7: Invalid method (status 400)"
    assert (first.levelno, first.levelname, first.exc_info, first.exc_text) == (
        logging.WARNING,
        "WARNING",
        None,
        None,
    )
    for now[0] in (1.0, 1.4999):
        assert not rule.filter(_malformed("again"))
    now[0] = 1.5  # one interval after the first line
    counted = _malformed("again")
    assert rule.filter(counted)
    assert counted.getMessage().endswith("again (status 400); 2 more not logged")
    now[0] = 2.5
    alone = _malformed("")
    assert rule.filter(alone)
    assert alone.getMessage() == "malformed HTTP request from 10.0.0.7: BadHttpMessage (status 400)"
    plain = logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "other %s", ("x",), None
    )
    assert rule.filter(plain)
    assert (plain.getMessage(), plain.levelno) == ("other x", logging.ERROR)


def test_a_malformed_requests_line_is_short_ascii_and_keeps_debug_level() -> None:
    """The reason is escaped to ASCII and cut at 200 characters; no remote shows '?';
    a record aiohttp logs at debug stays at debug."""
    rule = MalformedRequests(interval=0.0)
    odd = _malformed("bad \x1b[31m \xe9 " + "x" * 300, args=(), level=logging.DEBUG)
    assert rule.filter(odd)
    message = odd.getMessage()
    assert message.startswith("malformed HTTP request from ?: bad \\x1b[31m \\xe9 xxx")
    reason = message.removeprefix("malformed HTTP request from ?: ").removesuffix(" (status 400)")
    assert len(reason) == 200
    assert (odd.levelno, odd.levelname) == (logging.DEBUG, "DEBUG")


async def test_a_socket_without_the_token_is_refused_by_its_first_message(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket whose first message is not `auth` gets -32007 saying how to authenticate, with
    that message's id; one that says nothing in time gets it with a null id; both are then
    closed with 1008 'unauthorized'."""
    monkeypatch.setattr(ws, "AUTH_TIMEOUT", 0.2)
    server = await start_server(token="s3cret")
    for first, request_id in (({"jsonrpc": "2.0", "method": "types", "id": 7}, 7), (None, None)):
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(server.url + WS_PATH) as socket,
        ):
            if first is not None:
                await socket.send_json(first)
            answer = await socket.receive_json(timeout=10)
            assert answer == {
                "jsonrpc": "2.0",
                "error": {"code": ErrorCode.UNAUTHORIZED, "message": ws.REFUSAL},
                "id": request_id,
            }
            closing = await socket.receive(timeout=10)
            assert (closing.type, closing.data, closing.extra) == (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSCloseCode.POLICY_VIOLATION,
                "unauthorized",
            )


async def test_an_allowed_origin_matches_without_its_case_or_trailing_slash(
    start_server: StartServer,
) -> None:
    """--allow-origin https://App.Example/ lets in a page whose Origin is https://app.example."""
    server = await start_server(allow_origins=("https://App.Example/",))
    request = {"jsonrpc": "2.0", "method": "types", "id": 1}
    for origin, allowed in (("https://app.example", True), ("https://other.example", False)):
        status, answer = await server.post(request, {"Origin": origin})
        assert (status == 200) is allowed, (origin, status, answer)


def test_an_error_object_becomes_its_exception_again_data_and_all() -> None:
    """A known code gives its class; an unknown one a plain RpcError; both keep message and data."""
    busy = RpcError.from_error(ErrorCode.SERVER_BUSY, "busy", {"id": "j1"})
    assert (type(busy), busy.message, busy.data) == (ServerBusy, "busy", {"id": "j1"})
    other = RpcError.from_error(-31999, "odd", {"why": 1})
    assert (type(other), other.code, other.message, other.data) == (
        RpcError,
        -31999,
        "odd",
        {"why": 1},
    )


async def test_a_body_too_slow_is_a_json_408_that_says_the_deadline(
    start_server: StartServer,
) -> None:
    """A body that stalls past --body-timeout gets 408, as JSON: a parse error naming the
    deadline and the option."""
    server = await start_server(body_timeout=0.3)
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n[1, 2"  # and then nothing
        )
        async with asyncio.timeout(10):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            body = await reader.read()
    finally:
        writer.close()
    assert head.startswith("http/1.1 408 ")
    assert "\r\ncontent-type: application/json" in head
    assert json.loads(body)["error"] == {
        "code": ErrorCode.PARSE_ERROR,
        "message": "Parse error",
        "data": "the body did not arrive within 0.3 s (--body-timeout)",
    }


async def test_a_reopened_journal_keeps_each_jobs_times_result_and_error(tmp_path: Path) -> None:
    """After a restart every job has the status, times, result, error and attempts it had."""
    path = str(tmp_path / "kept.db")
    store = JournaledStore(path, Limits(time_scale=1000.0))
    await store.open()
    jobs = [await store.submit("reverse", "ab"), await store.submit("swap", "cd")]
    await store.finish(await store.take(), JobStatus.FAILED, error="boom")
    await store.finish(await store.take(), JobStatus.DONE, result="dc")
    before = [_kept(store.get(job.id)) for job in jobs]
    store.close()
    await store.shutdown()
    again = JournaledStore(path, Limits(time_scale=1000.0))
    await again.open()
    try:
        assert [_kept(again.get(job.id)) for job in jobs] == before
    finally:
        again.close()
        await again.shutdown()
    assert before[0][-2:] == ("boom", 1)
    assert all(kept[1] is not None and kept[2] is not None for kept in before)


def _kept(job: Job) -> tuple[object, ...]:
    """What a store must keep of a job across a restart."""
    return (job.status, job.started_at, job.finished_at, job.result, job.error, job.attempts)


async def test_server_shutdown_says_goodbye_to_each_socket(start_server: StartServer) -> None:
    """When the server stops, a subscriber that reads gets close code 1001 'server shutdown'."""
    server = await start_server()
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws_:
        await ws_.send_json(
            {"jsonrpc": "2.0", "method": SocketMethod.SUBSCRIBE, "params": {}, "id": 1}
        )
        assert "result" in await ws_.receive_json(timeout=10)
        await server.app.shutdown()  # what stopping the server runs first
        closing = await ws_.receive(timeout=10)
        assert (closing.type, closing.data, closing.extra) == (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSCloseCode.GOING_AWAY,
            "server shutdown",
        )


async def test_each_turn_of_the_loop_allows_exactly_slice_starts() -> None:
    """The pacer allows SLICE task starts in a turn of the loop, then none until the next
    turn, which allows SLICE again."""
    pacer = pacing._pacer()
    for _ in range(3):
        allowed = 0
        while pacer.may_start():
            allowed += 1
        assert allowed == SLICE
        await pacer.turn()


async def test_every_refusal_of_the_gate_is_json(start_server: StartServer) -> None:
    """A request the gate refuses (a foreign Host, a wrong Content-Type, too large) is
    answered with a JSON-RPC error typed application/json."""
    server = await start_server(max_body_bytes=10)
    body = b'{"jsonrpc": "2.0", "method": "types", "id": 1}'
    json_type = {"Content-Type": "application/json"}
    cases = [
        ({"Host": "evil.example", **json_type}, 403),
        ({"Content-Type": "text/plain"}, 415),
        (json_type, 413),
    ]
    async with aiohttp.ClientSession() as session:
        for headers, status in cases:
            async with session.post(server.url + "/rpc", data=body, headers=headers) as reply:
                assert reply.status == status
                assert reply.headers["Content-Type"] == "application/json"
                assert (await reply.json())["error"]["code"] == ErrorCode.INVALID_REQUEST


async def test_an_auth_notification_with_a_wrong_token_is_still_refused(
    start_server: StartServer,
) -> None:
    """`auth` sent as a notification (no id) with a wrong token gets the refusal, then 1008."""
    server = await start_server(token="s3cret")
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws_:
        await ws_.send_json({"jsonrpc": "2.0", "method": "auth", "params": {"token": "nope"}})
        answer = await ws_.receive_json(timeout=10)
        assert answer["error"] == {"code": ErrorCode.UNAUTHORIZED, "message": ws.REFUSAL}
        closing = await ws_.receive(timeout=10)
        assert (closing.type, closing.data) == (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSCloseCode.POLICY_VIOLATION,
        )


async def test_head_healthz_needs_no_token(start_server: StartServer) -> None:
    """/healthz answers GET and HEAD without the token (it says only that the server is up)."""
    server = await start_server(token="s3cret")
    async with aiohttp.ClientSession() as session:
        for method in ("GET", "HEAD"):
            async with session.request(method, server.url + "/healthz") as reply:
                assert reply.status == 200, method


async def test_a_list_page_is_answered_without_a_pause(server: Server) -> None:
    """`list` yields to other requests between slices of its page but never sleeps: a page
    comes back in a small fraction of a second."""
    for n in range(3):
        await server.call("submit", [1, f"text {n}"])
    started = time.monotonic()
    page = (await server.call("list", {"limit": 10}))["result"]
    assert len(page["jobs"]) == 3
    assert time.monotonic() - started < 0.5


def _kind() -> Shared[int]:
    """A kind of shared write that does nothing."""
    return Shared(work=lambda journal, items: None, apply=lambda i, o: None, undo=lambda i: None)


def _group(kind: Shared[int], *items: int) -> _Group[int]:
    """A group of `kind`'s writes, as `Journal.join` makes them."""
    return _Group(kind, list(items), [])


def test_a_later_turns_writes_join_the_group_the_commit_ends_with() -> None:
    """`_append` merges a group into a last group of its kind only, and keeps every write."""
    kind, other = _kind(), _kind()
    single = _Write(work=lambda journal: None, apply=None, future=None)
    batch: list[_Write | _Group[Any]] = [_group(kind, 1)]
    _append(batch, [_group(kind, 2), single])
    assert [type(write) for write in batch] == [_Group, _Write]
    assert batch[0].items == [1, 2]  # type: ignore[union-attr]
    assert batch[1] is single
    batch = [_group(kind, 1)]
    _append(batch, [_group(other, 2)])
    assert [write.items for write in batch] == [[1], [2]]  # type: ignore[union-attr]
    batch = []
    _append(batch, [_group(kind, 1)])  # an empty commit, or nothing more: no joining
    assert [write.items for write in batch] == [[1]]  # type: ignore[union-attr]
    _append(batch, [])
    assert [write.items for write in batch] == [[1]]  # type: ignore[union-attr]


async def test_deleted_rows_add_up_to_an_incremental_vacuum(tmp_path: Path) -> None:
    """Deletes counted over several commits vacuum once they reach VACUUM_PAGES, not before."""
    journal = Journal(str(tmp_path / "jobs.db"))
    journal.open()
    journal.start()

    try:
        for counted in ([VACUUM_PAGES - 100, 100], [VACUUM_PAGES - 1]):
            await journal.write(lambda j: _free_some_pages(j, 600))
            assert await journal.write(_free_pages) >= VACUUM_PAGES
            for rows in counted:
                await journal.write(partial(Journal.deleted, rows=rows))
            freed = await journal.write(_free_pages)
            if sum(counted) >= VACUUM_PAGES:
                assert freed == 0, f"{counted}: no vacuum"
            else:
                assert freed >= VACUUM_PAGES, f"{counted}: a vacuum before {VACUUM_PAGES}"
                await journal.write(lambda journal: journal.deleted(1))
                assert await journal.write(_free_pages) == 0, f"{counted} + 1: no vacuum"
    finally:
        await journal.stop()


async def test_an_overflow_keeps_the_answers_and_says_why_to_resync(
    start_server: StartServer,
) -> None:
    """A backlog overflow drops notifications, never a queued answer, then sends jobs.resync."""
    server = await start_server(time_scale=1000.0)
    hub = server.app[HUB]
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as sock:
        await sock.send_json(
            {"jsonrpc": "2.0", "method": SocketMethod.SUBSCRIBE, "params": {}, "id": 1}
        )
        assert "result" in await sock.receive_json(timeout=10)
        (connection,) = hub.subscribers
        hub.max_backlog = 100
        answer = {"jsonrpc": "2.0", "result": "kept", "id": 7}
        connection.reply(json.dumps(answer))  # all three in one step: none written yet
        connection.notify("n" * 50)
        connection.notify("n" * 60)  # over the limit: the first notification goes too
        frames = [await sock.receive_json(timeout=10) for _ in range(2)]
    reason = "too far behind: the server dropped the changes it had not sent; subscribe again"
    resync = {"jsonrpc": "2.0", "method": Notification.RESYNC, "params": {"reason": reason}}
    assert frames == [answer, resync]
    assert connection not in hub.subscribers


def test_an_rpc_error_reads_as_its_message() -> None:
    """str() adds only text data to the message; repr() and args carry the message."""
    assert str(RpcError("bad", {"field": "x"})) == "bad"
    assert str(RpcError("bad", "why")) == "bad: why"
    assert RpcError("bad").args == ("bad",)
    assert repr(RpcError("bad")) == "RpcError('bad')"


def test_a_date_format_given_to_the_log_formatter_is_used() -> None:
    """VisibleFormatter keeps its cached stamp for the default format only."""
    record = logging.makeLogRecord({"msg": "m", "created": 86400.0 * 365 * 30})
    assert VisibleFormatter("%(asctime)s", datefmt="%Y").format(record) == time.strftime(
        "%Y", time.localtime(record.created)
    )


async def test_positions_count_a_later_cancelled_job_after_the_worker_skipped_one() -> None:
    """A cancelled job behind the running one is not counted ahead, after a skip at the head."""
    store = MemoryStore(Limits(time_scale=100.0))
    jobs = [await store.submit("swap", f"job {n}") for n in range(6)]
    for job in (jobs[0], jobs[3]):
        await store.cancel(job.id)
    assert await store.take() is jobs[1]  # past the cancelled jobs[0]
    assert [store.position(job) for job in (jobs[2], jobs[4], jobs[5])] == [1, 2, 3]


async def test_positions_hold_after_the_passed_cancelled_jobs_are_dropped_in_bulk() -> None:
    """Past 1024 cancelled jobs at the head, the worker forgets them and positions stay right."""
    store = MemoryStore(Limits(time_scale=100.0))
    cancelled = [await store.submit("swap", f"job {n}") for n in range(1024)]
    head, second, later, last = [await store.submit("swap", name) for name in "abcd"]
    for job in [*cancelled, later]:
        await store.cancel(job.id)
    assert await store.take() is head
    assert store.position(last) == 2  # the running head and `second`; `later` is cancelled
    await store.finish(head, JobStatus.DONE, result="a")
    assert await store.take() is second
    assert store.position(last) == 1


async def test_a_memory_only_store_names_what_a_stop_loses_and_only_then(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stopping warns with queued jobs and nothing running, and says nothing when empty."""
    caplog.set_level(logging.WARNING)
    MemoryStore(Limits()).close()
    assert "lost" not in caplog.text
    store = MemoryStore(Limits(time_scale=100.0))
    await store.submit("swap", "a")
    await store.submit("swap", "b")
    store.close()
    assert "stopping with no job running and 2 queued: they are lost" in caplog.text
    store = MemoryStore(Limits(time_scale=100.0))
    running = await store.submit("swap", "c")
    assert await store.take() is running
    store.close()
    assert f"stopping with job {running.id} running and 0 queued: they are lost" in caplog.text


async def test_cancelled_jobs_the_worker_passed_are_dropped_in_bulk_and_only_then() -> None:
    """Passed holes go once 1024 of them are at least half of their lane's, all at once."""

    async def holes_left(passed: int, later: int) -> int:
        store = MemoryStore(Limits(time_scale=100.0))
        before = [await store.submit("swap", "x") for _ in range(passed)]
        head = await store.submit("swap", "head")
        after = [await store.submit("swap", "x") for _ in range(later)]
        for job in [*before, *after]:
            await store.cancel(job.id)
        assert await store.take() is head
        return len(store._holes[head.delay])  # the sorted seqs of cancelled queued jobs

    assert await holes_left(1, 0) == 1  # below 1024: kept, however large a share
    assert await holes_left(1024, 1024) == 1024  # 1024, and exactly half: dropped
    assert await holes_left(1024, 1025) == 2049  # less than half: kept
    assert await holes_left(1024, 2048) == 3072


async def test_passed_seqs_leave_their_lane_in_bulk_once_32_are_half_of_it() -> None:
    """The seqs of jobs the worker passed go from their lane once there are 32 and they are
    at least half of it, all at once: never, and the lane grows with every job ever run."""

    async def lane_left(passed: int, later: int) -> int:
        store = MemoryStore(Limits(time_scale=100.0))
        before = [await store.submit("swap", "x") for _ in range(passed - 1)]
        head = await store.submit("swap", "head")
        for _ in range(later):
            await store.submit("swap", "x")
        for job in before:
            await store.cancel(job.id)
        assert await store.take() is head  # the cancelled ones passed, and the head
        return len(store._lanes[head.delay])  # the seqs of the delay's queued jobs, in order

    assert await lane_left(31, 0) == 31  # below 32: kept, however large a share
    assert await lane_left(32, 32) == 32  # 32, and exactly half: dropped
    assert await lane_left(32, 33) == 65  # less than half: kept
    assert await lane_left(40, 0) == 8  # dropped at the 32nd; the count starts again


async def test_a_turn_allows_slice_starts_however_many_were_counted_in_the_one_before() -> None:
    """Starts counted in two callbacks of one turn share that turn's SLICE: one reset a turn."""
    loop = asyncio.get_running_loop()
    pacer = pacing._Pacer(loop)
    allowed: list[int] = []

    def burst() -> None:
        count = 0
        while pacer.may_start():
            count += 1
        allowed.append(count)

    turn = loop.create_future()
    assert pacer.may_start()  # this turn counts: the counts reset at the start of the next
    loop.call_soon(burst)
    assert pacer.may_start()
    loop.call_soon(burst)  # the same next turn as the first burst
    loop.call_soon(turn.set_result, None)
    await turn
    assert allowed == [SLICE, 0]


async def test_a_turn_decodes_up_to_exactly_its_byte_budget() -> None:
    """Bodies adding up to DECODE_PER_TURN all decode in one turn; one byte more waits."""
    pacer = pacing._Pacer(asyncio.get_running_loop())
    assert pacer.may_decode(1)
    assert pacer.may_decode(DECODE_PER_TURN - 2)
    assert pacer.may_decode(1)
    assert not pacer.may_decode(1)


async def test_submits_a_full_disk_lost_no_longer_count_against_the_queue(tmp_path: Path) -> None:
    """A submit that never reached the disk gives its characters back to max_queued_chars."""
    limits = Limits(time_scale=1000.0, max_text_chars=200_000, max_queued_chars=300_000)
    store = JournaledStore(str(tmp_path / "lost.db"), limits)
    await store.open()
    try:
        await store.journal.limit_pages(0)
        with pytest.raises(StorageUnavailable):
            await store.submit("reverse", "z" * 200_000)
        await store.journal.limit_pages(None)
        await store.submit("reverse", "z" * 100_000)
        job = await store.submit("reverse", "z" * 200_000)  # exactly the limit: it fits
        assert store.get(job.id).status is JobStatus.QUEUED
    finally:
        store.close()
        await store.shutdown()


def test_secrets_with_lone_surrogates_compare_without_error() -> None:
    """same_secret takes any str on either side: a header or an environment value (decoded
    with surrogateescape) may hold lone surrogates."""
    assert same_secret("s3cret", "s3cret")
    assert not same_secret("s3cret", "s3cre")
    assert same_secret("tok\udcff", "tok\udcff")
    assert not same_secret("tok\udcff", "tok\udcfe")
    assert not same_secret("token", "tok\udcff")
    assert not same_secret("tok\udcff", "token")


async def test_a_vacuum_runs_with_exactly_vacuum_pages_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The free-page bound is inclusive: VACUUM_PAGES free pages are given back."""
    journal = Journal(str(tmp_path / "jobs.db"))
    journal.open()
    journal.start()
    try:
        await journal.write(lambda j: _free_some_pages(j, 300))
        free = await journal.write(_free_pages)
        monkeypatch.setattr(journal_module, "VACUUM_PAGES", free)  # the bound, met exactly
        await journal.write(lambda j: j.deleted(free))
        assert await journal.write(_free_pages) == 0
    finally:
        await journal.stop()


def _free_pages(journal: Journal) -> int:
    assert journal.connection is not None
    return int(journal.connection.execute("PRAGMA freelist_count").fetchone()[0])


def _free_some_pages(journal: Journal, rows: int) -> None:
    """Fill a table with `rows` blobs of about a page each, then empty it."""
    _sql(journal, "CREATE TABLE IF NOT EXISTS blobs (data BLOB)")
    _sql(
        journal,
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})"
        " INSERT INTO blobs SELECT zeroblob(4000) FROM n",
    )
    _sql(journal, "DELETE FROM blobs")


async def test_wakes_added_twice_in_one_turn_still_go_a_slice_a_turn() -> None:
    """Two wakes of SLICE futures each, added in the same turn, wake SLICE in the next turn."""
    loop = asyncio.get_running_loop()
    pacer = pacing._Pacer(loop)
    futures: list[asyncio.Future[None]] = [loop.create_future() for _ in range(2 * SLICE)]
    pacer.wake(futures[:SLICE])
    pacer.wake(futures[SLICE:])
    woken: asyncio.Future[int] = loop.create_future()
    loop.call_soon(lambda: woken.set_result(sum(f.done() for f in futures)))  # after the slice
    assert await woken == SLICE
    await until(lambda: all(f.done() for f in futures), what="every future woken")


async def test_a_future_already_done_does_not_end_its_slice() -> None:
    """A wake skips a future that is already done and still wakes the rest in the same turn."""
    loop = asyncio.get_running_loop()
    pacer = pacing._Pacer(loop)
    futures: list[asyncio.Future[None]] = [loop.create_future() for _ in range(3)]
    futures[0].cancel()  # its waiter went away before the wake
    pacer.wake(futures)
    woken: asyncio.Future[list[bool]] = loop.create_future()
    loop.call_soon(lambda: woken.set_result([f.done() for f in futures[1:]]))
    assert await woken == [True, True]


async def test_only_a_worker_that_raised_is_reported_as_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's end is logged CRITICAL, with its exception, only when it raised: not when
    it was cancelled (a normal stop) nor when it returned."""

    async def crash() -> None:
        raise RuntimeError("the store broke")

    async def finish() -> None:
        return None

    caplog.set_level(logging.DEBUG, logger="taskrpc.app")
    crashed, returned = asyncio.create_task(crash()), asyncio.create_task(finish())
    cancelled = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait([crashed, returned, cancelled])
    for task in (cancelled, returned):
        _report_crash(task)  # asking a cancelled task for its exception would raise here
    assert caplog.records == []
    _report_crash(crashed)
    (record,) = caplog.records
    assert (record.levelno, record.getMessage()) == (logging.CRITICAL, "the worker stopped")
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "the store broke"
