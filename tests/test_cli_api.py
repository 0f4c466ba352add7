"""The client library as a Python API: the sync client, `follow` on both clients, the README."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from backend.protocol import JobStatus, Method, Unauthorized
from cli import http1
from cli.client import Client
from cli.http1 import MAX_LINE, Answer, Closed, Connection, NotHttp
from cli.sync import (
    Disconnected,
    JobNotFound,
    NotTaskrpc,
    ResultNotReady,
    SyncClient,
    Unreachable,
)
from tests.conftest import ServerProcess, spawn_server, stand_in

README = Path(__file__).parent.parent / "README.md"
EXAMPLE = re.compile(
    r"<!-- this example is run by tests/test_cli_api.py -->\n```python\n(.*?)```", re.S
)


@pytest.fixture
def slow_server() -> Iterator[ServerProcess]:
    """Real delays (reverse 2 s, repeat 7 s): jobs stay queued or running while we look."""
    started = spawn_server("--time-scale", "1")
    yield started
    started.reap()


def test_the_readme_example_runs(server_process: ServerProcess) -> None:
    """The README's Python example, run as written against a real server, prints the result."""
    found = EXAMPLE.search(README.read_text(encoding="utf-8"))
    assert found, "the README lost its marked Python example"
    code = found.group(1).replace("http://127.0.0.1:8765", server_process.url)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = done.stdout.decode("utf-8").splitlines()
    assert done.returncode == 0, done.stderr
    assert out[-1] == "ремирп"
    assert [line.split()[0] for line in out[:-1]][-1] == "done"


def test_errors_are_the_classes_the_server_raised(slow_server: ServerProcess) -> None:
    """JSON-RPC errors arrive as the protocol module's exception classes."""
    with SyncClient(slow_server.url) as client:
        with pytest.raises(JobNotFound):
            client.status("nosuchjob")
        job = client.submit("repeat", "x")
        with pytest.raises(ResultNotReady) as not_ready:
            client.result(job["id"])
        assert not_ready.value.data["status"] in ("queued", "running")
        client.cancel(job["id"])


def test_follow_yields_each_change_until_done(server_process: ServerProcess) -> None:
    """follow yields the job now, then at each change, and ends once it is done."""
    with SyncClient(f"{server_process.url}/rpc") as client:  # the curl URL works too
        job = client.submit("swap", "пример")
        seen = [job["status"] for job in client.follow(job)]
    # A change may be missed between two long polls on a loaded machine (running for 50 ms);
    # what cannot happen is a repeat, a step back, or an end before done.
    assert seen[0] == JobStatus.QUEUED
    assert seen[-1] == JobStatus.DONE
    assert seen in (["queued", "running", "done"], ["queued", "done"])


def test_follow_ends_at_its_timeout(slow_server: ServerProcess) -> None:
    """With a timeout, follow stops when it runs out; the last job yielded is not finished."""
    with SyncClient(slow_server.url) as client:
        job = client.submit("repeat", "x")
        began = time.monotonic()
        last = list(client.follow(job, timeout=0.3))[-1]
        client.cancel(job["id"])
    assert 0.3 <= time.monotonic() - began < 3
    assert not JobStatus(last["status"]).finished


def test_unreachable() -> None:
    """Nothing listening: Unreachable, saying where and why."""
    with SyncClient("http://127.0.0.1:9") as client, pytest.raises(Unreachable) as caught:
        client.types()
    assert "cannot reach http://127.0.0.1:9" in str(caught.value)


@pytest.mark.parametrize("url", ["ftp://h", "http://h/a b", "http://h/a\r\nX: y", "http://h:x"])
def test_a_url_no_request_can_use_is_refused_at_once(url: str) -> None:
    """A URL that is not http(s), or whose path would break the request line, is a ValueError."""
    with pytest.raises(ValueError, match=r"is not an http|has a (space|bad port)"):
        SyncClient(url)


