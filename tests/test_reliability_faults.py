"""Faults: vanishing clients, oversized, malformed and slow bodies, crowds of dropped long-polls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from backend import app as server_app
from backend.protocol import RPC_PATH, ErrorCode, JobStatus
from tests.conftest import Server, StartServer, until

Raw = tuple[asyncio.StreamReader, asyncio.StreamWriter]
JSON = "Content-Type: application/json"


async def connect(server: Server) -> Raw:
    """A raw TCP connection to the server, for requests no HTTP client would send."""
    parts = urlsplit(server.url)
    assert parts.hostname is not None
    return await asyncio.open_connection(parts.hostname, parts.port)


def head(length: int | None, *extra: str) -> bytes:
    """The request line and headers of a POST to /rpc; chunked when `length` is None."""
    size = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    lines = [f"POST {RPC_PATH} HTTP/1.1", "Host: 127.0.0.1", JSON, size, *extra, "", ""]
    return "\r\n".join(lines).encode("ascii")


def request(method: str, params: Any = None, request_id: object = 1) -> bytes:
    """A JSON-RPC request, encoded."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


async def read_reply(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, bytes]:
    """Read one HTTP response (status, body) within `timeout` seconds."""
    async with asyncio.timeout(timeout):
        head_bytes = await reader.readuntil(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        length = int({k.lower(): v for k, v in headers.items()}.get("content-length", "0"))
        return status, await reader.readexactly(length)


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a raw connection, ignoring a peer that already went away."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def settled_task_count(server: Server) -> int:
    """The number of tasks once the server is idle (after one full request, to warm it up)."""
    assert (await server.call("types"))["result"]
    await until(lambda: server.store.running is None, what="the worker to go idle")
    return len(asyncio.all_tasks())


async def test_client_vanishing_mid_body_leaves_nothing_behind(server: Server) -> None:
    """A client that sends half a body and disconnects leaves no task behind; others are served."""
    baseline = await settled_task_count(server)
    _, writer = await connect(server)
    writer.write(head(1000) + b'{"jsonrpc": "2.0", "meth')
    await writer.drain()
    await until(lambda: len(asyncio.all_tasks()) > baseline, what="the server to take it")
    await close(writer)
    await until(lambda: len(asyncio.all_tasks()) <= baseline, timeout=5, what="tasks at baseline")
    assert (await server.call("types"))["result"]


async def test_client_vanishing_mid_wait_leaves_the_job_alone(start_server: StartServer) -> None:
    """A client that drops its `wait` changes nothing: the job finishes, others still read it."""
    server = await start_server(time_scale=0.05)  # reverse takes 0.1 s
    job = (await server.call("submit", {"type": "reverse", "data": "abc"}))["result"]
    _, writer = await connect(server)
    body = request("wait", {"id": job["id"], "timeout": 30})
    writer.write(head(len(body)) + body)
    await writer.drain()
    await close(writer)
    finished = (await server.call("wait", {"id": job["id"], "timeout": 10}))["result"]
    assert finished["status"] == JobStatus.DONE
    assert (await server.call("result", {"id": job["id"]}))["result"]["result"] == "cba"


async def test_1000_dropped_long_polls_leave_no_tasks(start_server: StartServer) -> None:
    """1 000 clients blocked in `wait` that drop at once leave the task count at its baseline."""
    server = await start_server(time_scale=100.0)
    await server.store.submit(
        "repeat", "x"
    )  # runs 700 s; submitted directly: no connection lingers
    queued = await server.store.submit("reverse", "y")
    await until(lambda: server.store.running is not None, what="the first job to start")
    baseline = len(asyncio.all_tasks())
    body = request("wait", {"id": queued.id, "timeout": 60})
    connections: list[Raw] = []
    try:
        for _ in range(1000):
            connections.append(await connect(server))
            connections[-1][1].write(head(len(body)) + body)
        await asyncio.gather(*(writer.drain() for _, writer in connections))
        await until(
            lambda: len(asyncio.all_tasks()) >= baseline + 2000,  # connection + handler tasks
            what="every wait to be in progress",
        )
    finally:
        await asyncio.gather(*(close(writer) for _, writer in connections))
    await until(lambda: len(asyncio.all_tasks()) <= baseline, timeout=5, what="tasks at baseline")


async def test_oversized_body_is_refused_before_it_is_sent(server: Server) -> None:
    """A Content-Length over the limit gets 413 and a JSON-RPC error without sending the body."""
    limit = 1024 * 1024
    reader, writer = await connect(server)
    try:
        writer.write(head(100 * limit))  # headers only: the body never comes
        await writer.drain()
        status, body = await read_reply(reader)
    finally:
        await close(writer)
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == ErrorCode.INVALID_REQUEST
    assert str(limit) in error["message"]
    assert (await server.call("types"))["result"]


async def test_oversized_chunked_body_is_refused_at_the_limit(start_server: StartServer) -> None:
    """A chunked body is refused with 413 once it passes the limit, without waiting for its end."""
    server = await start_server(max_body_bytes=10_000)
    reader, writer = await connect(server)
    try:
        writer.write(head(None))
        chunk = b"3e8\r\n" + b" " * 1000 + b"\r\n"  # 1 000 bytes of whitespace
        writer.write(chunk * 11)  # 11 000 bytes and no final chunk
        await writer.drain()
        status, body = await read_reply(reader)
    finally:
        await close(writer)
    assert status == 413
    assert json.loads(body)["error"]["code"] == ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\xfd",
        b'{"jsonrpc": "2.0", "method": "types", "id": "\xc3\x28"}',  # broken two-byte sequence
        b'{"jsonrpc": "2.0", "method": "types", "id": "\xc0\xaf"}',  # overlong encoding of "/"
        b'{"jsonrpc": "2.0", "method": "types", "id": "\xed\xa0\x80"}',  # an encoded surrogate
        b'{"jsonrpc": "2.0", "method": "types", "id": 1}\xe2\x82',  # truncated at the end
    ],
)
async def test_invalid_utf8_is_a_parse_error(server: Server, body: bytes) -> None:
    """A body that is not valid UTF-8 gets a parse error naming the cause, not a crash."""
    status, answer = await server.post(body)
    assert status == 200
    assert answer["error"]["code"] == ErrorCode.PARSE_ERROR
    assert "UTF-8" in answer["error"]["data"]
    assert answer["id"] is None


