"""One envelope: HTTP and the WebSocket check and answer a message alike; no bad input is a 500.

The attacks go through real sockets: raw bytes for HTTP, where a client library would fix them.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from typing import Any

import aiohttp
import orjson
import pytest
from jsonrpcserver import Result, Success

from backend.envelope import SMALL_BODY, YIELD_EVERY, Dispatcher, QuickSignature, dumps
from backend.pacing import DECODE_PER_TURN, decode_turn
from backend.protocol import RPC_PATH, WS_PATH, ErrorCode, Method, SocketMethod
from backend.ws import HUB
from tests.conftest import Server, StartServer, until
from tests.test_gate import JSON, raw, send
from tests.test_reliability_faults import close, connect
from tests.test_reliability_fuzz import check_response

TOKEN = "envelope-token"
BAD_ENVELOPES: dict[str, dict[str, Any]] = {
    "object id": {"jsonrpc": "2.0", "method": "M", "id": {"a": [1, 2]}},
    "true id": {"jsonrpc": "2.0", "method": "M", "id": True},
    "array id": {"jsonrpc": "2.0", "method": "M", "id": []},
    "version 1.0": {"jsonrpc": "1.0", "method": "M", "id": 1},
    "no version": {"method": "M", "id": 1},
    "unknown member": {"jsonrpc": "2.0", "method": "M", "id": 1, "extra": 1},
    "params a string": {"jsonrpc": "2.0", "method": "M", "id": 1, "params": "x"},
}
METHODS = [Method.TYPES, SocketMethod.SUBSCRIBE, SocketMethod.AUTH]


async def over_http(server: Server, message: Any) -> Any:
    """The answer /rpc gives to `message`, sent as raw bytes."""
    body = json.dumps(message).encode()
    status, answer = await send(server, raw("POST", RPC_PATH, "Host: 127.0.0.1", JSON, body=body))
    assert status == 200
    return answer


async def over_socket(ws: aiohttp.ClientWebSocketResponse, message: Any) -> Any:
    """The answer the socket gives to `message`."""
    await ws.send_str(json.dumps(message))
    return await ws.receive_json(timeout=10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("envelope", BAD_ENVELOPES.values(), ids=BAD_ENVELOPES.keys())
async def test_the_socket_refuses_what_http_refuses(
    server: Server, method: str, envelope: dict[str, Any]
) -> None:
    """A bad envelope is -32600 on /ws as on /rpc, for the socket's own methods too."""
    message = {**envelope, "method": method}
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        answer = await over_socket(ws, message)
        assert not server.app[HUB].subscribers  # a refused subscribe subscribes no one
    check_response(answer)
    assert answer["error"]["code"] == ErrorCode.INVALID_REQUEST, answer
    assert answer == await over_http(server, {**envelope, "method": Method.TYPES})


async def test_a_bad_first_message_gets_its_own_error_then_the_socket_closes(
    start_server: StartServer,
) -> None:
    """Without the token, a malformed first message gets its specification error, then 1008."""
    server = await start_server(token=TOKEN)
    for message, code in [
        ("{not json", ErrorCode.PARSE_ERROR),
        (json.dumps({"jsonrpc": "2.0", "method": "auth", "id": True}), ErrorCode.INVALID_REQUEST),
        (json.dumps({"jsonrpc": "1.0", "method": "auth", "id": 1}), ErrorCode.INVALID_REQUEST),
        (json.dumps({"jsonrpc": "2.0", "method": "types", "id": 1}), ErrorCode.UNAUTHORIZED),
        (
            json.dumps({"jsonrpc": "2.0", "method": "auth", "params": ["no"], "id": 1}),
            ErrorCode.UNAUTHORIZED,
        ),
    ]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(server.url + WS_PATH) as ws,
        ):
            await ws.send_str(message)
            answer = await ws.receive_json(timeout=10)
            check_response(answer)
            assert answer["error"]["code"] == code, (message, answer)
            closing = await ws.receive(timeout=10)
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION


HOSTILE_VALUES: list[Any] = [
    "9" * 5000,
    10**4000,
    -(10**4000),
    1e308,
    -0.0,
    "\ud800",
    [[[[[[[[[[]]]]]]]]]],
    {"": None},
    "",
    None,
    True,
]
PARAM_NAMES = ("id", "type", "data", "timeout", "status", "position", "limit", "cursor", "token")


def hostile_calls() -> list[dict[str, Any]]:
    """Every method with every hostile value as each of its params, by name and by position."""
    calls: list[dict[str, Any]] = []
    for method in [*Method, *SocketMethod]:
        for value in HOSTILE_VALUES:
            calls.append({"method": method, "params": [value]})
            calls.append({"method": method, "params": ["x", value]})
            for name in PARAM_NAMES:
                calls.append({"method": method, "params": {name: value}})
                calls.append({"method": method, "params": {"id": "x", "type": 1, name: value}})
    return [{"jsonrpc": "2.0", "id": n, **call} for n, call in enumerate(calls)]


