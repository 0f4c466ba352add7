"""The wire contract: every name, status and code that crosses the network.

This module is a leaf: it imports nothing from the package, so the server, the
CLI and the dashboard can all import it cheaply. Clients never hard-code a
string that is defined here.

No `from __future__ import annotations` here: with it, every field of the TypedDicts below
is a string that `typing` compiles one by one when this module loads, 60 % of its import
and 7 % of `taskrpc status`'s start-up (bench row "`taskrpc status ID` wall time").
"""

import enum
from typing import Any, TypedDict

RPC_PATH = "/rpc"
HEALTH_PATH = "/healthz"
JSON_TYPE = "application/json"  # the media type of every request body and answer
# A server on a shared PostgreSQL queue says in /healthz (`role`) whether it runs the jobs.
RUNNER = "runner"
STANDBY = "standby"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
ENV_PREFIX = "TASKRPC_"
LIST_LIMIT = 1000  # most job summaries one `list` call returns
PREVIEW_CHARS = 40  # characters of text in a job summary's `preview`


def bearer(token: str) -> str:
    """The Authorization header value that carries `token`."""
    return f"Bearer {token}"


class Method(enum.StrEnum):
    """The JSON-RPC method names the server answers."""

    SUBMIT = "submit"
    STATUS = "status"
    RESULT = "result"
    WAIT = "wait"
    CANCEL = "cancel"
    LIST = "list"
    TYPES = "types"
    DISCOVER = "rpc.discover"


class JobStatus(enum.StrEnum):
    """A job's state; the value goes on the wire unchanged."""

    QUEUED = "queued"  # accepted, waiting for the worker
    RUNNING = "running"  # the worker is on it now
    DONE = "done"  # finished; the result can be read any number of times
    FAILED = "failed"  # the transform raised; `error` says why
    CANCELLED = "cancelled"  # cancelled before or while it ran

    @property
    def finished(self) -> bool:
        """True for the states a job never leaves."""
        return self in _FINISHED


_FINISHED = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})


class ErrorCode(enum.IntEnum):
    """JSON-RPC error codes: the specification's, then ours (-32001 and below)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    JOB_NOT_FOUND = -32001
    RESULT_NOT_READY = -32002
    JOB_FAILED = -32003
    JOB_CANCELLED = -32004
    QUEUE_FULL = -32005
    ALREADY_FINISHED = -32006
    UNAUTHORIZED = -32007
    SERVER_BUSY = -32008
    STORAGE_UNAVAILABLE = -32009  # the change could not be made durable (full disk, lost database)


class RpcError(Exception):
    """An error that travels as a JSON-RPC error object.

    The server raises these; the client turns error objects back into them, so
    both sides share one table of codes and classes.
    """

    code: int = ErrorCode.INTERNAL_ERROR  # each subclass's; an instance may carry another

    def __init__(self, message: str, data: Any = None, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code  # a code this side does not know (a newer server's) is kept

    def __str__(self) -> str:
        if isinstance(self.data, str) and self.data:
            return f"{self.message}: {self.data}"
        return self.message

    @staticmethod
    def from_error(code: int, message: str, data: Any = None) -> "RpcError":
        """Rebuild the exception a server sent as an error object.

        A known code gives its class (so `except ServerBusy` works on the client); an
        unknown one gives a plain RpcError that keeps the code it came with.
        """
        known = _BY_CODE.get(code)
        return known(message, data) if known is not None else RpcError(message, data, code=code)


class ParseError(RpcError):
    code = ErrorCode.PARSE_ERROR


class InvalidRequest(RpcError):
    code = ErrorCode.INVALID_REQUEST


class MethodNotFound(RpcError):
    code = ErrorCode.METHOD_NOT_FOUND


class InvalidParams(RpcError):
    code = ErrorCode.INVALID_PARAMS


class InternalError(RpcError):
    code = ErrorCode.INTERNAL_ERROR


class JobNotFound(RpcError):
    code = ErrorCode.JOB_NOT_FOUND


class ResultNotReady(RpcError):
    code = ErrorCode.RESULT_NOT_READY


class JobFailed(RpcError):
    code = ErrorCode.JOB_FAILED


class JobCancelled(RpcError):
    code = ErrorCode.JOB_CANCELLED


class QueueFull(RpcError):
    code = ErrorCode.QUEUE_FULL


class AlreadyFinished(RpcError):
    code = ErrorCode.ALREADY_FINISHED


class Unauthorized(RpcError):
    code = ErrorCode.UNAUTHORIZED


class ServerBusy(RpcError):
    """A server-wide limit is reached (waits in progress, connections): try again later."""

    code = ErrorCode.SERVER_BUSY


class StorageUnavailable(RpcError):
    """A change could not be made durable (a full disk, an I/O error): nothing changed."""

    code = ErrorCode.STORAGE_UNAVAILABLE


_BY_CODE: dict[int, type[RpcError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        JobNotFound,
        ResultNotReady,
        JobFailed,
        JobCancelled,
        QueueFull,
        AlreadyFinished,
        Unauthorized,
        ServerBusy,
        StorageUnavailable,
    )
}


class JobObject(TypedDict):
    """A job as `submit`, `status`, `wait` and `cancel` return it."""

    id: str
    type: str  # the type's name
    status: str  # a JobStatus value
    position: int | None  # jobs that run before it, while queued
    data: str
    delay: float  # seconds it sleeps, time scale applied
    submitted_at: str  # ISO 8601 UTC
    started_at: str | None
    finished_at: str | None
    estimated_finish_at: str | None  # while queued or running
    error: str | None  # why it failed
    attempts: int  # runs started so far: 1 for a first run, more after a restart interrupted it


class JobSummary(TypedDict):
    """A job as `list` returns it: no full text, no result."""

    id: str
    seq: int  # 0, 1, 2… in submission order; queued jobs run in this order
    type: str
    status: str
    position: int | None
    preview: str  # the first PREVIEW_CHARS characters of the text
    length: int  # the text's length in code points
    delay: float
    submitted_at: str
    started_at: str | None
    finished_at: str | None


# -- the WebSocket (GET /ws): the same methods as /rpc, plus live job notifications ----

WS_PATH = "/ws"


class SocketMethod(enum.StrEnum):
    """Methods only the WebSocket answers (every `Method` works there too)."""

    AUTH = "auth"  # params {"token": ...}: the first message, when no Authorization header was sent
    SUBSCRIBE = "subscribe"  # params {"limit": n}: a Snapshot now, then Changes notifications


class Notification(enum.StrEnum):
    """JSON-RPC notifications the server sends on the WebSocket."""

    JOBS_CHANGED = "jobs.changed"  # params: Changes, every ~50 ms while jobs change
    RESYNC = "jobs.resync"  # params {"reason": ...}: backlog dropped; call `subscribe` again


JobUpdate = JobSummary  # what the WebSocket sends of a job: its summary


class Snapshot(TypedDict):
    """What `subscribe` returns: the newest jobs and where the notifications start."""

    seq: int  # the next Changes notification has seq + 1
    jobs: list[JobUpdate]  # newest first, at most `limit`
    counts: dict[str, int]  # jobs per status, over all jobs the server knows
    total: int  # all jobs the server knows
    limit: int


class Changes(TypedDict):
    """The params of a `jobs.changed` notification: every job that changed since the last one."""

    seq: int  # one more than the previous notification's (or the snapshot's)
    jobs: list[JobUpdate]  # their state now
    removed: list[str]  # ids the server has forgotten (finished long ago)
    counts: dict[str, int]
