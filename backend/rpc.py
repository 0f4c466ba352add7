"""JSON-RPC 2.0: the methods, their parameter checks, and the one place errors become responses.

Requests are parsed here (strict JSON: no NaN or Infinity), each request object is
checked against the same rules as jsonrpcserver's schema, and then handed to
jsonrpcserver one at a time. A batch is dispatched element by element, so one bad
element gets its own error and the others still run.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import orjson
from jsonrpcserver import JsonRpcError, Result, Success
from jsonrpcserver.async_dispatcher import dispatch_request
from jsonrpcserver.dispatcher import create_request, to_response
from jsonrpcserver.response import to_serializable_one
from jsonrpcserver.sentinels import NOCONTEXT, NODATA, NOID

from backend import __version__
from backend.jobs import ALLOWED, JOB_TYPES
from backend.protocol import (
    LIST_LIMIT,
    PREVIEW_CHARS,
    ErrorCode,
    InvalidParams,
    JobStatus,
    Method,
    RpcError,
)
from backend.settings import DEFAULTS
from backend.store import Job, Store

logger = logging.getLogger("taskrpc.rpc")

Response = dict[str, Any]
RpcMethod = Callable[..., Awaitable[Result]]

DEFAULT_WAIT = 30.0  # seconds a `wait` call blocks when the caller gives no timeout
DEFAULT_LIMIT = 100  # job summaries in one page of `list`
YIELD_EVERY = 32  # batch elements answered between two chances for other requests
_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
_ID_TYPES = (str, int, float, type(None))  # a tuple: isinstance checks it faster than a union
_STATUSES = [status.value for status in JobStatus]


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
        self._dispatchable = {name: _guarded(method) for name, method in self.methods.items()}
        self._takes = {name: _takes(method) for name, method in self.methods.items()}

    async def submit(self, type: object, data: object) -> Result:
        """Queue a job; returns the job object with its id."""
        return Success(self.store.describe(await self.store.submit(type, data)))

    async def status(self, id: object) -> Result:
        """The job object: status, position, times and estimate."""
        return Success(self.store.describe(self.store.get(id)))

    async def result(self, id: object) -> Result:
        """The result of a done job; any number of times."""
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
        job = self.store.get(id)
        seconds = min(_number("timeout", timeout), self.max_wait)  # longer waits are cut short
        seen_status = None if status is None else _status(status)
        seen_position = None if position is None else _whole("position", position, low=0)
        await self.store.wait(job, seconds, seen_status, seen_position)
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
        return Success(
            {
                "jobs": [self.store.summarize(job) for job in page],
                "counts": self.store.counts(),
                "next_cursor": str(page[-1].seq) if more else None,
            }
        )

    async def types(self) -> Result:
        """Every job type: code, name, description and delay (before the time scale)."""
        return Success([t.describe() for t in JOB_TYPES])

    async def discover(self) -> Result:
        """The OpenRPC document that describes this API."""
        return Success(openrpc(self.methods))

    # -- dispatch -------------------------------------------------------------------

    async def handle(self, body: bytes) -> Response | list[Response] | None:
        """Answer one HTTP request body: a response, a batch of them, or None for none."""
        try:
            request = _DECODER.decode(body.decode("utf-8"))
        except UnicodeDecodeError:
            return _error(ErrorCode.PARSE_ERROR, "Parse error", "the body is not valid UTF-8")
        except RecursionError:
            return _error(ErrorCode.PARSE_ERROR, "Parse error", "the JSON is nested too deeply")
        except ValueError as exc:
            return _error(ErrorCode.PARSE_ERROR, "Parse error", str(exc))
        if not isinstance(request, list):
            return await self._one(request)
        if not request:
            return _error(ErrorCode.INVALID_REQUEST, "Invalid request", "the batch is empty")
        if len(request) > self.max_batch:
            return _error(
                ErrorCode.INVALID_REQUEST,
                "Invalid request",
                f"the batch has {len(request)} requests; the limit is {self.max_batch}",
            )
        if any(isinstance(item, dict) and item.get("method") == Method.WAIT for item in request):
            # A `wait` may block: run the elements side by side so the others are not held up.
            answers = await asyncio.gather(*(self._one(item) for item in request))
        else:  # none blocks: no tasks needed, but let other clients in now and then
            answers = []
            for n, item in enumerate(request, start=1):
                answers.append(await self._one(item))
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        return [answer for answer in answers if answer is not None] or None

    async def _one(self, request: object) -> Response | None:
        problem = _problem(request)
        if problem is not None:
            return _error(ErrorCode.INVALID_REQUEST, "Invalid request", problem)
        call = create_request(cast(dict[str, Any], request))  # checked by _problem above
        _, result = await dispatch_request(self._dispatchable, NOCONTEXT, call)
        if call.id is NOID:
            return None  # a notification: it ran, and gets no response
        response = cast(Response, to_serializable_one(to_response(call, result)))
        error = response.get("error")
        if error is not None and error["message"] == "Invalid params" and "data" in error:
            # jsonrpcserver's own check of the arguments: say what the method takes.
            takes = self._takes[call.method]
            error["message"] = f"Invalid params: {error.pop('data')}; {call.method} takes {takes}"
        return response


def dumps(answer: Any) -> bytes:
    """Compact JSON as UTF-8, with orjson (the stdlib's encoder was the largest share of a call).

    orjson refuses a lone surrogate and an integer beyond 64 bits, both of which a request id
    may hold and we echo; the standard library writes those as valid JSON, in ASCII.
    """
    try:
        return orjson.dumps(answer)
    except TypeError:
        return json.dumps(answer, separators=(",", ":")).encode("ascii")


def openrpc(methods: dict[str, RpcMethod]) -> dict[str, Any]:
    """An OpenRPC 1.2.6 document for `methods`, built from their signatures and docstrings."""
    return {
        "openrpc": "1.2.6",
        "info": {"title": "taskrpc", "version": __version__},
        "methods": [
            {
                "name": name,
                "summary": (inspect.getdoc(method) or "").splitlines()[0],
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


def _guarded(method: RpcMethod) -> RpcMethod:
    """Turn our exceptions into JSON-RPC errors; log any other, and never send its text."""

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Result:
        try:
            return await method(*args, **kwargs)
        except RpcError as exc:
            raise JsonRpcError(
                exc.code, exc.message, NODATA if exc.data is None else exc.data
            ) from exc
        except Exception as exc:
            logger.exception("method %s raised", method.__name__)
            raise JsonRpcError(ErrorCode.INTERNAL_ERROR, "Internal error") from exc

    # jsonrpcserver binds every call's params to inspect.signature(method) to check them.
    call.__signature__ = QuickSignature.from_callable(method)  # type: ignore[attr-defined]
    return call


class QuickSignature(inspect.Signature):
    """A signature whose `bind` settles the usual calls without inspect's general walk.

    jsonrpcserver binds each request's params to the method's signature only to check that
    they fit, and that general `bind` was the largest single cost of a call. When every
    parameter can be given by position or by name (as in all our methods), a call with
    known names and every required one, or with a fitting number of values, is bound here;
    anything else goes to inspect, so every error and its message are inspect's own.
    """

    __slots__ = ("_known", "_names", "_required")

    def __init__(
        self,
        parameters: Sequence[inspect.Parameter] | None = None,
        *,
        return_annotation: Any = inspect.Signature.empty,
        __validate_parameters__: bool = True,
    ) -> None:
        # The same arguments as inspect.Signature, which builds new ones with them (replace()).
        super().__init__(
            parameters,
            return_annotation=return_annotation,
            __validate_parameters__=__validate_parameters__,
        )
        params = self.parameters.values()
        plain = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        self._names = tuple(p.name for p in params) if plain else None
        self._known = frozenset(self._names or ())
        self._required = frozenset(p.name for p in params if p.default is p.empty)

    def bind(self, /, *args: Any, **kwargs: Any) -> inspect.BoundArguments:
        """Bind as `inspect.Signature.bind` does: the same arguments, or the same error."""
        names = self._names
        if names is not None:
            if not kwargs and len(self._required) <= len(args) <= len(names):
                # Required parameters come first, so enough values cover all of them.
                return inspect.BoundArguments(self, dict(zip(names, args, strict=False)))
            if not args and self._required <= kwargs.keys() <= self._known:
                arguments = {name: kwargs[name] for name in names if name in kwargs}
                return inspect.BoundArguments(self, arguments)
        return super().bind(*args, **kwargs)


def _takes(method: RpcMethod) -> str:
    """`(id, [timeout], [status])`: a method's params, the optional ones in brackets."""
    params = inspect.signature(method).parameters.values()
    names = [p.name if p.default is inspect.Parameter.empty else f"[{p.name}]" for p in params]
    return f"({', '.join(names)})"


def _problem(request: object) -> str | None:
    """What makes `request` an invalid request object, or None (the schema's rules)."""
    if not isinstance(request, dict):
        return "a request must be a JSON object"
    if request.get("jsonrpc") != "2.0":
        return 'jsonrpc must be exactly "2.0"'
    if not isinstance(request.get("method"), str):
        return "method must be a string"
    if "params" in request and not isinstance(request["params"], (list, dict)):
        return "params must be an array or an object"
    request_id = request.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, _ID_TYPES):
        return "id must be a string, a number or null"
    if not request.keys() <= _MEMBERS:
        unknown = request.keys() - _MEMBERS
        return f"unknown member(s): {', '.join(sorted(map(repr, unknown)))}"
    return None


