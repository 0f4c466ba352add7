"""Connections: how many may be open, how long a new one may take to ask, and quiet fd errors.

aiohttp closes an idle keep-alive connection by itself (its `keepalive_timeout`), but it
has no cap on open connections and gives a new connection as long to send its request
head as an idle one gets. So the listening socket hands its connections to a `Gate`:
past `limit` open connections it answers HTTP 503 and closes at once (the file
descriptor is free again before the next accept), and a connection that has not sent a
complete request head within `head_timeout` seconds is closed. The cap is kept below
the process's file-descriptor limit, so accepting never runs out of descriptors; if
something else uses them up, asyncio's "out of system resource" error is logged at
most once a second instead of once per pending connection and loop turn.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import resource
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from backend.envelope import dumps, error
from backend.protocol import ErrorCode

logger = logging.getLogger("taskrpc.connections")

FD_RESERVE = 64  # descriptors kept for what is not a client: the listener, files, threads' pipes
_HEAD_END = re.compile(rb"\n\r?\n")  # the empty line that ends a request head (CRLF or bare LF)
_ACCEPT_ERROR = "socket.accept() out of system resource"  # asyncio's message for EMFILE & co
LOG_EVERY = 1.0  # seconds between two log lines about refused connections or accept errors

Factory = Callable[[], asyncio.BaseProtocol]


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. a hard limit the kernel will not grant
            logger.warning("cannot raise the file-descriptor limit from %d: %s", soft, exc)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft


def connection_cap(wanted: int, fd_limit: int) -> int:
    """`wanted`, lowered if needed so that open connections always leave spare descriptors."""
    if fd_limit == resource.RLIM_INFINITY:
        return wanted
    room = max(1, fd_limit - FD_RESERVE)
    if wanted > room:
        logger.warning(
            "max connections lowered from %d to %d: the file-descriptor limit is %d",
            wanted,
            room,
            fd_limit,
        )
    return min(wanted, room)


class Gate:
    """The protocol factory the listening socket calls: counts, caps and times connections."""

    def __init__(self, factory: Factory, *, limit: int, head_timeout: float) -> None:
        self._factory = factory
        self.limit = limit
        self.head_timeout = head_timeout
        self.open = 0  # counted from the factory call, so one accept burst cannot overshoot
        self._refused = 0  # since the last log line
        self._logged = -math.inf  # never: the first refusal is logged

    def __call__(self) -> asyncio.BaseProtocol:
        if self.open >= self.limit:
            self._refused += 1
            self._log_refusals()
            return _Refused()
        self.open += 1
        return _Guarded(self, self._factory())

    def closed(self) -> None:
        """One guarded connection is gone."""
        self.open -= 1

    def _log_refusals(self) -> None:
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY:
            self._logged = now
            logger.warning(
                "refused %d connection(s): %d are open, the limit (--max-connections)",
                self._refused,
                self.open,
            )
            self._refused = 0


class _Guarded(asyncio.Protocol):
    """Passes everything to aiohttp's protocol; closes the connection if no head comes in time."""

    def __init__(self, gate: Gate, inner: asyncio.BaseProtocol) -> None:
        self._gate = gate
        self._inner: Any = inner  # aiohttp's RequestHandler: a streaming asyncio.Protocol
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes read while no head end was seen (it may be split)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._gate.head_timeout, self._too_slow)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._tail + data
            if _HEAD_END.search(seen):
                self._timer.cancel()
                self._timer = None  # and so the tail is never read again: no need to clear it
            else:
                self._tail = seen[-2:]  # the longest head end (3 bytes) less one
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        answer: bool | None = self._inner.eof_received()
        return answer

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._gate.closed()
        self._inner.connection_lost(exc)

    def _too_slow(self) -> None:
        self._timer = None
        logger.info(
            "closed a connection that sent no request head in %g s", self._gate.head_timeout
        )
        if self._transport is not None:
            self._transport.close()


_BUSY_BODY = dumps(
    error(ErrorCode.SERVER_BUSY, "server busy: too many open connections; try again later")
)
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class _Refused(asyncio.Protocol):
    """A connection past the cap: it gets one 503 and is closed before anything is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY)
        transport.close()


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Log asyncio's accept errors (out of file descriptors) at most once a second.

    Python 3.11's accept loop reports EMFILE once per pending connection and retry, which
    filled a disk at 13 000 lines a second. Other errors go to the handler that was in
    place. Returns the function that puts that handler back.
    """
    previous = loop.get_exception_handler()
    last = -LOG_EVERY
    skipped = 0

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal last, skipped
        if context.get("message") != _ACCEPT_ERROR:
            if previous is None:
                loop.default_exception_handler(context)
            else:
                previous(loop, context)
            return
        now = time.monotonic()
        if now - last < LOG_EVERY:
            skipped += 1
            return
        last = now
        logger.error(
            "cannot accept connections: %s (%d more like it not logged)",
            context.get("exception"),
            skipped,
        )
        skipped = 0

    loop.set_exception_handler(handle)
    return lambda: loop.set_exception_handler(previous)


class GatedSite(web.TCPSite):
    """aiohttp's TCP site with a `Gate` between the listening socket and aiohttp's protocol."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, limit: int, head_timeout: float
    ) -> None:
        super().__init__(runner, host, port)
        self._limit = limit
        self._head_timeout = head_timeout
        self.gate: Gate | None = None

    async def start(self) -> None:
        """Listen as TCPSite.start does, but through the gate."""
        await web.BaseSite.start(self)  # registers the site with its runner (no listening)
        server = self._runner.server
        assert server is not None  # the runner was set up before the site was made
        self.gate = Gate(server, limit=self._limit, head_timeout=self._head_timeout)
        self._server = await asyncio.get_running_loop().create_server(
            self.gate, self._host, self._port, backlog=self._backlog
        )
