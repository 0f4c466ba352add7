"""The async client (aiohttp): the transport of the dashboard, with the live WebSocket feed.

The requests and the meaning of answers come from the one protocol layer, `cli.rpc`,
shared with the synchronous `cli.sync.SyncClient` (the command line and scripts use
that one: it does not import aiohttp). JSON-RPC errors come back as the exceptions of
`backend.protocol` (`JobNotFound`, `ResultNotReady`…); network trouble comes back as
`TransportError`.

    async with Client("http://127.0.0.1:8765") as client:
        job = await client.submit("reverse", "пример")
        async for job in client.follow(job["id"], timeout=60):
            print(job["status"])   # now, then at each change, until it finishes
        print(await client.result(job["id"]))
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import aiohttp
from aiohttp import WSCloseCode
from jsonrpcclient import request

from backend.protocol import (
    HEALTH_PATH,
    RPC_PATH,
    WS_PATH,
    Changes,
    JobObject,
    JobStatus,
    Method,
    Notification,
    ServerBusy,
    Snapshot,
    SocketMethod,
    bearer,
)
from cli.rpc import (
    CALL_TIMEOUT,
    Call,
    Calls,
    Disconnected,
    Follow,
    NotTaskrpc,
    OnBusy,
    Page,
    TimedOut,
    TransportError,
    TypeInfos,
    Unreachable,
    base_url,
    decode,
    refused,
    unpack,
)

__all__ = [
    "CALL_TIMEOUT",
    "Client",
    "Disconnected",
    "NotTaskrpc",
    "Subscription",
    "TimedOut",
    "TransportError",
    "Unreachable",
]

T = TypeVar("T")
HEALTH_TIMEOUT = 5.0  # seconds for GET /healthz, which answers without waiting on anything


def failed(url: str, exc: BaseException) -> TransportError:
    """The error for a call to `url` that `exc` ended: its words, or its name when it has
    none (as some of aiohttp's have none)."""
    return TransportError(f"talking to {url} failed: {str(exc) or type(exc).__name__}")


class Client:
    """A connection to one taskrpc server. Use as `async with Client(url) as client:`."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = base_url(url)
        self._endpoint = self.url + RPC_PATH
        self._headers = {"Authorization": bearer(token)} if token else {}
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)  # our own ids: jsonrpcclient's generators are shared

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(headers=self._headers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self, method: Method, params: dict[str, Any] | None = None, *, wait: float = 0
    ) -> Any:
        """Call `method` and return its result, or raise the error the server sent."""
        return await self.run(Calls.raw(method, params, wait))

    async def run(self, call: Call[T]) -> T:
        """Send one call built by `cli.rpc.Calls` and read its answer."""
        if self._session is None:
            raise RuntimeError("use the client inside 'async with'")
        timeout = aiohttp.ClientTimeout(total=call.timeout)
        try:
            async with self._session.post(
                self._endpoint, json=call.payload(next(self._ids)), timeout=timeout
            ) as reply:
                body = await reply.read()
                status = reply.status
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(self.url, str(exc.os_error.strerror or exc.os_error)) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise Disconnected(
                f"{self.url} closed the connection (is the server stopping?)"
            ) from exc
        except TimeoutError:
            raise TimedOut(self.url, call.timeout) from None
        except aiohttp.ClientError as exc:
            raise failed(self.url, exc) from exc
        return call.read(decode(status, body, self.url))

    async def submit(self, job_type: int | str, data: str) -> JobObject:
        """Queue a job; returns it with its id."""
        return await self.run(Calls.submit(job_type, data))

    async def status(self, job_id: str) -> JobObject:
        """The job's current state."""
        return await self.run(Calls.status(job_id))

    async def result(self, job_id: str) -> str:
        """The result of a done job."""
        return await self.run(Calls.result(job_id))

    async def wait(
        self,
        job_id: str,
        timeout: float,
        seen: JobObject | None = None,
    ) -> JobObject:
        """The job once it finishes, or once it differs from `seen`, or after `timeout` s."""
        return await self.run(Calls.wait(job_id, timeout, seen))

    async def follow(
        self, job: JobObject | str, timeout: float | None = None, *, on_busy: OnBusy = None
    ) -> AsyncIterator[JobObject]:
        """The job now, then each time it changes, until it finishes or `timeout` s pass.

        `async for job in client.follow(job_id): ...` — long polls on the HTTP
        connection, the same logic (`cli.rpc.Follow`, busy server included) as
        `SyncClient.follow` and `taskrpc wait`. Meant for a view of one job (the dashboard's
        details screen); the job table follows everything through `subscribe()` instead.
        """
        state = Follow(await self.status(job) if isinstance(job, str) else job, timeout)
        yield state.job
        while (call := state.next_call()) is not None:
            try:
                answer = await self.run(call)
            except ServerBusy:
                pause = state.busy()
                if on_busy is not None:
                    on_busy(pause)
                await asyncio.sleep(pause)
                continue
            if state.paused is not None and on_busy is not None:
                on_busy(None)
            if state.update(answer):
                yield state.job

    async def cancel(self, job_id: str) -> JobObject:
        """Cancel a queued or running job."""
        return await self.run(Calls.cancel(job_id))

    async def jobs(
        self, status: JobStatus | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """A page of job summaries (newest first), the counts per status, the next cursor."""
        return await self.run(Calls.list(status, limit, cursor))

    async def types(self) -> TypeInfos:
        """The job types the server knows."""
        return await self.run(Calls.types())

    async def health(self) -> dict[str, Any]:
        """GET /healthz: with the token, the queue's length, what runs, and for a server on a
        shared PostgreSQL queue its `role` and the `runner`'s URL."""
        if self._session is None:
            raise RuntimeError("use the client inside 'async with'")
        try:
            async with self._session.get(
                self.url + HEALTH_PATH, timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT)
            ) as reply:
                body = await reply.json(content_type=None)
        except TimeoutError:
            raise TimedOut(self.url, HEALTH_TIMEOUT) from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise failed(self.url, exc) from exc
        return body if isinstance(body, dict) else {}

    def subscribe(self, limit: int = 1000) -> Subscription:
        """Live job changes over the WebSocket: `async with client.subscribe() as feed:`."""
        if self._session is None:
            raise RuntimeError("use the client inside 'async with'")
        return Subscription(self._session, self.url, limit)


class Subscription:
    """A `subscribe` on the server's WebSocket.

    `snapshot` holds the jobs as of subscribing; iterating yields each later
    `Changes`, in order, and a fresh `Snapshot` whenever the server asked for a
    resync or a notification went missing. It raises `TransportError` when the
    connection is lost; the caller reconnects with a new subscription.
    """

    HEARTBEAT = 5.0  # seconds between pings; a server that stops answering counts as gone

    def __init__(self, session: aiohttp.ClientSession, url: str, limit: int) -> None:
        self.url = url
        self.limit = limit
        self._session = session
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._seq = 0
        self.snapshot: Snapshot | None = None

    async def __aenter__(self) -> Self:
        try:
            self._ws = await self._session.ws_connect(
                self.url + WS_PATH, heartbeat=self.HEARTBEAT, max_msg_size=0
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise refused() from exc
            raise TransportError(f"{self.url}{WS_PATH} refused the WebSocket: {exc}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(self.url, str(exc.os_error.strerror or exc.os_error)) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise failed(self.url, exc) from exc
        try:
            self.snapshot = await self._subscribe()
        except BaseException:
            await self._ws.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ws is not None:
            await self._ws.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Changes | Snapshot:
        message = await self._receive()
        if message.get("method") == Notification.JOBS_CHANGED:
            changes = cast(Changes, message["params"])
            if changes["seq"] == self._seq + 1:
                self._seq = changes["seq"]
                return changes
        elif message.get("method") != Notification.RESYNC:
            return await self.__anext__()  # a stray answer: nothing to report
        self.snapshot = await self._subscribe()  # told to resync, or a notification is missing
        return self.snapshot

    async def _subscribe(self) -> Snapshot:
        request_id = next(self._ids)
        payload = request(SocketMethod.SUBSCRIBE.value, {"limit": self.limit}, id=request_id)
        await self._send(payload)
        while True:  # notifications sent before the answer are superseded by the snapshot
            message = await self._receive()
            if message.get("id") == request_id:
                snapshot = cast(Snapshot, unpack(message, self.url, "a WebSocket message"))
                self._seq = snapshot["seq"]
                return snapshot

    async def _send(self, payload: dict[str, Any]) -> None:
        assert self._ws is not None
        try:
            await self._ws.send_json(payload)
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise TransportError(f"lost the connection to {self.url}: {exc}") from exc

    async def _receive(self) -> dict[str, Any]:
        assert self._ws is not None
        message = await self._ws.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            try:
                decoded = json.loads(message.data)
            except ValueError as exc:
                raise TransportError(f"{self.url} sent a frame that is not JSON") from exc
            if isinstance(decoded, dict):
                return decoded
            raise TransportError(f"{self.url} sent a frame that is not a JSON-RPC message")
        if message.type is aiohttp.WSMsgType.CLOSE and message.data == WSCloseCode.POLICY_VIOLATION:
            raise refused()
        raise TransportError(f"lost the connection to {self.url}")