class Recorder:
    """A stand-in server that answers every call with `[]` and notes each connection's port."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.drop_after = False  # close the connection shortly after answering

    async def answer(self, request: web.Request) -> web.Response:
        body = await request.json()
        assert request.transport is not None
        self.ports.append(request.transport.get_extra_info("peername")[1])
        if self.drop_after:
            asyncio.get_running_loop().call_later(0.05, request.transport.close)
        return web.json_response({"jsonrpc": "2.0", "result": [], "id": body["id"]})


def recording(recorder: Recorder) -> web.Application:
    app = web.Application()
    app.router.add_post("/rpc", recorder.answer)
    return app


def calls(url: str, *, pause: float = 0, then_submit: bool = False) -> Any:
    """Two calls on one client, `pause` s apart (run in a thread: the server is in our loop)."""
    with SyncClient(url) as client:
        client.types()
        time.sleep(pause)
        return client.submit("reverse", "x") if then_submit else client.types()


async def test_one_keep_alive_connection() -> None:
    """All calls of a client travel on one connection."""
    recorder = Recorder()
    async with stand_in(recording(recorder)) as url:
        await asyncio.to_thread(calls, url)
    assert len(recorder.ports) == 2
    assert len(set(recorder.ports)) == 1


async def test_a_dropped_idle_connection_is_reopened_but_submit_is_never_resent() -> None:
    """A call on a connection the server closed is sent again on a new one; a submit is not."""
    recorder = Recorder()
    recorder.drop_after = True
    async with stand_in(recording(recorder)) as url:
        assert await asyncio.to_thread(calls, url, pause=0.3) == []
        assert len(set(recorder.ports)) == 2
        stopping = rf"^{url} closed the connection \(is the server stopping\?\)$"
        with pytest.raises(Disconnected, match=stopping):
            await asyncio.to_thread(calls, url, pause=0.3, then_submit=True)
        assert len(recorder.ports) == 3  # the submit never reached a handler


def types_at(url: str) -> Any:
    with SyncClient(url) as client:
        return client.types()


async def test_a_page_that_is_not_json_rpc() -> None:
    """An HTTP answer that is not JSON-RPC is NotTaskrpc, asking whether the URL is right."""
    async with stand_in(recording(Recorder())) as url:
        with pytest.raises(NotTaskrpc, match=r"is .* a taskrpc server"):
            await asyncio.to_thread(types_at, f"{url}/other")


async def test_async_follow(client: Client) -> None:
    """The async client's follow: the same logic, as an async iterator, ending when done."""
    job = await client.submit("reverse", "кот")
    seen = [job["status"] async for job in client.follow(job["id"])]
    assert seen[-1] == JobStatus.DONE
    assert await client.result(job["id"]) == "ток"


