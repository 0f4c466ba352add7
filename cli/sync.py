"""The synchronous client: the Python API for scripts, and the transport of `taskrpc`.

Standard library only (a small HTTP/1.1 exchange on a socket, `cli.http1`), so a one-shot
command starts in a blink; one keep-alive connection carries every call of a client, long
polls included::

    from cli.sync import SyncClient, JobFailed

    with SyncClient("http://127.0.0.1:8765") as client:
        job = client.submit("reverse", "пример")
        for job in client.follow(job["id"], timeout=60):
            print(job["status"])
        print(client.result(job["id"]))

Errors are the exceptions of `backend.protocol` (re-exported here), the very class the
server raised, and `TransportError` and its subclasses for network trouble.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

from backend.protocol import (
    DEFAULT_URL,
    RPC_PATH,
    AlreadyFinished,
    InvalidParams,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobObject,
    JobStatus,
    Method,
    QueueFull,
    ResultNotReady,
    RpcError,
    ServerBusy,
    Unauthorized,
    bearer,
)
from cli.http1 import Closed, Connection, NotHttp
from cli.rpc import (
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
)
from cli.urls import target

__all__ = [
    "AlreadyFinished",
    "Disconnected",
    "InvalidParams",
    "InvalidRequest",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "JobObject",
    "JobStatus",
    "NotTaskrpc",
    "QueueFull",
    "ResultNotReady",
    "RpcError",
    "SyncClient",
    "TransportError",
    "Unauthorized",
    "Unreachable",
]

T = TypeVar("T")

# A keep-alive connection the server has closed since the last call fails like this on reuse.
_STALE = (Closed, ConnectionResetError, BrokenPipeError)


class SyncClient:
    """A connection to one taskrpc server; blocking calls. Use as `with SyncClient(url) as c:`.

    `url` may end in `/rpc` (the curl URL) or not. `token` is the server's bearer token.
    """

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None) -> None:
        self.url = base_url(url)
        where = target(self.url)  # ValueError if no request can use it
        self._https = where.https
        self._host = where.host
        self._port = where.port
        self._path = where.path + RPC_PATH
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = bearer(token)
        self._connection: Connection | None = None
        self._ids = itertools.count(1)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- the calls ------------------------------------------------------------------

    def call(self, method: Method, params: dict[str, Any] | None = None, *, wait: float = 0) -> Any:
        """Call `method` and return its result, or raise the error the server sent."""
        return self.run(Calls.raw(method, params, wait))

    def submit(self, job_type: int | str, data: str) -> JobObject:
        """Queue a job; returns it with its id."""
        return self.run(Calls.submit(job_type, data))

    def status(self, job_id: str) -> JobObject:
        """The job's current state."""
        return self.run(Calls.status(job_id))

    def result(self, job_id: str) -> str:
        """The result of a done job (`ResultNotReady`, `JobFailed`, `JobCancelled` otherwise)."""
        return self.run(Calls.result(job_id))

    def wait(self, job_id: str, timeout: float, seen: JobObject | None = None) -> JobObject:
        """The job once it finishes, or once it differs from `seen`, or after `timeout` s."""
        return self.run(Calls.wait(job_id, timeout, seen))

    def cancel(self, job_id: str) -> JobObject:
        """Cancel a queued or running job."""
        return self.run(Calls.cancel(job_id))

    def jobs(
        self, status: JobStatus | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """A page of job summaries (newest first), the counts per status, the next cursor."""
        return self.run(Calls.list(status, limit, cursor))

    def types(self) -> TypeInfos:
        """The job types the server knows."""
        return self.run(Calls.types())

    def follow(
        self, job: JobObject | str, timeout: float | None = None, *, on_busy: OnBusy = None
    ) -> Iterator[JobObject]:
        """The job now, then each time it changes, until it finishes or `timeout` s pass.

        Long polls (`wait`) on the one connection: no busy polling. After the loop the
        last job yielded tells which: finished (`JobStatus(job["status"]).finished`) or not.
        A busy server (-32008) is asked again after a growing pause; `on_busy(seconds)` hears
        of each pause, and `on_busy(None)` when answers come again.
        """
        state = Follow(self.status(job) if isinstance(job, str) else job, timeout)
        yield state.job
        while (call := state.next_call()) is not None:
            try:
                answer = self.run(call)
            except ServerBusy:
                pause = state.busy()
                if on_busy is not None:
                    on_busy(pause)
                time.sleep(pause)
                continue
            if state.paused is not None and on_busy is not None:
                on_busy(None)
            if state.update(answer):
                yield state.job

    # -- the transport ---------------------------------------------------------------

    def run(self, call: Call[T]) -> T:
        """Send one call and read its answer (for a call built with `cli.rpc.Calls`)."""
        body = call.body(next(self._ids))
        while True:  # at most twice: after a stale connection, the next one is not reused
            reused = self._connection is not None
            try:
                return call.read(self._exchange(body, call.timeout))
            except _STALE:
                self.close()
                if not reused or call.method is Method.SUBMIT:
                    raise Disconnected(
                        f"{self.url} closed the connection (is the server stopping?)"
                    ) from None
            # the server dropped an idle connection: ask again on a new one

    def _exchange(self, body: bytes, timeout: float) -> Any:
        if self._connection is None:
            self._connection = Connection(self._host, self._port, https=self._https)
        connection = self._connection
        try:
            connection.send(self._path, body, self._headers, timeout)
        except _STALE:
            raise
        except OSError as exc:  # refused, unknown host, timed out, TLS refused…
            self.close()
            raise Unreachable(self.url, _reason(exc)) from None
        try:
            answer = connection.read()
        except _STALE:
            raise
        except TimeoutError:
            self.close()
            raise TimedOut(self.url, timeout) from None
        except NotHttp:  # e.g. an SSH or SMTP server's greeting
            self.close()
            raise NotTaskrpc(self.url, "something that is not HTTP") from None
        except OSError as exc:
            self.close()
            raise Disconnected(f"talking to {self.url} failed: {_reason(exc)}") from None
        if answer.close:
            self.close()
        return decode(answer.status, answer.body, self.url)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc) or type(exc).__name__