DEEP = 100_000
NESTED = "[" * DEEP + "]" * DEEP


@pytest.mark.parametrize(
    "body",
    [
        "[" * DEEP,
        NESTED,
        '{"a":' * DEEP + "1" + "}" * DEEP,
        '{"jsonrpc": "2.0", "method": "submit", "id": 1, "params": ' + NESTED + "}",
        '[{"jsonrpc": "2.0", "method": "types", "id": 1}, ' + NESTED + "]",
    ],
    ids=["open", "balanced", "objects", "in-params", "in-batch"],
)
async def test_json_nested_100000_deep_is_a_clear_error(server: Server, body: str) -> None:
    """JSON nested 100 000 levels deep is a parse error saying so; the server goes on."""
    status, answer = await server.post(body)
    assert status == 200
    assert answer["error"]["code"] == ErrorCode.PARSE_ERROR
    assert "nested too deeply" in answer["error"]["data"]
    assert (await server.call("types"))["result"]


async def test_lone_surrogates_are_refused_or_echoed_safely(server: Server) -> None:
    """A lone surrogate in the text is invalid params; one in the id comes back escaped."""
    in_data = b'{"jsonrpc":"2.0","method":"submit","params":{"type":1,"data":"a\\ud800"},"id":1}'
    status, answer = await server.post(in_data)
    assert status == 200
    assert answer["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert answer["error"]["message"] == (
        "data must be valid Unicode text: it holds a lone surrogate"
    )
    in_id = b'{"jsonrpc":"2.0","method":"types","id":"\\udc00"}'
    status, answer = await server.post(in_id)
    assert status == 200
    assert answer["id"] == "\udc00"
    assert answer["result"]


