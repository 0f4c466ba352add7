"""The client protocol layer: what to send for each call, and what an answer means.

Written once for both transports: `cli.sync.SyncClient` (standard library, for the
command line and scripts) and `cli.client.Client` (aiohttp, for the dashboard). A
transport only moves bytes; this module builds each JSON-RPC request (with
jsonrpcclient), turns each answer into a result or into the exception of
`backend.protocol` that the server raised (`JobNotFound`, `ResultNotReady`…), and
holds the logic of following a job with long polls (`Follow`).

No network library is imported here, so the CLI pays only for what it uses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from jsonrpcclient import Error, Ok, parse, request

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
LONG_POLL = 25.0  # seconds one `wait` call may block on the server
BUSY_FIRST = 0.25  # seconds to pause after a "server busy" (-32008) answer; doubles each time…
BUSY_MOST = 4.0  # …up to this

OnBusy = Callable[[float | None], None] | None  # hears each pause for a busy server; None: over

T = TypeVar("T")


class TransportError(Exception):
    """The server could not be asked, or its answer was not JSON-RPC."""


class Unreachable(TransportError):
    """Nothing answered at the URL."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url} — is taskrpc-server running? ({reason})")
        self.url = url


class TimedOut(TransportError):
    """The server took longer to answer than the call may take."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(f"{url} did not answer within {seconds:g} s")
        self.url = url


class Disconnected(TransportError):
    """The server closed the connection in the middle of a call."""


class NotTaskrpc(TransportError):
    """Something answered at the URL, but not a taskrpc server (a 404 page, another service)."""

    def __init__(self, url: str, what: str) -> None:
        super().__init__(f"{url} answered {what}, not JSON-RPC: is {url} a taskrpc server?")
        self.url = url


def base_url(url: str) -> str:
    """The server's URL without a trailing `/` or `/rpc`: the README's curl URL works too."""
    return url.rstrip("/").removesuffix(RPC_PATH)


class Call(Generic[T]):
    """One JSON-RPC call: the method, its params, how to read its result, how long it may wait.

    A plain slotted class, not a dataclass: `dataclasses` imports `inspect`, 6 ms of every
    command's start-up (bench row "`taskrpc status ID` wall time").
    """

    __slots__ = ("method", "params", "read", "wait")

    def __init__(
        self,
        method: Method,
        params: dict[str, Any] | None,
        read: Callable[[Any], T],
        wait: float = 0.0,
    ) -> None:
        self.method = method
        self.params = params
        self.read = read
        self.wait = wait  # seconds the server may hold the answer back (a long poll)

    def payload(self, request_id: int) -> dict[str, Any]:
        """The JSON-RPC request object, with our own id (jsonrpcclient's counters are shared)."""
        payload: dict[str, Any] = request(self.method.value, params=self.params, id=request_id)
        return payload

    def body(self, request_id: int) -> bytes:
        """The request as the bytes of an HTTP body."""
        return json.dumps(self.payload(request_id), ensure_ascii=False).encode()

    @property
    def timeout(self) -> float:
        """Seconds to give the whole call before giving up on the server."""
        return CALL_TIMEOUT + self.wait


Page = tuple[list[JobSummary], dict[str, int], str | None]  # jobs, counts, next cursor
TypeInfos = list[dict[str, Any]]  # one dict per job type: code, name, delay, description


# How each call reads its result: the answer is taken to have the shape the server documents
# (the parameter's type says which), with no copy and no check.


def _job(answer: JobObject) -> JobObject:
    return answer


def _text(answer: dict[str, str]) -> str:
    return answer["result"]


def _page(answer: Any) -> Page:
    return answer["jobs"], answer["counts"], answer["next_cursor"]


def _types(answer: TypeInfos) -> TypeInfos:
    return answer


def _any(answer: Any) -> Any:
    return answer


class Calls:
    """The calls the server answers, built once for both transports."""

    @staticmethod
    def raw(method: Method, params: dict[str, Any] | None, wait: float) -> Call[Any]:
        return Call(method, params or None, _any, wait)

    @staticmethod
    def submit(job_type: int | str, data: str) -> Call[JobObject]:
        return Call(Method.SUBMIT, {"type": job_type, "data": data}, _job)

    @staticmethod
    def status(job_id: str) -> Call[JobObject]:
        return Call(Method.STATUS, {"id": job_id}, _job)

    @staticmethod
    def result(job_id: str) -> Call[str]:
        return Call(Method.RESULT, {"id": job_id}, _text)

    @staticmethod
    def wait(job_id: str, timeout: float, seen: JobObject | None = None) -> Call[JobObject]:
        params: dict[str, Any] = {"id": job_id, "timeout": timeout}
        if seen is not None:
            params["status"] = seen["status"]
            params["position"] = seen["position"]
        return Call(Method.WAIT, params, _job, timeout)

    @staticmethod
    def cancel(job_id: str) -> Call[JobObject]:
        return Call(Method.CANCEL, {"id": job_id}, _job)

    @staticmethod
    def list(
        status: JobStatus | None = None, limit: int = 100, cursor: str | None = None
    ) -> Call[Page]:
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status.value
        if cursor is not None:
            params["cursor"] = cursor
        return Call(Method.LIST, params, _page)

    @staticmethod
    def types() -> Call[TypeInfos]:
        return Call(Method.TYPES, None, _types)


class Follow:
    """Following one job with long polls: which `wait` to send next, and when to stop.

    Both clients' `follow()` drive it the same way::

        follow = Follow(job, timeout)
        while (call := follow.next_call()) is not None:
            try:
                changed = follow.update(<the answer to call>)
            except ServerBusy:
                <sleep follow.busy() seconds>

    `next_call()` is None once the job has finished or `timeout` seconds have passed. A
    server at its limit of waits answers "server busy" (-32008) at once: the follower asks
    again after a pause that doubles up to BUSY_MOST, instead of failing.
    """

    def __init__(self, job: JobObject, timeout: float | None, poll: float = LONG_POLL) -> None:
        self.job = job
        self.paused: float | None = None  # the last pause, while the server is busy
        self._poll = poll
        self._deadline = None if timeout is None else time.monotonic() + timeout

    @property
    def finished(self) -> bool:
        """True once the job is done, failed or cancelled."""
        return JobStatus(self.job["status"]).finished

    def next_call(self) -> Call[JobObject] | None:
        """The next long poll, or None when there is nothing more to wait for."""
        if self.finished:
            return None
        left = self._poll
        if self._deadline is not None:
            left = min(left, self._deadline - time.monotonic())
            if left <= 0:
                return None
        return Calls.wait(self.job["id"], left, seen=self.job)

    def update(self, job: JobObject) -> bool:
        """Record the answer; True if the job changed (a long poll that timed out did not)."""
        old, self.job, self.paused = self.job, job, None
        return any(old.get(key) != job.get(key) for key in _CHANGES)

    def busy(self) -> float:
        """The server said it is busy: the seconds to pause before asking again."""
        self.paused = BUSY_FIRST if self.paused is None else min(2 * self.paused, BUSY_MOST)
        return self.paused


_CHANGES = ("status", "position", "started_at", "finished_at", "estimated_finish_at")


def refused() -> Unauthorized:
    """The error for a missing or wrong token, with advice for a person."""
    return Unauthorized(
        "the server refused the token (missing or wrong): "
        "pass --token-file or set TASKRPC_TOKEN_FILE or TASKRPC_TOKEN"
    )


def decode(status: int, body: bytes, url: str) -> Any:
    """The result of an HTTP answer, or the exception its JSON-RPC error stands for."""
    if status == 401:
        raise refused()
    try:
        answer = json.loads(body)
    except ValueError:
        raise NotTaskrpc(url, f"HTTP {status}") from None
    return unpack(answer, url, f"HTTP {status}")


def unpack(answer: Any, url: str, came: str) -> Any:
    """The result of a decoded JSON-RPC response, or the exception its error stands for;
    `came` says what it came in, for the error when it is not JSON-RPC at all."""
    try:
        response = parse(answer)
    except (KeyError, TypeError, AttributeError):
        raise NotTaskrpc(url, came) from None
    if isinstance(response, Error):
        error = RpcError.from_error(response.code, response.message, response.data)
        if isinstance(error, Unauthorized):
            raise refused() from None  # advice for a person, not the wire's words
        raise error
    if not isinstance(response, Ok):
        raise NotTaskrpc(url, "a batch to a single request")
    return response.result