async def test_a_service_that_is_not_http() -> None:
    """A port where another protocol answers (an SSH greeting) is NotTaskrpc too."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        # Read the request before closing, as a real server would wait for the client: closing
        # with its bytes unread makes the kernel reset the connection, a different failure.
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(NotTaskrpc, match=r"answered something that is not HTTP"):
            await asyncio.to_thread(types_at, f"http://127.0.0.1:{port}")


class RawHttp:
    """A stand-in that reads each request (head and Content-Length body) and writes `answers`
    in turn, as raw bytes: the framings a server may choose, exactly as they travel. With
    `hold`, the connection stays open after the last answer until `hold` is set."""

    def __init__(self, *answers: bytes, hold: asyncio.Event | None = None) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.requests: list[bytes] = []
        self.hold = hold
        self.closed = 0  # connections whose socket this stand-in has closed

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._answer(reader, writer)
        finally:
            writer.close()
            self.closed += 1

    async def all_closed(self, connections: int = 1) -> None:
        """Wait until this stand-in has closed `connections` sockets: a handler the test's
        loop outlives would leave its socket to the garbage collector (a ResourceWarning)."""
        deadline = time.monotonic() + 10
        while self.closed < connections:
            assert time.monotonic() < deadline, "the stand-in never closed its connection"
            await asyncio.sleep(0.01)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while self.answers:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
            assert length is not None
            self.requests.append(head + await reader.readexactly(int(length[1])))
            writer.write(self.answers.pop(0))
            await writer.drain()
        if self.hold is not None:
            with contextlib.suppress(TimeoutError):  # closes after 10 s: a failure, not a hang
                await asyncio.wait_for(self.hold.wait(), 10)


async def raw_types(raw: RawHttp, calls: int = 1) -> list[Any]:
    """`calls` types() calls on one SyncClient against `raw` (the client runs in a thread)."""

    def run(url: str) -> list[Any]:
        with SyncClient(url) as client:
            return [client.types() for _ in range(calls)]

    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    async with server:
        return await asyncio.to_thread(
            run, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        )


async def answer_of(raw: RawHttp, timeout: float = 10) -> Answer:
    """One request on a `cli.http1.Connection` to `raw` (in a thread), as a script may send it."""

    def ask(port: int) -> Answer:
        connection = Connection("127.0.0.1", port)
        try:
            connection.send("/rpc", b"{}", {}, timeout=timeout)
            return connection.read()
        finally:
            connection.close()

    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    async with server:
        try:
            return await asyncio.to_thread(ask, server.sockets[0].getsockname()[1])
        finally:
            if raw.hold is not None:
                raw.hold.set()


def ok(result: str, request_id: int) -> bytes:
    return f'{{"jsonrpc": "2.0", "result": {result}, "id": {request_id}}}'.encode()


async def test_a_chunked_answer_is_read_whole_and_keeps_the_connection() -> None:
    """A chunked answer (with a chunk extension and a trailer) is joined; the connection stays."""
    body = ok('["кот"]', 1)
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: yes\r\n\r\n"
        % (10, body[:10], len(body) - 10, body[10:])
    )
    plain = ok("[2]", 2)
    raw = RawHttp(chunked, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(plain), plain))
    assert await raw_types(raw, calls=2) == [["кот"], [2]]
    assert raw.connections == 1
    assert raw.requests[0].startswith(b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_an_answer_framed_by_the_end_of_the_connection() -> None:
    """An answer without a length (HTTP/1.0 style) is read to the end; the next call reconnects."""
    raw = RawHttp(b"HTTP/1.0 200 OK\r\n\r\n" + ok("[1]", 1))
    raw2 = RawHttp(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert await raw_types(raw) == [[1]]
    with pytest.raises(NotTaskrpc, match="HTTP 200"):
        await raw_types(raw2)


async def test_an_answer_cut_short_is_disconnected() -> None:
    """A body shorter than its Content-Length, or a chunk cut short, is Disconnected."""
    for answer in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + ok("[]", 1),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + ok("[]", 1),
    ):
        with pytest.raises(
            Disconnected, match=r"failed: the connection closed in the middle of an answer$"
        ):
            await raw_types(RawHttp(answer))


async def test_malformed_framing_is_not_taskrpc() -> None:
    """A bad Content-Length or chunk size is NotTaskrpc, never a traceback or a hang."""
    for answer in (
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    ):
        with pytest.raises(NotTaskrpc, match="something that is not HTTP"):
            await raw_types(RawHttp(answer))


async def test_an_answer_asking_to_close_the_connection_is_the_last_on_it() -> None:
    """After an answer with `Connection: close`, the next call opens a new connection."""
    closing = ok("[1]", 1)
    plain = ok("[2]", 2)
    raw = RawHttp(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
        % (len(closing), closing),
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(plain), plain),
    )
    assert await raw_types(raw, calls=2) == [[1], [2]]
    assert raw.connections == 2


async def test_at_most_100_header_lines() -> None:
    """An answer may carry 100 header lines (as http.client allows); 101 is not HTTP."""
    body = ok("[1]", 1)

    def answer(lines: int) -> bytes:
        head = b"".join(b"X-Filler-%d: x\r\n" % n for n in range(lines - 1))
        return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)

    assert await raw_types(RawHttp(answer(100))) == [[1]]
    with pytest.raises(NotTaskrpc, match="something that is not HTTP"):
        await raw_types(RawHttp(answer(101)))


async def test_a_head_cut_short_by_the_end_of_the_connection_still_counts() -> None:
    """A head that ends with the connection, without its blank line, is read as it came (as
    http.client does): its status is heard."""
    with pytest.raises(Unauthorized):
        await raw_types(RawHttp(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\n"))


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (b"", Closed, "the server closed the connection without answering"),
        (b"ICY 200 OK\r\n\r\n", NotHttp, "not an HTTP status line: b'ICY 200 OK\\r\\n'"),
        (
            b"HTTP/1.1 2x0 " + b"y" * 50 + b"\r\n\r\n",
            NotHttp,
            "not an HTTP status line: b'HTTP/1.1 2x0 " + "y" * 27 + "'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nno colon " + b"z" * 50 + b"\r\n\r\n",
            NotHttp,
            "not an HTTP header line: b'no colon " + "z" * 31 + "'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1:2\r\n\r\n",
            NotHttp,
            "a bad Content-Length: '1:2'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 30 + b"x\r\n\r\n",
            NotHttp,
            f"a bad Content-Length: '{'1' * 20}'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 30 + b"x\r\n",
            NotHttp,
            f"a bad chunk size: b'{'1' * 20}'",
        ),
    ],
)
async def test_a_bad_answer_is_named_and_quoted_briefly(
    answer: bytes, error: type[Exception], message: str
) -> None:
    """cli.http1 names what is wrong and quotes at most 40 bytes of a line, 20 of a field."""
    with pytest.raises(error) as caught:
        await answer_of(RawHttp(answer))
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("head", "close"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n", True),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\n"
            b"Content-Length: 0\r\n\r\n",
            True,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", True),  # framed by the end of the connection
    ],
)
async def test_which_answers_end_the_connection(head: bytes, close: bool) -> None:
    """`Connection: close` (in any header), HTTP/1.0 without keep-alive, or a body to EOF end it."""
    assert (await answer_of(RawHttp(head))).close is close


async def test_a_head_is_read_as_latin_1_bytes() -> None:
    """A reason phrase or header value with bytes that are not UTF-8 (obs-text) is still read."""
    answer = await answer_of(
        RawHttp(b"HTTP/1.1 200 \xc9t\xe9\r\nX-Note: \xe9\r\nContent-Length: 2\r\n\r\nhi")
    )
    assert (answer.status, answer.body) == (200, b"hi")


async def test_interim_answers_are_skipped() -> None:
    """1xx answers (100 Continue, 103 Early Hints with headers) come before the real one."""
    answer = await answer_of(
        RawHttp(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        )
    )
    assert (answer.status, answer.body) == (200, b"hi")


async def test_a_line_may_be_64_kib_and_one_byte_more_is_refused_at_once() -> None:
    """A head line of MAX_LINE bytes is read; one byte more is refused without waiting for more."""
    long = b"X-Long: " + b"y" * (MAX_LINE - 10) + b"\r\n"
    assert len(long) == MAX_LINE
    answer = await answer_of(
        RawHttp(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + long + b"\r\nhi")
    )
    assert answer.body == b"hi"
    too_long = b"X-Long: " + b"y" * (MAX_LINE + 1 - 8)
    raw = RawHttp(b"HTTP/1.1 200 OK\r\n" + too_long, hold=asyncio.Event())
    with pytest.raises(NotHttp, match=r"^a line longer than 64 KiB$"):
        await answer_of(raw, timeout=2)


def test_connecting_gives_up_at_the_timeout() -> None:
    """A server whose backlog is full never accepts: connecting gives up at the timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), 5)  # fills the backlog
    outcome: list[BaseException | None] = []

    def connect() -> None:
        connection = Connection("127.0.0.1", listener.getsockname()[1])
        try:
            connection.send("/rpc", b"{}", {}, timeout=0.3)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=connect, daemon=True)  # a hang must not hold pytest
    start = time.monotonic()
    try:
        thread.start()
        thread.join(5)
        took = time.monotonic() - start
    finally:
        filler.close()
        listener.close()
    assert len(outcome) == 1, "still connecting after 5 s"
    assert isinstance(outcome[0], TimeoutError), outcome
    assert took < 5


