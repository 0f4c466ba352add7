"""JSON-RPC 2.0: the methods, their parameter checks, and the OpenRPC document.

Messages are parsed, checked and answered by `backend.envelope`, the same for HTTP
and the WebSocket; this module says what each method does with its params.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from typing import Any

from jsonrpcserver import Result, Success

from backend import __version__
from backend.envelope import Answer, Dispatcher, RpcMethod
from backend.jobs import ALLOWED, JOB_TYPES
from backend.protocol import (
    LIST_LIMIT,
    PREVIEW_CHARS,
    ErrorCode,
    InvalidParams,
    JobStatus,
    JobSummary,
    Method,
    ServerBusy,
)
from backend.settings import DEFAULTS
from backend.store import Job, Store

DEFAULT_WAIT = 30.0  # seconds a `wait` call blocks when the caller gives no timeout
DEFAULT_LIMIT = 100  # job summaries in one page of `list`
PAGE_SLICE = 256  # job summaries of a `list` page built between two yields
CURSOR_DIGITS = 18  # a seq has fewer: a longer cursor is invalid, not a huge number to parse
_STATUSES = [status.value for status in JobStatus]
_MAY_BLOCK = frozenset({Method.WAIT, Method.SUBMIT, Method.CANCEL})  # methods that may suspend


class Api:
    """The methods a client can call, bound to one store."""

    def __init__(
        self,
        store: Store,
        *,
        max_wait: float = DEFAULTS.max_wait,
        max_batch: int = DEFAULTS.max_batch,
    ) -> None:
        self.store = store
        self.max_wait = max_wait
        self.max_batch = max_batch
        self.methods: dict[str, RpcMethod] = {
            Method.SUBMIT: self.submit,
            Method.STATUS: self.status,
            Method.RESULT: self.result,
            Method.WAIT: self.wait,
            Method.CANCEL: self.cancel,
            Method.LIST: self.list_jobs,
            Method.TYPES: self.types,
            Method.DISCOVER: self.discover,
        }
        # A `wait` may block, and a change waits for its commit: a batch holding one runs side
        # by side (in order), so that its changes share a commit (bench: journal batches).
        self.dispatcher = Dispatcher(self.methods, max_batch=max_batch, blocking=_MAY_BLOCK)

    async def submit(self, type: object, data: object) -> Result:
        """Queue a job; returns the job object with its id."""
        return Success(self.store.describe(await self.store.submit(type, data)))

    async def status(self, id: object) -> Result:
        """The job object: status, position, times and estimate."""
        return Success(self.store.describe(await self.store.find(id)))

    async def result(self, id: object) -> Result:
        """The result of a done job; any number of times."""
        await self.store.find(id)  # a job another server took a moment ago is known here too
        return Success({"id": id, "result": self.store.result(id)})

    async def wait(
        self,
        id: object,
        timeout: object = DEFAULT_WAIT,
        status: object = None,
        position: object = None,
    ) -> Result:
        """The job object once it finishes, or when the timeout passes (not an error).

        Given the `status` (and `position`) the caller last saw, it returns as soon as
        either differs instead, so live status needs no polling.
        """
        job = await self.store.find(id)
        seconds = min(_number("timeout", timeout), self.max_wait)  # longer waits are cut short
        seen_status = None if status is None else _status(status)
        seen_position = None if position is None else _whole("position", position, low=0)
        try:
            await self.store.wait(job, seconds, seen_status, seen_position)
        except ServerBusy as busy:  # too many waits: answer at once, with the job as it is
            raise ServerBusy(busy.message, self.store.describe(job)) from None
        return Success(self.store.describe(job))

    async def cancel(self, id: object) -> Result:
        """Cancel a queued or running job; returns the job object, now cancelled."""
        return Success(self.store.describe(await self.store.cancel(id)))

    async def list_jobs(
        self, status: object = None, limit: object = DEFAULT_LIMIT, cursor: object = None
    ) -> Result:
        """A page of job summaries, newest first, and how many jobs are in each status."""
        wanted = None if status is None else _status(status)
        count = _whole("limit", limit, low=1, high=LIST_LIMIT)
        before = None if cursor is None else _cursor(cursor)
        page: list[Job] = []
        for job in self.store.newest(wanted, before):
            if len(page) == count:
                break
            page.append(job)
        more = len(page) == count and any(True for _ in self.store.newest(wanted, page[-1].seq))
        counts = self.store.counts()
        summaries: list[JobSummary] = []
        for start in range(0, len(page), PAGE_SLICE):
            summaries += [self.store.summarize(job) for job in page[start : start + PAGE_SLICE]]
            await asyncio.sleep(0)  # ~25 µs a summary: a batch of pages must not hold the loop
        return Success(
            {
                "jobs": summaries,
                "counts": counts,
                "next_cursor": str(page[-1].seq) if more else None,
            }
        )

    async def types(self) -> Result:
        """Every job type: code, name, description and delay (before the time scale)."""
        return Success([t.describe() for t in JOB_TYPES])

    async def discover(self) -> Result:
        """The OpenRPC document that describes this API."""
        return Success(openrpc(self.methods))

    async def handle(self, body: bytes) -> Answer:
        """Answer one HTTP request body: a response, a batch of them, or None for none."""
        return await self.dispatcher.answer(body)


def openrpc(methods: dict[str, RpcMethod]) -> dict[str, Any]:
    """An OpenRPC 1.2.6 document for `methods`, built from their signatures and docstrings."""
    return {
        "openrpc": "1.2.6",
        "info": {"title": "taskrpc", "version": __version__},
        "methods": [
            {
                "name": name,
                "summary": (inspect.getdoc(method) or "").partition("\n")[0],
                "paramStructure": "either",
                "params": [
                    {
                        "name": param.name,
                        "required": param.default is inspect.Parameter.empty,
                        "schema": _PARAM_SCHEMAS[param.name],
                    }
                    for param in inspect.signature(method).parameters.values()
                ],
                "result": {"name": "result", "schema": _RESULT_SCHEMAS[name]},
                "errors": [_ERRORS[code] for code in (*_METHOD_ERRORS.get(name, ()), _AUTH)],
            }
            for name, method in methods.items()
        ],
        "components": {"schemas": {"Job": _JOB_SCHEMA, "JobSummary": _SUMMARY_SCHEMA}},
    }


def _whole(name: str, value: object, *, low: int, high: int | None = None) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= (high or value):
        return value
    allowed = f"from {low} to {high}" if high is not None else f">= {low}"
    raise InvalidParams(f"{name} must be a whole number {allowed}, not {value!r}")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidParams(f"{name} must be a number of seconds >= 0, not {value!r}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond a double: as long as any limit allows
        return math.inf


def _status(value: object) -> JobStatus:
    if isinstance(value, str) and value in _STATUSES:
        return JobStatus(value)
    allowed = ", ".join(map(repr, _STATUSES))
    raise InvalidParams(f"status must be one of {allowed}, not {value!r}")


def _cursor(value: object) -> int:
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= CURSOR_DIGITS
    ):
        return int(value)
    raise InvalidParams(
        f"cursor must be a next_cursor from an earlier page (or a job's seq), not {value!r}"
    )


_STRING = {"type": "string"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_JOB_SCHEMA = {
    "type": "object",
    "properties": {
        "id": _STRING,
        "type": {"enum": [t.name for t in JOB_TYPES]},
        "status": {"enum": [s.value for s in JobStatus]},
        "position": {"type": ["integer", "null"], "description": "jobs that run before it"},
        "data": _STRING,
        "delay": {"type": "number", "description": "seconds it sleeps, time scale applied"},
        "submitted_at": {"type": "string", "format": "date-time"},
        "started_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
        "estimated_finish_at": _NULLABLE_TIME,
        "error": {"type": ["string", "null"]},
        "attempts": {"type": "integer", "description": "runs started: 1 for a first run"},
    },
}
_SUMMARY_SCHEMA = {
    "type": "object",
    "properties": {
        **{
            k: v
            for k, v in _JOB_SCHEMA["properties"].items()  # type: ignore[attr-defined]
            if k not in ("data", "error", "attempts")
        },
        "seq": {"type": "integer", "description": "submission order: 0, 1, 2…"},
        "preview": {
            "type": "string",
            "description": f"the first {PREVIEW_CHARS} characters of the text",
        },
        "length": {"type": "integer"},
    },
}
_JOB_REF = {"$ref": "#/components/schemas/Job"}
_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "type": {
        "oneOf": [{"enum": [t.code for t in JOB_TYPES]}, {"enum": [t.name for t in JOB_TYPES]}],
        "description": f"one of {ALLOWED}",
    },
    "data": {"type": "string", "description": "the text to transform"},
    "id": {"type": "string"},
    "timeout": {
        "type": "number",
        "minimum": 0,
        "description": f"seconds, default {DEFAULT_WAIT:g}; the server's max_wait caps it",
    },
    "status": {"enum": [s.value for s in JobStatus]},
    "position": {"type": ["integer", "null"], "minimum": 0},
    "limit": {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT},
    "cursor": {
        "type": ["string", "null"],
        "description": "an earlier page's next_cursor, or a job's seq as a string: "
        "the page starts with the jobs submitted just before it",
    },
}
_RESULT_SCHEMAS: dict[str, dict[str, Any]] = {
    Method.SUBMIT: _JOB_REF,
    Method.STATUS: _JOB_REF,
    Method.RESULT: {"type": "object", "properties": {"id": _STRING, "result": _STRING}},
    Method.WAIT: _JOB_REF,
    Method.CANCEL: _JOB_REF,
    Method.LIST: {
        "type": "object",
        "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/JobSummary"}},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    Method.TYPES: {"type": "array", "items": {"type": "object"}},
    Method.DISCOVER: {"type": "object"},
}
_ERRORS = {
    ErrorCode.INVALID_PARAMS: {"code": ErrorCode.INVALID_PARAMS, "message": "Invalid params"},
    ErrorCode.JOB_NOT_FOUND: {"code": ErrorCode.JOB_NOT_FOUND, "message": "job not found"},
    ErrorCode.RESULT_NOT_READY: {"code": ErrorCode.RESULT_NOT_READY, "message": "result not ready"},
    ErrorCode.JOB_FAILED: {"code": ErrorCode.JOB_FAILED, "message": "job failed"},
    ErrorCode.JOB_CANCELLED: {"code": ErrorCode.JOB_CANCELLED, "message": "job cancelled"},
    ErrorCode.QUEUE_FULL: {"code": ErrorCode.QUEUE_FULL, "message": "queue full"},
    ErrorCode.ALREADY_FINISHED: {
        "code": ErrorCode.ALREADY_FINISHED,
        "message": "job already finished",
    },
    ErrorCode.SERVER_BUSY: {
        "code": ErrorCode.SERVER_BUSY,
        "message": "server busy: too many waits in progress; data is the job as it is",
    },
    ErrorCode.UNAUTHORIZED: {
        "code": ErrorCode.UNAUTHORIZED,
        "message": "missing or wrong token (with HTTP 401), when the server has one",
    },
    ErrorCode.STORAGE_UNAVAILABLE: {
        "code": ErrorCode.STORAGE_UNAVAILABLE,
        "message": "storage unavailable: the change could not be written (disk full); retry",
    },
}
_AUTH = ErrorCode.UNAUTHORIZED
_BY_ID = (ErrorCode.INVALID_PARAMS, ErrorCode.JOB_NOT_FOUND)
_METHOD_ERRORS: dict[str, tuple[ErrorCode, ...]] = {
    Method.SUBMIT: (ErrorCode.INVALID_PARAMS, ErrorCode.QUEUE_FULL, ErrorCode.STORAGE_UNAVAILABLE),
    Method.STATUS: _BY_ID,
    Method.RESULT: (
        *_BY_ID,
        ErrorCode.RESULT_NOT_READY,
        ErrorCode.JOB_FAILED,
        ErrorCode.JOB_CANCELLED,
    ),
    Method.WAIT: (*_BY_ID, ErrorCode.SERVER_BUSY),
    Method.CANCEL: (*_BY_ID, ErrorCode.ALREADY_FINISHED, ErrorCode.STORAGE_UNAVAILABLE),
    Method.LIST: (ErrorCode.INVALID_PARAMS,),
}
