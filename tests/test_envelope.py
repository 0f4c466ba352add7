"""One envelope: HTTP and the WebSocket check and answer a message alike; no bad input is a 500.

The attacks go through real sockets: raw bytes for HTTP, where a client library would fix them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import pytest

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