async def test_requests_leave_without_waiting_for_acknowledgements() -> None:
    """The connection's socket has Nagle's algorithm off (TCP_NODELAY), as http.client's."""
    raw = RawHttp(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)

    def nodelay(port: int) -> int:
        connection = Connection("127.0.0.1", port)
        try:
            connection.send("/rpc", b"{}", {}, timeout=10)
            assert connection._sock is not None
            return connection._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            connection.close()

    async with server:
        assert await asyncio.to_thread(nodelay, server.sockets[0].getsockname()[1]) != 0
        await raw.all_closed()


@pytest.mark.skipif(not http1._KERNEL_TIMEOUTS, reason="the kernel keeps no timeouts here")
async def test_a_timeout_is_set_on_the_socket_only_when_it_changes() -> None:
    """Calls with the timeout of the last one make no setsockopt (two system calls a call)."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    raw = RawHttp(answer, answer, answer)
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)

    def receive_timeouts(port: int) -> list[bytes]:
        connection = Connection("127.0.0.1", port)
        seen = []
        try:
            for timeout in (5, 5, 7):
                connection.send("/rpc", b"{}", {}, timeout=timeout)
                connection.read()
                assert connection._sock is not None
                seen.append(connection._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
                connection._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, bytes(16))
        finally:
            connection.close()
        return seen

    async with server:
        seen = await asyncio.to_thread(receive_timeouts, server.sockets[0].getsockname()[1])
    assert seen[1] == bytes(16)  # left as it was: not set again
    assert seen[0] != bytes(16)
    assert seen[2] != bytes(16)


async def test_a_request_travels_as_this_head_and_a_utf8_body() -> None:
    """POST, Host, no compression, length, the client's headers; the body in UTF-8, unescaped."""
    raw = RawHttp(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ok("1", 1)), ok("1", 1))
    )
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def submit() -> Any:
        with SyncClient(f"http://127.0.0.1:{port}/base") as client:
            return client.call(Method.SUBMIT, {"type": "reverse", "data": "кот"})

    async with server:
        assert await asyncio.to_thread(submit) == 1
    head, _, body = raw.requests[0].partition(b"\r\n\r\n")
    assert head == (
        b"POST /base/rpc HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: identity\r\n"
        b"Content-Length: %d\r\nContent-Type: application/json" % (port, len(body))
    )
    assert json.loads(body)["params"] == {"type": "reverse", "data": "кот"}
    assert '"кот"'.encode() in body


