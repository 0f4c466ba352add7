"""The async client library for a taskrpc server, shared by the CLI and the dashboard.

JSON-RPC errors come back as the exceptions of `backend.protocol` (`JobNotFound`,
`ResultNotReady`…); network trouble comes back as `TransportError`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from types import TracebackType
from typing import Any, Self, cast

import aiohttp
from jsonrpcclient import Error, parse, request

from backend.protocol import (
    RPC_PATH,
    JobObject,
    JobStatus,
    JobSummary,
    Method,
    RpcError,
    Unauthorized,
)

CALL_TIMEOUT = 30.0  # seconds for one call, on top of any time the server is asked to wait


class TransportError(Exception):
    """The server could not be asked, or its answer was not JSON-RPC."""


class Unreachable(TransportError):
    """Nothing answered at the URL."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url} — is taskrpc-server running? ({reason})")
        self.url = url


class Client:
    """A connection to one taskrpc server. Use as `async with Client(url) as client:`."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._endpoint = self.url + RPC_PATH
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
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

    async def call(self, method: Method, params: dict[str, Any] | None = None, *, wait: float = 0) -> Any:
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
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransportError(f"talking to {self.url} failed: {exc or type(exc).__name__}") from exc
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

    async def list(
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


def _result(status: int, body: bytes, url: str) -> Any:
    if status == 401:
        raise Unauthorized("the server refused the token (missing or wrong): pass --token or set TASKRPC_TOKEN")
    try:
        answer = json.loads(body)
        response = parse(answer)
    except (ValueError, KeyError, TypeError) as exc:
        raise TransportError(f"{url} answered HTTP {status} without a JSON-RPC response") from exc
    if isinstance(response, Error):
        raise RpcError.from_error(response.code, response.message, response.data)
    return response.result