async def test_a_body_sent_one_byte_at_a_time_does_not_delay_others(server: Server) -> None:
    """While one client drips its body a byte at a time, every other call is answered at once."""
    body = request("submit", {"type": "reverse", "data": "slow client"}, "slow")
    reader, writer = await connect(server)
    writer.write(head(len(body)))
    dripped = asyncio.Event()

    async def drip() -> None:
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.02)  # the slow client's pace, not a synchronisation
        dripped.set()

    dripping = asyncio.create_task(drip())
    try:
        latencies = []
        for _ in range(20):
            started = time.monotonic()
            assert (await server.call("types"))["result"]
            latencies.append(time.monotonic() - started)
        assert not dripped.is_set(), "the other calls should have finished during the drip"
        assert max(latencies) < 0.5, latencies
        await dripping
        status, reply = await read_reply(reader)
    finally:
        dripping.cancel()
        await close(writer)
    assert status == 200
    answer = json.loads(reply)
    assert answer["id"] == "slow"
    assert answer["result"]["data"] == "slow client"


async def test_a_batch_bomb_is_cheap_and_does_not_stall_others(server: Server) -> None:
    """A 500 kB batch of 250 000 tiny elements (half the body limit) is cheap and stalls no one."""
    bomb = b"[" + b"1," * 249_999 + b"1]"
    began = time.monotonic()
    sent = asyncio.create_task(server.post(bomb))
    latencies = []
    while not sent.done():
        started = time.monotonic()
        assert (await server.call("types"))["result"]
        latencies.append(time.monotonic() - started)
    status, answer = await sent
    elapsed = time.monotonic() - began
    assert status == 200
    worst = max(latencies, default=0.0)
    assert worst < 0.5, f"another client waited {worst:.2f} s"
    assert elapsed < 1.0, f"the batch took {elapsed:.2f} s"
    assert len(json.dumps(answer)) < 10 * len(bomb), "the answer is much larger than the request"


@pytest.mark.parametrize(
    "rest",
    [b"zz\r\nnope\r\n0\r\n\r\n", b""],
    ids=["framing-breaks-mid-read", "body-stalls"],
)
async def test_a_body_that_breaks_or_stalls_mid_read_is_answered_by_the_body_deadline(
    start_server: StartServer, rest: bytes
) -> None:
    """A chunked body that breaks or stalls once the handler reads it: 408 at --body-timeout."""
    server = await start_server(body_timeout=0.5)
    reader, writer = await connect(server)
    try:
        writer.write(head(None) + b"5\r\n[1, 2\r\n")  # the handler starts reading this
        await writer.drain()
        await until(_in_rpc_handler, what="the handler to read the body")
        writer.write(rest)
        await writer.drain()
        status, body = await read_reply(reader, timeout=5.0)
        assert status == 408, (status, body)
        assert json.loads(body)["error"]["code"] == ErrorCode.PARSE_ERROR
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # and the connection is closed
    finally:
        await close(writer)


def _in_rpc_handler() -> bool:
    """True while a task of this loop is inside the /rpc handler, reading the body.

    The read itself is looked for, not only the handler: under `make mutate` the handler is
    a wrapper that calls the real one a step later, and a break that arrives before the read
    starts is the parser's 400, not the deadline's 408."""
    for task in asyncio.all_tasks():
        awaiting: Any = task.get_coro()
        in_rpc = False
        while awaiting is not None and hasattr(awaiting, "cr_code"):
            in_rpc = in_rpc or awaiting.cr_code is server_app.rpc.__code__
            if in_rpc and awaiting.cr_code is web.BaseRequest.read.__code__:
                return True
            awaiting = awaiting.cr_await  # down the chain of awaits (middlewares, rpc, read)
    return False