async def test_the_async_client_sends_its_token_as_given_and_none_without_one() -> None:
    """Client(token=…) sends `Authorization: Bearer TOKEN`; without a token, no such header."""
    heads: list[bytes] = []
    for token in ("s3cret", None):
        raw = RawHttp(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ok("[]", 1)), ok("[]", 1))
        )
        server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
        async with (
            server,
            Client(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", token) as client,
        ):
            assert await client.types() == []
        heads.append(raw.requests[0].partition(b"\r\n\r\n")[0])
    assert b"\r\nAuthorization: Bearer s3cret\r\n" in heads[0]
    assert b"authorization" not in heads[1].lower()


async def test_each_async_client_numbers_its_own_requests_from_1() -> None:
    """Two clients in one process each send ids 1, 2 (jsonrpcclient's counter is process-wide)."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ok("[]", 1)), ok("[]", 1))
    raw = RawHttp(*[answer] * 4)
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    async with server:
        for _ in range(2):
            async with Client(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}") as client:
                assert [await client.types(), await client.types()] == [[], []]
    assert [json.loads(r.partition(b"\r\n\r\n")[2])["id"] for r in raw.requests] == [1, 2, 1, 2]


async def test_a_server_that_never_answers_times_out() -> None:
    """A server that takes the request and never answers: the read gives up at the timeout."""
    done, closed = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        with contextlib.suppress(TimeoutError):  # closes after 10 s: a failure, not a hang
            await asyncio.wait_for(done.wait(), 10)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        closed.set()

    def ask(port: int) -> float:
        connection = Connection("127.0.0.1", port)
        connection.send("/rpc", b"{}", {"Content-Type": "application/json"}, timeout=1.05)
        start = time.monotonic()
        try:
            with pytest.raises(TimeoutError, match=r"^timed out$"):
                connection.read()
        finally:
            connection.close()
        return time.monotonic() - start

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        try:
            took = await asyncio.to_thread(ask, server.sockets[0].getsockname()[1])
        finally:
            done.set()
            # Python 3.11's server does not wait for its handlers: this one closes its socket
            # before the loop ends, or the test leaves it to the garbage collector.
            await asyncio.wait_for(closed.wait(), 10)
    assert 1.04 <= took < 1.6  # the whole second and the fraction (0.05 s) both count, no more


async def test_https_to_a_plain_http_server_is_unreachable() -> None:
    """https:// where plain HTTP answers: Unreachable, OpenSSL's reason as it spells it ([SSL…)."""
    async with stand_in(recording(Recorder())) as url:
        secure = url.replace("http://", "https://")
        reason = r"cannot reach https://127\.0\.0\.1:\d+ .*\(\[SSL\b.+\)$"
        with pytest.raises(Unreachable, match=reason):
            await asyncio.to_thread(types_at, secure)


def test_follow_pauses_double_on_a_busy_server_and_start_over_after_an_answer() -> None:
    """Follow.busy: 0.25, 0.5, 1… up to BUSY_MOST; an answer starts the pauses over."""
    from cli.rpc import BUSY_FIRST, BUSY_MOST, Follow

    job: Any = {"id": "x", "status": "queued", "position": 1}
    follow = Follow(job, timeout=None)
    pauses = [follow.busy() for _ in range(8)]
    assert pauses[:3] == [BUSY_FIRST, 2 * BUSY_FIRST, 4 * BUSY_FIRST]
    assert max(pauses) == pauses[-1] == BUSY_MOST
    follow.update(job)
    assert follow.paused is None
    assert follow.busy() == BUSY_FIRST


def test_follow_asks_nothing_more_once_its_time_is_exactly_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Follow.next_call: None when the deadline is now, not a long poll of 0 s (a fixed clock)."""
    import types

    import cli.rpc
    from cli.rpc import Follow

    monkeypatch.setattr(cli.rpc, "time", types.SimpleNamespace(monotonic=lambda: 100.0))
    job: Any = {"id": "x", "status": "queued", "position": 1}
    assert Follow(job, timeout=0).next_call() is None
    call = Follow(job, timeout=0.5).next_call()
    assert call is not None
    assert call.params == {"id": "x", "timeout": 0.5, "status": "queued", "position": 1}
