"""GET /ws: JSON-RPC 2.0 over a WebSocket, and live job notifications for subscribers.

Every method of `/rpc` works on the socket, plus `auth` and `subscribe`: every message,
the first one too, is checked and answered by the same `envelope.Dispatcher` as `/rpc`.
A subscriber gets a snapshot, then one `jobs.changed` notification per burst of changes:
the hub collects changed jobs and sends them every `COALESCE` seconds, serialized once
for all subscribers.

A slow or dead subscriber never slows anyone else: each connection has its own
writer task and a bounded backlog of notifications, which counts what the transport
still holds too. When the backlog overflows, it is dropped and the subscriber is told
to re-snapshot (`jobs.resync`). A snapshot is built, and encoded, in slices that yield
to the event loop, one snapshot at a time for the whole server, and only once the
socket has sent what it had queued: a client that does not read cannot pile them up.
The number of open sockets has a cap (`max_subscribers`); past it the upgrade is 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from typing import Any, cast

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from jsonrpcserver import Result, Success

from backend.envelope import Response, check, dumps, failure, parse
from backend.gate import TOKEN_SHOWN, same_secret
from backend.protocol import (
    JSON_TYPE,
    WS_PATH,
    Changes,
    InvalidParams,
    JobUpdate,
    Notification,
    RpcError,
    ServerBusy,
    Snapshot,
    SocketMethod,
    Unauthorized,
)
from backend.rpc import Api
from backend.settings import DEFAULTS
from backend.store import Job, Store

logger = logging.getLogger("taskrpc.ws")
REFUSAL = (
    "missing or wrong token: send the header 'Authorization: Bearer <token>' or, "
    'as the first message, {"method": "auth", "params": {"token": "<token>"}}'
)

COALESCE = 0.05  # seconds between two notifications to subscribers
MAX_BACKLOG_BYTES = 4 * 1024 * 1024  # notifications waiting for one slow subscriber
MAX_IN_FLIGHT = 16  # requests of one socket being answered (or waiting to be sent) at once
AUTH_TIMEOUT = 10.0  # seconds to send the `auth` message when no header carried the token
HEARTBEAT = 20.0  # seconds between pings; a peer that does not answer is closed
DEFAULT_SNAPSHOT = 1000  # jobs in a snapshot unless the subscriber asks otherwise
MAX_SNAPSHOT = 20_000
SNAPSHOT_SLICE = 256  # job summaries built between two yields (~25 µs each with 100 000 jobs)


class Hub:
    """Every open socket of one app, and the changes waiting to be sent to subscribers."""

    def __init__(
        self,
        queue: Store,
        api: Api,
        token: str | None,
        *,
        max_message: int,
        max_sockets: int = DEFAULTS.max_subscribers,
        interval: float = COALESCE,
        max_backlog: int = MAX_BACKLOG_BYTES,
    ) -> None:
        self.queue = queue
        self.api = api
        self.token = token
        self.max_message = max_message
        self.interval = interval
        self.max_backlog = max_backlog
        self.max_sockets = max_sockets
        self.snapshot_turn = asyncio.Lock()  # one snapshot at a time: each takes many slices
        self.seq = 0  # notifications sent so far
        self.connections: set[Connection] = set()
        self.subscribers: set[Connection] = set()
        self._changed: dict[str, Job] = {}
        self._forgotten: set[str] = set()  # ids the queue dropped since the last notification
        self._flush: asyncio.TimerHandle | None = None
        queue.subscribe(self._on_change, forget=self._on_forget)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """GET /ws: upgrade, check the token, then answer messages until the peer leaves."""
        if len(self.connections) >= self.max_sockets:
            busy = ServerBusy(
                f"server busy: {self.max_sockets} WebSockets are open, the server's limit "
                "(--max-subscribers); try again later"
            )
            raise web.HTTPServiceUnavailable(text=_dumps(failure(busy)), content_type=JSON_TYPE)
        # aiohttp refuses a message of max_msg_size bytes itself; HTTP takes a body of exactly
        # --max-body-bytes, and so does the socket.
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=self.max_message + 1)
        await ws.prepare(request)
        connection = Connection(self, ws, request.transport)
        self.connections.add(connection)
        try:
            await connection.serve(authorized=request[TOKEN_SHOWN])  # the gate's verdict
        finally:
            self.connections.discard(connection)
            self.subscribers.discard(connection)
        return ws

    async def close_all(self, app: web.Application) -> None:
        """on_shutdown: close every socket so the server can stop."""
        for connection in list(self.connections):
            await connection.close()

    async def snapshot(self, limit: int) -> Snapshot:
        """The newest `limit` jobs and the counts, as of now (`seq`).

        Summaries are built and encoded SNAPSHOT_SLICE at a time, yielding in between, and
        `jobs` is the encoded array (an orjson.Fragment): 20 000 summaries took 490 ms to
        build and 18 ms to encode in one go. Jobs that change meanwhile may show their newer
        state; the notifications after `seq` carry it as well, and applying one is idempotent.
        """
        counts = self.queue.counts()
        seq = self.seq
        jobs = list(itertools.islice(self.queue.newest(), limit))
        parts: list[bytes] = []
        for start in range(0, len(jobs), SNAPSHOT_SLICE):
            chunk = [self.update(job) for job in jobs[start : start + SNAPSHOT_SLICE]]
            parts.append(orjson.dumps(chunk)[1:-1])
            await asyncio.sleep(0)
        encoded = orjson.Fragment(b"[" + b",".join(parts) + b"]")
        return {
            "seq": seq,
            "jobs": cast(list[JobUpdate], encoded),  # encodes as the list of summaries
            "counts": counts,
            "total": sum(counts.values()),
            "limit": limit,
        }

    def update(self, job: Job) -> JobUpdate:
        """The job as subscribers see it."""
        return self.queue.summarize(job)

    def check_token(self, given: str) -> bool:
        """True if `given` is the server's token (compared in constant time)."""
        return self.token is None or same_secret(given, self.token)

    def _on_change(self, job: Job) -> None:
        if not self.subscribers:
            return  # a new subscriber starts from a snapshot anyway
        self._changed[job.id] = job
        self._schedule()

    def _on_forget(self, job: Job) -> None:
        if self.subscribers:
            self._forgotten.add(job.id)
            self._schedule()

    def _schedule(self) -> None:
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.interval, self._send_changes)

    def _send_changes(self) -> None:
        self._flush = None
        changed, self._changed = self._changed, {}
        forgotten, self._forgotten = self._forgotten, set()
        if not self.subscribers:
            return
        jobs = [self.update(job) for job_id, job in changed.items() if job_id not in forgotten]
        removed = list(forgotten)
        self.seq += 1
        params: Changes = {
            "seq": self.seq,
            "jobs": jobs,
            "removed": removed,
            "counts": self.queue.counts(),
        }
        text = _dumps({"jsonrpc": "2.0", "method": Notification.JOBS_CHANGED, "params": params})
        for connection in list(self.subscribers):
            connection.notify(text)


