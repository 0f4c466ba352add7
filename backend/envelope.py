"""The JSON-RPC 2.0 envelope, once for HTTP and the WebSocket: parse, check, dispatch, answer.

Every message a client sends, on either transport, goes through `Dispatcher.answer`: the
body is parsed (strict JSON: no NaN or Infinity), each request object is checked against
the specification's rules, and only then is it handed to jsonrpcserver, one at a time. A
batch is answered element by element, so one bad element gets its own error and the others
still run. The socket's own methods (`auth`, `subscribe`) are dispatched the same way.

Every error object the server sends, from the gate's HTTP refusals to a method's own
errors, is built by one function: `error`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, cast

import orjson
from jsonrpcserver import JsonRpcError, Result
from jsonrpcserver.async_dispatcher import dispatch_request
from jsonrpcserver.dispatcher import create_request, to_response
from jsonrpcserver.response import to_serializable_one
from jsonrpcserver.sentinels import NOCONTEXT, NODATA, NOID

from backend.pacing import decode_turn, side_by_side
from backend.protocol import ErrorCode, InvalidRequest, ParseError, RpcError

logger = logging.getLogger("taskrpc.rpc")

Response = dict[str, Any]
Answer = Response | list[Response] | None
RpcMethod = Callable[..., Awaitable[Result]]

YIELD_EVERY = 32  # batch elements answered between two chances for other requests
SMALL_BODY = 16 * 1024  # bytes: a body this small is decoded at once (~0.4 ms), unpaced
_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
_ID_TYPES = (str, int, float, type(None))  # a tuple: isinstance checks it faster than a union


def error(code: int, message: str, data: Any = None, request_id: Any = None) -> Response:
    """The error response object: the one place any error envelope is built."""
    body: dict[str, Any] = {"code": int(code), "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "error": body, "id": request_id}


def failure(exc: RpcError, request_id: Any = None) -> Response:
    """The error response for one of our exceptions."""
    return error(exc.code, exc.message, exc.data, request_id)


def success(request_id: Any, result: Any) -> Response:
    """The response object for a result."""
    return {"jsonrpc": "2.0", "result": result, "id": request_id}


def dumps(answer: Any) -> bytes:
    """Compact JSON as UTF-8, with orjson (the stdlib's encoder was the largest share of a call).

    orjson refuses a lone surrogate and an integer beyond 64 bits, both of which a request id
    may hold and we echo; the standard library writes those as valid JSON, in ASCII.
    """
    try:
        return orjson.dumps(answer)
    except TypeError:
        # ensure_ascii (the default) writes ASCII only, the same bytes in any ASCII-based codec.
        return json.dumps(answer, separators=(",", ":"), default=_unfragment).encode()


def _unfragment(value: object) -> Any:
    """The value of an orjson.Fragment (pre-encoded JSON, as in snapshots), for the stdlib."""
    if isinstance(value, orjson.Fragment):
        return json.loads(orjson.dumps(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def parse(body: bytes) -> object:
    """The JSON value in `body`, or `ParseError` saying why there is none."""
    try:
        return _DECODER.decode(body.decode())  # UTF-8 always (never the locale's); no codec name
    except UnicodeDecodeError:
        raise ParseError("Parse error", "the body is not valid UTF-8") from None
    except RecursionError:
        raise ParseError("Parse error", "the JSON is nested too deeply") from None
    except ValueError as exc:  # also an integer of more than 4 300 digits
        raise ParseError("Parse error", str(exc)) from None


def check(request: object) -> dict[str, Any]:
    """`request` if it is a valid request object, or `InvalidRequest` saying what is wrong."""
    problem = _problem(request)
    if problem is not None:
        raise InvalidRequest("Invalid request", problem)
    return cast(dict[str, Any], request)


class Dispatcher:
    """Answers JSON-RPC messages with a table of methods; the one adapter to jsonrpcserver."""

    def __init__(
        self,
        methods: Mapping[str, RpcMethod],
        *,
        max_batch: int,
        blocking: Collection[str] = (),
    ) -> None:
        self.max_batch = max_batch
        self.blocking = frozenset(blocking)  # methods that may block: a batch runs side by side
        self._methods = {name: _guarded(method) for name, method in methods.items()}
        self._takes = {name: _takes(method) for name, method in methods.items()}

    def extended(self, methods: Mapping[str, RpcMethod]) -> Dispatcher:
        """A dispatcher that also answers `methods` (the socket's own, bound to one socket)."""
        more = Dispatcher(methods, max_batch=self.max_batch, blocking=self.blocking)
        more._methods = {**self._methods, **more._methods}
        more._takes = {**self._takes, **more._takes}
        return more

    async def answer(self, body: bytes) -> Answer:
        """Answer one message: a response, a batch of them, or None for none."""
        if len(body) > SMALL_BODY:
            await decode_turn(len(body))  # many large bodies at once: decoded over turns
        try:
            request = parse(body)
        except ParseError as exc:
            return failure(exc)
        if not isinstance(request, list):
            return await self.one(request)
        if not request:
            return error(ErrorCode.INVALID_REQUEST, "Invalid request", "the batch is empty")
        if len(request) > self.max_batch:
            return error(
                ErrorCode.INVALID_REQUEST,
                "Invalid request",
                f"the batch has {len(request)} requests; the limit is {self.max_batch}",
            )
        if any(isinstance(item, dict) and item.get("method") in self.blocking for item in request):
            # One may block: run the elements side by side so the others are not held up.
            answers = await side_by_side(self.one(item) for item in request)
        else:  # none blocks: no tasks needed, but let other clients in now and then
            answers = []
            for n, item in enumerate(request, start=1):
                answers.append(await self.one(item))
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        return [answer for answer in answers if answer is not None] or None

    async def one(self, request: object) -> Response | None:
        """Answer one request object: its response, or None for a notification."""
        try:
            call = create_request(check(request))
        except InvalidRequest as exc:
            return failure(exc)
        _, result = await dispatch_request(self._methods, NOCONTEXT, call)
        if call.id is NOID:
            return None  # a notification: it ran, and gets no response
        response = cast(Response, to_serializable_one(to_response(call, result)))
        if "error" not in response:
            return response  # {"jsonrpc", "result", "id"}, as `success` builds it
        code, message, data = (response["error"].get(key) for key in ("code", "message", "data"))
        if message == "Invalid params" and data is not None:
            # jsonrpcserver's own check of the arguments: say what the method takes.
            takes = self._takes[call.method]
            message, data = f"Invalid params: {data}; {call.method} takes {takes}", None
        return error(code, message, data, call.id)


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
                # (`strict=False`, the default, said for ruff: no mutants, TESTING.md.)
                values = dict(zip(names, args, strict=False))  # pragma: no mutate
                return inspect.BoundArguments(self, values)
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


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} is too large")
    return number


# Strict JSON: NaN, Infinity and numbers beyond a double's range are parse errors.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)
