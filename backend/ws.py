"""GET /ws: JSON-RPC 2.0 over a WebSocket, and live job notifications for subscribers.

Every method of `/rpc` works on the socket, plus `auth` and `subscribe`: every message,
the first one too, is checked and answered by the same `envelope.Dispatcher` as `/rpc`.
A subscriber gets a snapshot, then one `jobs.changed` notification per burst of changes:
the hub collects changed jobs and sends them every `COALESCE` seconds, serialized once
for all subscribers.

A slow or dead subscriber never slows anyone else: each connection has its own
writer task and a bounded backlog of notifications. When the backlog overflows,
it is dropped and the subscriber is told to re-snapshot (`jobs.resync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from jsonrpcserver import Result, Success

from backend.envelope import Response, check, dumps, failure, parse
from backend.gate import TOKEN_SHOWN, same_secret
from backend.protocol import (
    WS_PATH,
    Changes,
    InvalidParams,
    JobUpdate,
    Notification,
    RpcError,
    Snapshot,
    SocketMethod,
    Unauthorized,
)
from backend.rpc import Api
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


class Hub:
    """Every open socket of one app, and the changes waiting to be sent to subscribers."""

    def __init__(
        self,
        queue: Store,
        api: Api,
        token: str | None,
        *,
        max_message: int,
        interval: float = COALESCE,
        max_backlog: int = MAX_BACKLOG_BYTES,
    ) -> None:
        self.queue = queue
        self.api = api
        self.token = token
        self.max_message = max_message
        self.interval = interval
        self.max_backlog = max_backlog
        self.seq = 0  # notifications sent so far
        self.connections: set[Connection] = set()
        self.subscribers: set[Connection] = set()
        self._changed: dict[str, Job] = {}
        self._forgotten: set[str] = set()  # ids the queue dropped since the last notification
        self._flush: asyncio.TimerHandle | None = None
        queue.subscribe(self._on_change, forget=self._on_forget)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """GET /ws: upgrade, check the token, then answer messages until the peer leaves."""
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=self.max_message)
        await ws.prepare(request)
        connection = Connection(self, ws)
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
            await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    def snapshot(self, limit: int) -> Snapshot:
        """The newest `limit` jobs and the counts, as of now."""
        counts = self.queue.counts()
        return {
            "seq": self.seq,
            "jobs": [self.update(job) for job in itertools.islice(self.queue.newest(), limit)],
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

    def __init__(self, hub: Hub, ws: web.WebSocketResponse) -> None:
        self.hub = hub
        self.ws = ws
        self._out: deque[tuple[str, bool]] = deque()  # (frame, is a notification)
        self._backlog = 0  # bytes of notifications in _out
        self._ready = asyncio.Event()
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

    def notify(self, frame: str) -> None:
        """Queue a notification, or drop the backlog and ask for a resync if it is full."""
        if self._backlog + len(frame) > self.hub.max_backlog:
            self._overflow()
            return
        self._out.append((frame, True))
        self._backlog += len(frame)
        self._ready.set()

    def reply(self, frame: str) -> None:
        """Queue an answer to a request; answers are never dropped."""
        self._out.append((frame, False))
        self._ready.set()

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
                self._out.append((frame, False))
                self._out.append(("", False))  # marker: the writer frees a slot after the frame
                self._ready.set()
                answered = True
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
        # Drop notifications queued under an older subscription: the snapshot supersedes them.
        self._out = deque(item for item in self._out if not item[1])
        self._backlog = 0
        self.hub.subscribers.add(self)
        return Success(self.hub.snapshot(limit))

    def _overflow(self) -> None:
        logger.warning(
            "a subscriber is %d bytes behind; dropping its backlog and asking it to resync",
            self._backlog,
        )
        self._out = deque(item for item in self._out if not item[1])
        self._backlog = 0
        self.hub.subscribers.discard(self)  # until it calls subscribe again
        reason = "too far behind: the server dropped the changes it had not sent; subscribe again"
        params = {"reason": reason}
        self.reply(_dumps({"jsonrpc": "2.0", "method": Notification.RESYNC, "params": params}))

    async def _write(self) -> None:
        while True:
            while not self._out:
                self._ready.clear()
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


def setup(app: web.Application, queue: Store, api: Api, token: str | None, max_message: int) -> Hub:
    """Serve GET /ws on `app` and close its sockets on shutdown."""
    hub = Hub(queue, api, token, max_message=max_message)
    app[HUB] = hub
    app.router.add_get(WS_PATH, hub.handle)
    app.on_shutdown.append(hub.close_all)
    return hub


def _utf8(data: str | bytes) -> bytes:
    return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data


def _dumps(value: Any) -> str:
    """JSON for a text frame."""
    return dumps(value).decode("utf-8")
