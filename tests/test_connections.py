"""Connections: a cap, a deadline for the first head, idle keep-alives closed, quiet EMFILE."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

from backend import connections
from backend.connections import Gate, connection_cap, quiet_accept_errors, raise_fd_limit
from tests.conftest import StartServer

HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def _open(url: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(url))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True if the server closes the connection within `within` seconds (all data read)."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def test_connections_past_the_cap_get_503_and_close(start_server: StartServer) -> None:
    """With max_connections open, the next connection gets HTTP 503 at once; a freed slot works."""
    server = await start_server(max_connections=3)
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(_open(server.url)) for _ in range(3)]
        async with _open(server.url) as (reader, _):
            async with asyncio.timeout(5):
                answer = await reader.read()
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"-32008" in answer
        reader, writer = held[0]
        writer.write(HEAD)
        async with asyncio.timeout(5):
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        held[1][1].close()  # one goes away: a new connection is served again
        deadline = time.monotonic() + 5
        while True:
            async with _open(server.url) as (reader, writer):
                writer.write(HEAD)
                async with asyncio.timeout(5):
                    line = await reader.readline()
            if line.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)  # the server may not have seen the close yet
        assert line.startswith(b"HTTP/1.1 200"), line


async def test_a_connection_that_sends_no_complete_head_is_closed(
    start_server: StartServer,
) -> None:
    """A connection that has not sent a whole request head within head_timeout is closed."""
    server = await start_server(head_timeout=0.2)
    async with _open(server.url) as (silent, _), _open(server.url) as (slow, slow_writer):
        slow_writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        assert await _closed_by_server(silent, within=5)
        assert await _closed_by_server(slow, within=5)


async def test_a_long_request_outlives_the_head_deadline(start_server: StartServer) -> None:
    """The head deadline is for the head only: a long poll that takes longer is answered."""
    server = await start_server(head_timeout=0.1, time_scale=1)
    job = (await server.call("submit", {"type": "reverse", "data": "x"}))["result"]
    body = (
        b'{"jsonrpc": "2.0", "method": "wait", "params": {"id": "%s", "timeout": 0.4}, "id": 1}'
        % job["id"].encode()
    )
    request = (
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    async with _open(server.url) as (reader, writer):
        writer.write(request)
        async with asyncio.timeout(5):
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")


async def test_an_idle_keep_alive_connection_is_closed(start_server: StartServer) -> None:
    """After its answer, a keep-alive connection that stays idle keepalive_timeout is closed."""
    server = await start_server(keepalive_timeout=0.3)
    async with _open(server.url) as (reader, writer):
        writer.write(HEAD)
        async with asyncio.timeout(5):
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert await _closed_by_server(reader, within=5)
        assert time.monotonic() - started >= 0.2


@pytest.fixture
def lowered_soft_limit() -> Iterator[tuple[int, int]]:
    """The soft fd limit set one below the hard one for the test, then put back: a server
    started earlier in this process has raised it already. Yields (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard fd limit here: the soft limit is raised to 'unlimited'")
    set_limit = resource.setrlimit  # the real one, whatever a test patches
    lowered = min(soft, hard - 1)
    set_limit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        yield lowered, hard
    finally:
        set_limit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_fd_limit_is_raised_to_the_hard_one(lowered_soft_limit: tuple[int, int]) -> None:
    """A soft fd limit below the hard one is raised to it."""
    _, hard = lowered_soft_limit
    assert raise_fd_limit() == hard
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


def test_a_refused_raise_keeps_the_soft_limit(
    lowered_soft_limit: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the kernel refuses the hard limit, the soft one stays in force, is returned, and
    the refusal is logged (the refusal is a stand-in: a test cannot make the kernel refuse)."""
    lowered, _ = lowered_soft_limit

    def refuse(which: int, limits: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(resource, "setrlimit", refuse)
    with caplog.at_level(logging.WARNING, logger=connections.logger.name):
        assert raise_fd_limit() == lowered
    assert f"cannot raise the file-descriptor limit from {lowered}: not allowed" in caplog.text


def test_the_cap_leaves_descriptors_to_spare(caplog: pytest.LogCaptureFixture) -> None:
    """Connections are capped FD_RESERVE below the fd limit, at one at least, and the lowering
    is logged only when it happens."""
    reserve = connections.FD_RESERVE
    with caplog.at_level(logging.WARNING, logger=connections.logger.name):
        assert connection_cap(1000, 100_000) == 1000
        assert connection_cap(200 - reserve, 200) == 200 - reserve  # fits exactly
        assert connection_cap(10, resource.RLIM_INFINITY) == 10
        assert not caplog.records
        assert connection_cap(1000, 200) == 200 - reserve
        assert "lowered from 1000 to" in caplog.text
        assert connection_cap(10, reserve) == 1


# Opens 400 connections to the port in argv[1] and holds them for argv[2] seconds.
_HOLDER = """
import socket, sys, time
socks = []
for _ in range(400):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", int(sys.argv[1])))
    socks.append(s)
time.sleep(float(sys.argv[2]))
"""


async def test_out_of_file_descriptors_is_logged_at_most_once_a_second(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """When accept fails for want of descriptors, one log line a second, not thousands."""
    server = await start_server()
    # A plain Popen, polled: asyncio's child watcher would need descriptors the test takes away.
    argv = [sys.executable, "-c", _HOLDER, str(_port(server.url)), "2.5"]
    holder = subprocess.Popen(argv)  # noqa: ASYNC220 - see above
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    caplog.set_level(logging.ERROR)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 8, hard))  # accept fails soon
        while holder.poll() is None:  # noqa: ASYNC110 - no descriptor left for an event
            await asyncio.sleep(0.05)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        holder.kill()
        holder.wait()
    lines = [r for r in caplog.records if "out of system resource" in r.getMessage()]
    lines += [r for r in caplog.records if "cannot accept connections" in r.getMessage()]
    assert 1 <= len(lines) <= 4, f"{len(lines)} lines about accept errors in 2.5 s"


class _HalfOpen(asyncio.Protocol):
    """A protocol that keeps its side open when the peer stops sending (answers True)."""

    def eof_received(self) -> bool:
        return True


def test_the_inner_protocols_answer_to_eof_is_passed_on() -> None:
    """A guarded connection answers end-of-file as the protocol it wraps does: asyncio keeps
    the transport half-open only if that answer is True (aiohttp's own answers None)."""
    for inner, answer in ((_HalfOpen, True), (asyncio.Protocol, None)):
        guarded = Gate(inner, limit=1, head_timeout=1.0)()
        assert isinstance(guarded, asyncio.Protocol)
        assert guarded.eof_received() is answer


async def test_the_server_listens_with_the_backlog_aiohttp_sites_use(
    start_server: StartServer,
) -> None:
    """The gated site listens as aiohttp's TCPSite would: with its backlog, not asyncio's."""
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("needs `ss` (iproute2) to read a listening socket's backlog")
    server = await start_server()
    port = _port(server.url)
    ss_run = await asyncio.create_subprocess_exec(
        ss, "-ltnH", f"sport = :{port}", stdout=subprocess.PIPE
    )
    out, _ = await ss_run.communicate()
    assert ss_run.returncode == 0
    listing = out.decode().split()
    backlog = inspect.signature(web.TCPSite).parameters["backlog"].default
    create_server = inspect.signature(asyncio.get_running_loop().create_server)
    assert backlog != create_server.parameters["backlog"].default  # else this test is blind
    # A listening socket's line: State, Recv-Q (connections waiting), Send-Q (the backlog), ...
    assert listing[0] == "LISTEN", listing
    assert int(listing[2]) == backlog, listing


class _Clock:
    """Stands in for the `time` module that connections reads (the event loop keeps its own)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def idle_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A real event loop, not running: its exception handler is called directly."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


_EMFILE = OSError(errno.EMFILE, os.strerror(errno.EMFILE))


def _accept_error(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio's accept loop reports when accept() fails for want of descriptors."""
    loop.call_exception_handler({"message": connections._ACCEPT_ERROR, "exception": _EMFILE})


def test_accept_errors_are_logged_once_a_second_with_how_many_were_not(
    idle_loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first accept error is logged whatever the clock reads, then one a second at most,
    each line counting those left out since the one before."""
    clock = _Clock(0.0)
    monkeypatch.setattr(connections, "time", clock)
    caplog.set_level(logging.ERROR, "taskrpc.connections")
    restore = quiet_accept_errors(idle_loop)
    try:
        for at in (0.0, 0.5, 0.9, 1.0, 1.5, 1.99, 2.0, 3.5):
            clock.now = at
            _accept_error(idle_loop)
    finally:
        restore()
    line = "cannot accept connections: [Errno 24] Too many open files (%d more like it not logged)"
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("taskrpc.connections", logging.ERROR, line % 0),  # at 0.0
        ("taskrpc.connections", logging.ERROR, line % 2),  # at 1.0: 0.5 and 0.9 left out
        ("taskrpc.connections", logging.ERROR, line % 2),  # at 2.0: 1.5 and 1.99
        ("taskrpc.connections", logging.ERROR, line % 0),  # at 3.5
    ]


def test_other_loop_errors_reach_the_handler_in_place_which_is_put_back(
    idle_loop: asyncio.AbstractEventLoop,
) -> None:
    """Only accept errors are thinned out: anything else goes to the handler set before, and
    the function returned puts that handler back."""
    seen: list[dict[str, Any]] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(context)

    idle_loop.set_exception_handler(handler)
    restore = quiet_accept_errors(idle_loop)
    assert idle_loop.get_exception_handler() is not handler
    _accept_error(idle_loop)
    idle_loop.call_exception_handler({"message": "something else"})
    assert seen == [{"message": "something else"}]
    restore()
    assert idle_loop.get_exception_handler() is handler


def test_without_a_handler_other_loop_errors_reach_asyncios_default(
    idle_loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    """With no handler set before, other errors are logged by asyncio as usual, and the function
    returned leaves no handler."""
    caplog.set_level(logging.ERROR)
    restore = quiet_accept_errors(idle_loop)
    idle_loop.call_exception_handler({"message": "something else"})
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("asyncio", "something else")]
    restore()
    assert idle_loop.get_exception_handler() is None


class _Inner(asyncio.Protocol):
    """Stands in for aiohttp's protocol behind the gate: keeps what reaches it."""

    def __init__(self) -> None:
        self.data = b""

    def data_received(self, data: bytes) -> None:
        self.data += data


class _Transport(asyncio.Transport):
    """Stands in for a socket's transport: records whether the gate closed it."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def _feed(chunks: list[bytes]) -> tuple[_Transport, _Inner, list[int]]:
    """Give the chunks to a guarded connection whose head deadline is now, in one loop turn;
    return its transport and inner protocol once the deadline has passed, and the length of
    the tail kept after each chunk."""
    inner = _Inner()
    guarded = Gate(lambda: inner, limit=1, head_timeout=0.0)()
    assert isinstance(guarded, connections._Guarded)
    transport = _Transport()
    guarded.connection_made(transport)  # the deadline's timer is due at once
    tails = []
    for chunk in chunks:
        guarded.data_received(chunk)
        tails.append(len(guarded._tail))
    passed = asyncio.Event()  # due after the deadline, so it runs after the deadline's timer
    asyncio.get_running_loop().call_later(0.001, passed.set)
    await passed.wait()
    return transport, inner, tails


def _bytes(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


_LF_HEAD = b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n"
_MIXED_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\n\r\n"


@pytest.mark.parametrize("head", [HEAD, _LF_HEAD, _MIXED_HEAD])
async def test_a_head_end_split_anywhere_ends_the_head_deadline(head: bytes) -> None:
    """A head's end (CRLF, bare LF or both) split across chunks, even one byte at a time, is
    seen: the connection outlives the head deadline, and every byte reaches aiohttp."""
    splits = [[head[:at], head[at:]] for at in range(1, len(head))]
    for chunks in [*splits, _bytes(head)]:
        transport, inner, _ = await _feed(chunks)
        assert not transport.closed, chunks
        assert inner.data == head


async def test_a_head_without_its_end_keeps_a_two_byte_tail_and_is_closed() -> None:
    """Before the head's end, the gate keeps only the two bytes a split end needs (its longest
    form, CRLF CRLF's last three, less one), however the head drips in; at the deadline the
    connection is closed."""
    unfinished = HEAD[:-1]
    for chunks in ([unfinished[:10], unfinished[10:]], _bytes(unfinished)):
        transport, inner, tails = await _feed(chunks)
        assert transport.closed
        assert inner.data == unfinished
        assert tails == [min(2, sum(map(len, chunks[: i + 1]))) for i in range(len(chunks))]