def _error(code: ErrorCode, message: str, data: str) -> Response:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": data}, "id": None}


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} is too large")
    return number


# Strict JSON: NaN, Infinity and numbers beyond a double's range are parse errors.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def _whole(name: str, value: object, *, low: int, high: int | None = None) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= (high or value):
        return value
    allowed = f"from {low} to {high}" if high is not None else f">= {low}"
    raise InvalidParams(f"{name} must be a whole number {allowed}, not {value!r}")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidParams(f"{name} must be a number of seconds >= 0, not {value!r}")
    return float(value)


def _status(value: object) -> JobStatus:
    if isinstance(value, str) and value in _STATUSES:
        return JobStatus(value)
    allowed = ", ".join(map(repr, _STATUSES))
    raise InvalidParams(f"status must be one of {allowed}, not {value!r}")


def _cursor(value: object) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
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
    },
}
_SUMMARY_SCHEMA = {
    "type": "object",
    "properties": {
        **{k: v for k, v in _JOB_SCHEMA["properties"].items() if k not in ("data", "error")},  # type: ignore[attr-defined]
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
    ErrorCode.UNAUTHORIZED: {
        "code": ErrorCode.UNAUTHORIZED,
        "message": "missing or wrong token (with HTTP 401), when the server has one",
    },
}
_AUTH = ErrorCode.UNAUTHORIZED
_BY_ID = (ErrorCode.INVALID_PARAMS, ErrorCode.JOB_NOT_FOUND)
_METHOD_ERRORS: dict[str, tuple[ErrorCode, ...]] = {
    Method.SUBMIT: (ErrorCode.INVALID_PARAMS, ErrorCode.QUEUE_FULL),
    Method.STATUS: _BY_ID,
    Method.RESULT: (
        *_BY_ID,
        ErrorCode.RESULT_NOT_READY,
        ErrorCode.JOB_FAILED,
        ErrorCode.JOB_CANCELLED,
    ),
    Method.WAIT: _BY_ID,
    Method.CANCEL: (*_BY_ID, ErrorCode.ALREADY_FINISHED),
    Method.LIST: (ErrorCode.INVALID_PARAMS,),
}
