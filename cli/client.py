"""The async client library for a taskrpc server, shared by the CLI and the dashboard.

JSON-RPC errors come back as the exceptions of `backend.protocol` (`JobNotFound`,
`ResultNotReady`…); network trouble comes back as `TransportError`.
"""

from __future__ import annotations

import itertools
import json
from types import TracebackType
from typing import Any, Self, cast

import aiohttp
from aiohttp import WSCloseCode
from jsonrpcclient import Error, Ok, parse, request

from backend.protocol import (
    RPC_PATH,
    WS_PATH,
    Changes,
    JobObject,
    JobStatus,
    JobSummary,
    Method,
    Notification,
    RpcError,
    Snapshot,
    SocketMethod,
    Unauthorized,
    bearer,
)

CALL_TIMEOUT = 30.0  # seconds for one call, on top of any time the server is asked to wait


class TransportError(Exception):
    """The server could not be asked, or its answer was not JSON-RPC."""


class Unreachable(TransportError):
    """Nothing answered at the URL."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url} — is taskrpc-server running? ({reason})")
        self.url = url


class Disconnected(TransportError):
    """The server closed the connection in the middle of a call."""


class Client:
    """A connection to one taskrpc server. Use as `async with Client(url) as client:`."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
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
        if self._session is None:
            raise RuntimeError("use the client inside 'async with'")
        payload = request(method.value, params=params or None, id=next(self._ids))
        timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT + wait)
        try:
            async with self._session.post(self._endpoint, json=payload, timeout=timeout) as reply:
                body = await reply.read()
                status = reply.status
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(self.url, str(exc.os_error.strerror or exc.os_error)) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise Disconnected(
                f"{self.url} closed the connection (is the server stopping?)"
            ) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(
                f"talking to {self.url} failed: {exc or type(exc).__name__}"
            ) from exc
        return _result(status, body, self.url)

    async def submit(self, job_type: int | str, data: str) -> JobObject:
        """Queue a job; returns it with its id."""
        return cast(JobObject, await self.call(Method.SUBMIT, {"type": job_type, "data": data}))

    async def status(self, job_id: str) -> JobObject:
        """The job's current state."""
        return cast(JobObject, await self.call(Method.STATUS, {"id": job_id}))

    async def result(self, job_id: str) -> str:
        """The result of a done job."""
        answer = await self.call(Method.RESULT, {"id": job_id})
        return cast(str, answer["result"])

    async def wait(
        self,
        job_id: str,
        timeout: float,
        seen: JobObject | None = None,
    ) -> JobObject:
        """The job once it finishes, or once it differs from `seen`, or after `timeout` s."""
        params: dict[str, Any] = {"id": job_id, "timeout": timeout}
        if seen is not None:
            params["status"] = seen["status"]
            params["position"] = seen["position"]
        return cast(JobObject, await self.call(Method.WAIT, params, wait=timeout))

    async def cancel(self, job_id: str) -> JobObject:
        """Cancel a queued or running job."""
        return cast(JobObject, await self.call(Method.CANCEL, {"id": job_id}))

    async def jobs(
        self, status: JobStatus | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[JobSummary], dict[str, int], str | None]:
        """A page of job summaries (newest first), the counts per status, the next cursor."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status.value
        if cursor is not None:
            params["cursor"] = cursor
        page = await self.call(Method.LIST, params)
        return page["jobs"], page["counts"], page["next_cursor"]

    async def types(self) -> list[dict[str, Any]]:
        """The job types the server knows."""
        return cast(list[dict[str, Any]], await self.call(Method.TYPES))

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
                raise _refused() from exc
            raise TransportError(f"{self.url}{WS_PATH} refused the WebSocket: {exc}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(self.url, str(exc.os_error.strerror or exc.os_error)) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = exc or type(exc).__name__
            raise TransportError(f"talking to {self.url} failed: {reason}") from exc
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
                try:
                    snapshot = cast(Snapshot, _unpack(message, self.url))
                except Unauthorized:
                    raise _refused() from None  # advice for a person, not for the wire
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
            raise _refused()
        raise TransportError(f"lost the connection to {self.url}")


def _refused() -> Unauthorized:
    return Unauthorized(
        "the server refused the token (missing or wrong): pass --token or set TASKRPC_TOKEN"
    )


def _result(status: int, body: bytes, url: str) -> Any:
    if status == 401:
        raise _refused()
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise TransportError(f"{url} answered HTTP {status} without a JSON-RPC response") from exc
    return _unpack(answer, url)


def _unpack(answer: Any, url: str) -> Any:
    """The result of a decoded JSON-RPC response, or the exception its error stands for."""
    try:
        response = parse(answer)
    except (KeyError, TypeError) as exc:
        raise TransportError(f"{url} answered without a JSON-RPC response") from exc
    if isinstance(response, Error):
        raise RpcError.from_error(response.code, response.message, response.data)
    if not isinstance(response, Ok):
        raise TransportError(f"{url} answered a batch to a single request")
    return response.result