async def test_no_hostile_param_is_an_internal_error(server: Server) -> None:
    """A 5 000-digit cursor, a 4 000-digit timeout and the like get -32602, never -32603."""
    calls = hostile_calls()
    answers: list[Any] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        for start in range(0, len(calls), 100):
            batch = calls[start : start + 100]
            answers.extend(await over_socket(ws, batch))
            if any(c["method"] in Method for c in batch):
                answers.extend(await over_http(server, [c for c in batch if c["method"] in Method]))
    assert len(answers) > len(calls)
    internal = [a for a in answers if a.get("error", {}).get("code") == ErrorCode.INTERNAL_ERROR]
    assert not internal, internal[:3]
    for answer in answers:
        check_response(answer)


async def test_a_5000_digit_cursor_is_invalid_params(server: Server) -> None:
    """The issue's case, alone: `list` with a 5 000-digit cursor says what a cursor is."""
    answer = await over_http(
        server,
        {"jsonrpc": "2.0", "method": "list", "params": {"cursor": "1" * 5000}, "id": 1},
    )
    assert answer["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert "cursor must be" in answer["error"]["message"]


GARBAGE = [
    b"GET /\x00\x1b[31m HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # a control character in the line
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS\r\n\r\n",  # TLS to the HTTP port
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n0\r\n\r\n",  # a broken chunk
]


async def test_malformed_http_is_one_warning_line_rate_limited(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage request lines log one WARNING line a second at most, never an ERROR traceback."""
    caplog.set_level(logging.DEBUG)

    async def garbage(n: int = 0) -> None:
        reader, writer = await connect(server)
        try:
            writer.write(GARBAGE[n % len(GARBAGE)])
            await writer.drain()
            async with asyncio.timeout(5):
                reply = await reader.read()
        finally:
            await close(writer)
        assert not reply or reply.split(b" ", 2)[1] == b"400", reply

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno == logging.WARNING and "malformed" in r.msg]

    deadline = time.monotonic() + 5  # an earlier test may have used this second's line
    while not warnings() and time.monotonic() < deadline:
        await garbage()
    await until(lambda: bool(warnings()), what="the first warning")
    started = time.monotonic()
    for n in range(200):
        await garbage(n)
    elapsed = time.monotonic() - started
    assert len(warnings()) <= 2 + int(elapsed), [r.getMessage() for r in warnings()]
    for record in caplog.records:
        assert record.levelno < logging.ERROR, record.getMessage()
        assert record.exc_info is None, record.getMessage()
    line = warnings()[0].getMessage()
    assert "\n" not in line
    assert "\x1b" not in line


# In-process: the dispatcher itself, with methods of its own (no server, no socket).


async def _echo(text: str) -> Result:
    """Answers its one param."""
    return Success(text)


def _request(method: str, n: int = 1, **more: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "id": n, **more}


def _refusal(code: int, message: str, data: str) -> dict[str, Any]:
    """The error object a client gets, written out in full (not built with `error`)."""
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": data}, "id": None}


def _invalid(data: str) -> dict[str, Any]:
    return _refusal(ErrorCode.INVALID_REQUEST, "Invalid request", data)


EXACT_REFUSALS: dict[str, tuple[Any, Any]] = {
    "not UTF-8": (
        b"\xff",
        _refusal(ErrorCode.PARSE_ERROR, "Parse error", "the body is not valid UTF-8"),
    ),
    "too deep": (
        b"[" * 100_000,
        _refusal(ErrorCode.PARSE_ERROR, "Parse error", "the JSON is nested too deeply"),
    ),
    "NaN": (b"NaN", _refusal(ErrorCode.PARSE_ERROR, "Parse error", "NaN is not valid JSON")),
    "not an object": ("x", _invalid("a request must be a JSON object")),
    "version": (_request("echo", jsonrpc="1.0"), _invalid('jsonrpc must be exactly "2.0"')),
    "method": ({**_request("echo"), "method": 1}, _invalid("method must be a string")),
    "params": (_request("echo", params="x"), _invalid("params must be an array or an object")),
    "id": (_request("echo", id=True), _invalid("id must be a string, a number or null")),
    "members": (_request("echo", b=1, a=2), _invalid("unknown member(s): 'a', 'b'")),
    "empty batch": ([], _invalid("the batch is empty")),
    "long batch": ([_request("echo")] * 4, _invalid("the batch has 4 requests; the limit is 3")),
    "one bad element": (
        [_request("echo", params=["a"]), "x"],
        [
            {"jsonrpc": "2.0", "result": "a", "id": 1},
            _invalid("a request must be a JSON object"),
        ],
    ),
}


@pytest.mark.parametrize(("body", "refusal"), EXACT_REFUSALS.values(), ids=EXACT_REFUSALS.keys())
async def test_each_refusal_is_the_exact_error_object(body: Any, refusal: Any) -> None:
    """Every parse and envelope refusal has its exact code, message and data, word for word."""
    dispatcher = Dispatcher({"echo": _echo}, max_batch=3)
    message = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert await dispatcher.answer(message) == refusal


async def test_a_long_batch_lets_others_in_after_every_yield_every_elements() -> None:
    """A batch of calls that never block gives the loop a turn after each YIELD_EVERY, only then."""
    turns = 0
    seen: list[int] = []

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def note() -> Result:
        seen.append(turns)
        return Success(None)

    size = 2 * YIELD_EVERY + 1
    body = json.dumps([_request("note", n) for n in range(size)]).encode()
    assert len(body) <= SMALL_BODY  # decoded at once: the batch's own yields only
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        answers = await Dispatcher({"note": note}, max_batch=size).answer(body)
    finally:
        ticking.cancel()
    assert isinstance(answers, list)
    assert len(answers) == size
    changed = [n for n in range(1, size) if seen[n] != seen[n - 1]]
    assert changed == [YIELD_EVERY, 2 * YIELD_EVERY]


def _sized(size: int) -> bytes:
    """An `echo` request of exactly `size` bytes."""
    head, tail = b'{"jsonrpc":"2.0","method":"echo","params":["', b'"],"id":1}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize(("size", "paced"), [(SMALL_BODY, False), (SMALL_BODY + 1, True)])
async def test_only_a_body_over_small_body_waits_for_the_decode_budget(
    size: int, paced: bool
) -> None:
    """With this turn's decode budget spent, SMALL_BODY bytes are still answered at once; one
    byte more waits for the next turn."""
    dispatcher = Dispatcher({"echo": _echo}, max_batch=1)
    await decode_turn(DECODE_PER_TURN)  # this turn's budget: spent
    turned: list[None] = []
    asyncio.get_running_loop().call_soon(turned.append, None)
    answer = await dispatcher.answer(_sized(size))
    assert isinstance(answer, dict)
    assert "result" in answer
    assert bool(turned) is paced


async def test_an_extended_dispatcher_still_runs_a_blocking_batch_side_by_side() -> None:
    """The socket's dispatcher keeps the blocking methods: a held call does not hold the next."""
    released = asyncio.Event()

    async def hold() -> Result:
        await released.wait()
        return Success("held")

    async def release() -> Result:
        released.set()
        return Success("released")

    base = Dispatcher({"hold": hold}, max_batch=2, blocking={"hold"})
    more = base.extended({"release": release})
    body = json.dumps([_request("hold", 1), _request("release", 2)]).encode()
    async with asyncio.timeout(5):  # one after the other, `hold` would never return
        answers = await more.answer(body)
    assert answers == [
        {"jsonrpc": "2.0", "result": "held", "id": 1},
        {"jsonrpc": "2.0", "result": "released", "id": 2},
    ]


def test_what_orjson_refuses_is_written_compactly_by_the_standard_library() -> None:
    """A lone surrogate or a 70-bit id, beside a pre-encoded fragment: compact ASCII JSON."""
    fragment = orjson.Fragment(b'{"a": [1, 2]}')
    for request_id, written in [("\ud800", b'"\\ud800"'), (2**70, str(2**70).encode())]:
        answer = {"jsonrpc": "2.0", "result": fragment, "id": request_id}
        assert dumps(answer) == b'{"jsonrpc":"2.0","result":{"a":[1,2]},"id":' + written + b"}"


async def _method(id: str, timeout: float = 1, status: str | None = None) -> Result:  # noqa: A002
    """A method as ours are: a required param first, then optional ones."""
    return Success(None)


def test_the_usual_calls_never_reach_inspects_general_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    """From the required values to all of them, by position or by name: the quick bind's own
    (the hot path of every call), and the same BoundArguments as inspect's."""
    usual: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        (("x",), {}),
        (("x", 2), {}),
        (("x", 2, "done"), {}),
        ((), {"id": "x"}),
        ((), {"status": "done", "id": "x"}),
        ((), {"id": "x", "timeout": 2, "status": "done"}),
    ]
    plain = inspect.signature(_method)
    expected = [plain.bind(*args, **kwargs) for args, kwargs in usual]
    general: list[tuple[Any, ...]] = []
    original = inspect.Signature.bind

    def counted(self: inspect.Signature, /, *args: Any, **kwargs: Any) -> inspect.BoundArguments:
        general.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(inspect.Signature, "bind", counted)
    quick = QuickSignature.from_callable(_method)
    assert [quick.bind(*args, **kwargs) for args, kwargs in usual] == expected
    assert general == []
    with pytest.raises(TypeError, match="multiple values for argument 'id'"):
        quick.bind("x", id="y")  # not a usual call: inspect's, and the count sees it
    assert general == [("x",)]