class Connection:
    """One socket: a reader that answers requests, a writer that sends, a bounded backlog."""

    def __init__(
        self, hub: Hub, ws: web.WebSocketResponse, transport: asyncio.Transport | None
    ) -> None:
        self.hub = hub
        self.ws = ws
        self._transport = transport
        self._out: deque[tuple[str, bool]] = deque()  # (frame, is a notification)
        self._held: list[str] = []  # notifications that must follow a snapshot being built
        self._building = 0  # snapshots being built for this socket
        self._backlog = 0  # characters of notifications in _out and _held
        self._ready = asyncio.Event()  # set when _out has something to send
        self._idle = asyncio.Event()  # set while the writer has sent everything queued
        self._snapshot_turn = asyncio.Lock()  # this socket's snapshots, one after the other
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._authorized = False
        self._dispatcher = hub.api.dispatcher.extended(
            {SocketMethod.AUTH: self.auth, SocketMethod.SUBSCRIBE: self.subscribe}
        )

    async def serve(self, *, authorized: bool) -> None:
        """Answer messages until the socket closes; then stop everything this socket started."""
        writer = asyncio.create_task(self._write(), name="taskrpc-ws-writer")
        try:
            if authorized or await self._authorize():
                await self._read()
        finally:
            for task in (*self._tasks, writer):
                task.cancel()
            await asyncio.gather(*self._tasks, writer, return_exceptions=True)
            if self._unsent() and self._transport is not None:
                self._transport.abort()  # a peer that stopped reading: free its buffer now

    async def close(self) -> None:
        """Say goodbye, or cut the connection if its peer stopped reading (no goodbye fits)."""
        if self._unsent() and self._transport is not None:
            self._transport.abort()
        else:
            await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    def notify(self, frame: str) -> None:
        """Queue a notification, or drop the backlog and ask for a resync if it is full.

        The backlog counts what the transport has not sent yet too: frames already
        written to a socket whose peer does not read still cost memory.
        """
        if self._backlog + len(frame) + self._unsent() > self.hub.max_backlog:
            self._overflow()
            return
        self._backlog += len(frame)
        if self._building:
            self._held.append(frame)  # it must go out after the snapshot's answer
        else:
            self._push(frame, is_notification=True)

    def reply(self, frame: str) -> None:
        """Queue an answer to a request; answers are never dropped."""
        self._push(frame, is_notification=False)

    def _push(self, frame: str, *, is_notification: bool) -> None:
        self._out.append((frame, is_notification))
        self._idle.clear()
        self._ready.set()

    def _unsent(self) -> int:
        """Bytes written to the transport that have not gone to the network yet."""
        return 0 if self._transport is None else self._transport.get_write_buffer_size()

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            await self._slots.acquire()  # the peer sends faster than it reads answers: wait
            task = asyncio.create_task(self._answer(message.data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _authorize(self) -> bool:
        """Accept an `auth` request with the right token as the first message, or close.

        The first message is checked like any other: a malformed one gets its own error.
        """
        try:
            message = await self.ws.receive(timeout=AUTH_TIMEOUT)
        except TimeoutError:
            message = None
        answer: Response | None = failure(Unauthorized(REFUSAL))
        if message is not None and message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            answer = await self._first(_utf8(message.data))
        if self._authorized:
            if answer is not None:
                await self.ws.send_str(_dumps(answer))
            return True
        await self.ws.send_str(_dumps(answer or failure(Unauthorized(REFUSAL))))
        await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"unauthorized")
        return False

    async def _first(self, raw: bytes) -> Response | None:
        """The answer to the first message of a socket that has not shown the token."""
        try:
            request = check(parse(raw))
        except RpcError as exc:
            return failure(exc)
        if request["method"] != SocketMethod.AUTH:
            return failure(Unauthorized(REFUSAL), request.get("id"))
        return await self._dispatcher.one(request)

    async def _answer(self, data: str | bytes) -> None:
        answered = False
        try:
            frame = await self._dispatch(data)
            if frame is not None:
                self._push(frame, is_notification=False)
                self._push("", is_notification=False)  # marker: the writer frees a slot then
                answered = True
            if not self._building and self._held:  # a snapshot's answer is queued: now them
                for held in self._held:
                    self._push(held, is_notification=True)
                self._held.clear()
        finally:
            if not answered:
                self._slots.release()

    async def _dispatch(self, data: str | bytes) -> str | None:
        answer = await self._dispatcher.answer(_utf8(data))
        return None if answer is None else _dumps(answer)

    async def auth(self, token: object) -> Result:
        """Show the token (the first message, when the upgrade carried none); true if right."""
        if not isinstance(token, str) or not self.hub.check_token(token):
            raise Unauthorized(REFUSAL)
        self._authorized = True
        return Success(True)

    async def subscribe(self, limit: object = DEFAULT_SNAPSHOT) -> Result:
        """A snapshot of the newest `limit` jobs now, then `jobs.changed` notifications."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SNAPSHOT:
            raise InvalidParams(
                f"limit must be a whole number from 1 to {MAX_SNAPSHOT}, not {limit!r}"
            )
        self._building += 1
        try:
            async with self._snapshot_turn:
                await self._idle.wait()  # what it sent before is gone: snapshots cannot pile up
                async with self.hub.snapshot_turn:
                    # Notifications of an older subscription: the snapshot supersedes them.
                    self._drop_notifications()
                    self.hub.subscribers.add(self)
                    return Success(await self.hub.snapshot(limit))
        finally:
            self._building -= 1

    def _drop_notifications(self) -> None:
        self._out = deque(item for item in self._out if not item[1])
        self._held.clear()
        self._backlog = 0

    def _overflow(self) -> None:
        logger.warning(
            "a subscriber is %d bytes behind; dropping its backlog and asking it to resync",
            self._backlog + self._unsent(),
        )
        self._drop_notifications()
        self.hub.subscribers.discard(self)  # until it calls subscribe again
        reason = "too far behind: the server dropped the changes it had not sent; subscribe again"
        params = {"reason": reason}
        self.reply(_dumps({"jsonrpc": "2.0", "method": Notification.RESYNC, "params": params}))

    async def _write(self) -> None:
        while True:
            while not self._out:
                self._ready.clear()
                self._idle.set()
                await self._ready.wait()
            frame, is_notification = self._out.popleft()
            if is_notification:
                self._backlog -= len(frame)
            if frame:
                with contextlib.suppress(ConnectionResetError):
                    await self.ws.send_str(frame)
            elif not is_notification:
                self._slots.release()


HUB = web.AppKey("ws_hub", Hub)


def setup(
    app: web.Application,
    queue: Store,
    api: Api,
    token: str | None,
    max_message: int,
    max_sockets: int = DEFAULTS.max_subscribers,
) -> Hub:
    """Serve GET /ws on `app` and close its sockets on shutdown."""
    hub = Hub(queue, api, token, max_message=max_message, max_sockets=max_sockets)
    app[HUB] = hub
    app.router.add_get(WS_PATH, hub.handle)
    app.on_shutdown.append(hub.close_all)
    return hub


def _utf8(data: str | bytes) -> bytes:
    """A message as UTF-8. A text frame's str has no lone surrogate to pass: aiohttp decodes
    text frames strictly, so plain `encode()` (UTF-8, strict) always succeeds."""
    return data.encode() if isinstance(data, str) else data


def _dumps(value: Any) -> str:
    """JSON for a text frame (`dumps` gives UTF-8, `decode()`'s codec)."""
    return dumps(value).decode()
