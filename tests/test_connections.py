"""Connections: a cap, a deadline for the first head, idle keep-alives closed, quiet EMFILE."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from backend.connections import Gate, connection_cap, raise_fd_limit
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


def test_the_fd_limit_is_raised_and_the_cap_stays_below_it() -> None:
    """The soft fd limit is raised to the hard one; the cap leaves descriptors to spare."""
    soft = raise_fd_limit()
    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert connection_cap(1000, 200) < 200
    assert connection_cap(1000, 100_000) == 1000


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
