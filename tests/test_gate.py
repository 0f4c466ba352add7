"""The gate: Host, then Origin, then the token, then encoding and size; only then the body.

Every attack here goes through a raw socket, so no client library tidies the request up.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import struct
import time
import zlib
from typing import Any

import aiohttp
import pytest

from backend.protocol import HEALTH_PATH, RPC_PATH, WS_PATH, ErrorCode
from tests.conftest import Server, StartServer, until
from tests.test_reliability_faults import close, connect, read_reply

TOKEN = "gate-keeper-token"
SUBMIT = b'{"jsonrpc": "2.0", "method": "submit", "params": [1, "abc"], "id": 1}'
JSON = "Content-Type: application/json"
EVIL_ORIGIN = "Origin: https://evil.example"


def raw(verb: str, path: str, *headers: str, body: bytes = b"", length: int | None = None) -> bytes:
    """An HTTP/1.1 request exactly as given: no header is added but Content-Length."""
    size = len(body) if length is None else length
    lines = [f"{verb} {path} HTTP/1.1", *headers]
    if verb == "POST":
        lines.append(f"Content-Length: {size}")
    return ("\r\n".join([*lines, "", ""])).encode("latin-1") + body


def upgrade(*headers: str) -> bytes:
    """A WebSocket upgrade request for /ws."""
    return raw(
        "GET",
        WS_PATH,
        *headers,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    )


async def send(server: Server, request: bytes) -> tuple[int, Any]:
    """Send `request` on a fresh connection; the status and the body (JSON when there is one)."""
    reader, writer = await connect(server)
    try:
        writer.write(request)
        await writer.drain()
        status, body = await read_reply(reader)
    finally:
        await close(writer)
    return status, json.loads(body) if body else None


def assert_refused(status: int, body: Any, expected: int, says: str) -> None:
    """An HTTP error with a JSON-RPC error envelope whose message names the rule."""
    assert status == expected, (status, body)
    assert body["jsonrpc"] == "2.0"
    assert body["id"] is None
    assert body["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert says in body["error"]["message"], body


def nothing_ran(server: Server) -> bool:
    """No job was submitted."""
    return sum(server.store.counts().values()) == 0


FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:8765",
    "localhost.evil.example",
    "127.0.0.1.nip.io:8765",
    "127.0.0.2",
    "evil@localhost",
    "[::1",
]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
async def test_a_foreign_host_is_refused_without_a_token(server: Server, host: str) -> None:
    """DNS rebinding: a request or upgrade addressed to another name gets 403, and nothing runs."""
    status, body = await send(server, raw("POST", RPC_PATH, f"Host: {host}", JSON, body=SUBMIT))
    assert_refused(status, body, 403, "Host")
    assert nothing_ran(server)
    status, body = await send(server, raw("GET", HEALTH_PATH, f"Host: {host}"))
    assert_refused(status, body, 403, "--allow-host")
    status, body = await send(server, upgrade(f"Host: {host}"))
    assert_refused(status, body, 403, "Host")


async def test_a_request_without_host_is_refused(server: Server) -> None:
    """A request with no Host header (HTTP/1.0 allows it) cannot say where it was sent: 403."""
    request = raw("POST", RPC_PATH, JSON, body=SUBMIT).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    status, body = await send(server, request)
    assert_refused(status, body, 403, "Host")
    assert nothing_ran(server)


@pytest.mark.parametrize(
    "host", ["localhost", "LocalHost:1234", "127.0.0.1", "127.0.0.1:8765", "[::1]:8765", "[::1]"]
)
async def test_local_names_are_served(server: Server, host: str) -> None:
    """localhost, 127.0.0.1 and [::1], on any port, are this machine's names: served."""
    status, body = await send(server, raw("POST", RPC_PATH, f"Host: {host}", JSON, body=SUBMIT))
    assert status == 200, body
    assert body["result"]["status"] == "queued"


async def test_the_listen_address_is_a_local_name(start_server: StartServer) -> None:
    """The literal --host address is allowed too (here another loopback address)."""
    server = await start_server(host="127.0.0.3")
    status, _ = await send(server, raw("POST", RPC_PATH, "Host: 127.0.0.3:1", JSON, body=SUBMIT))
    assert status == 200


async def test_allow_host_adds_names_and_a_star_turns_the_check_off(
    start_server: StartServer,
) -> None:
    """--allow-host NAME lets NAME in and no other; `*` lets every name in."""
    named = await start_server(allow_hosts=("tasks.lan",))
    status, _ = await send(named, raw("POST", RPC_PATH, "Host: TASKS.lan:80", JSON, body=SUBMIT))
    assert status == 200
    status, body = await send(named, raw("POST", RPC_PATH, "Host: evil.example", JSON, body=SUBMIT))
    assert_refused(status, body, 403, "Host")
    anything = await start_server(allow_hosts=("*",))
    status, _ = await send(anything, raw("POST", RPC_PATH, "Host: evil.example", JSON, body=SUBMIT))
    assert status == 200


async def test_with_a_token_the_host_is_not_checked(start_server: StartServer) -> None:
    """A page cannot know the token, so with one set any Host is served to whoever has it."""
    server = await start_server(token=TOKEN)
    auth = f"Authorization: Bearer {TOKEN}"
    status, _ = await send(
        server, raw("POST", RPC_PATH, "Host: tasks.lan", auth, JSON, body=SUBMIT)
    )
    assert status == 200


@pytest.mark.parametrize("token", [None, TOKEN])
@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://evil.example:8765", "http://localhost.evil.example", "null"],
)
async def test_a_foreign_origin_is_refused_with_or_without_a_token(
    start_server: StartServer, token: str | None, origin: str
) -> None:
    """A cross-site request or WebSocket upgrade from a web page gets 403 before anything runs."""
    server = await start_server(token=token)
    auth = [f"Authorization: Bearer {TOKEN}"] if token else []
    headers = ["Host: 127.0.0.1", f"Origin: {origin}", *auth]
    status, body = await send(server, raw("POST", RPC_PATH, *headers, JSON, body=SUBMIT))
    assert_refused(status, body, 403, "Origin")
    assert nothing_ran(server)
    status, body = await send(server, upgrade(*headers))
    assert_refused(status, body, 403, "--allow-origin")


async def test_local_and_allowed_origins_are_served(start_server: StartServer) -> None:
    """An Origin on an allowed host, or one given with --allow-origin, is served."""
    server = await start_server(allow_origins=("https://app.example",))
    for origin in ("http://localhost:3000", "http://127.0.0.1:8765", "https://app.example"):
        headers = ["Host: 127.0.0.1", f"Origin: {origin}"]
        status, _ = await send(server, raw("POST", RPC_PATH, *headers, JSON, body=SUBMIT))
        assert status == 200, origin
        status, _ = await send(server, upgrade(*headers))
        assert status == 101, origin
    status, _ = await send(server, upgrade("Host: 127.0.0.1", "Origin: https://app.example:444"))
    assert status == 403


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/octet-stream",
    ],
)
async def test_a_body_not_declared_json_is_415(server: Server, content_type: str | None) -> None:
    """What a page can POST without a preflight (text/plain, forms) gets 415, and nothing runs."""
    headers = ["Host: 127.0.0.1"] + ([f"Content-Type: {content_type}"] if content_type else [])
    status, body = await send(server, raw("POST", RPC_PATH, *headers, body=SUBMIT))
    assert_refused(status, body, 415, "application/json")
    assert nothing_ran(server)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
async def test_json_with_parameters_is_accepted(server: Server, content_type: str) -> None:
    """application/json, with parameters such as charset, in any case, is served."""
    headers = ["Host: 127.0.0.1", f"Content-Type: {content_type}"]
    status, _ = await send(server, raw("POST", RPC_PATH, *headers, body=SUBMIT))
    assert status == 200


def gzip_bomb(megabytes: int) -> bytes:
    """A valid gzip stream of `megabytes` MiB of zeros: about a thousandth of that on the wire.

    One MiB is deflated once and its block repeated (a full flush makes each copy stand
    alone), so making 400 MiB costs 0.1 s of CPU, not the 1.5 s of deflating them all.
    """
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: gzip's frame is ours
    zeros = bytes(1 << 20)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(zeros, crc)
    last = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty final block
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name, no time
    trailer = struct.pack("<II", crc, (megabytes << 20) & 0xFFFFFFFF)
    return header + block * megabytes + last + trailer


def test_the_gzip_bomb_is_valid_gzip() -> None:
    """The bomb below inflates, with any gzip reader, to exactly its size in zeros."""
    assert gzip.decompress(gzip_bomb(3)) == bytes(3 << 20)


@pytest.mark.parametrize("token", [None, TOKEN])
async def test_a_gzip_bomb_is_refused_before_a_byte_is_inflated(
    start_server: StartServer, token: str | None
) -> None:
    """A compressed body is 415 (401 without the token) and costs no inflating CPU at all."""
    server = await start_server(token=token)
    bomb = gzip_bomb(400)  # 400 KiB that inflate to 400 MiB: about half a second of CPU
    headers = ["Host: 127.0.0.1", JSON, "Content-Encoding: gzip"]
    started = time.process_time()  # the server runs in this process: its CPU counts here
    status, body = await send(server, raw("POST", RPC_PATH, *headers, body=bomb))
    spent = time.process_time() - started
    if token is None:
        assert_refused(status, body, 415, "Content-Encoding")
    else:
        assert status == 401
    assert spent < 0.1, f"{spent:.3f} s of CPU: the body was inflated"
    assert nothing_ran(server)


@pytest.mark.parametrize(
    "encoding", ["gzip", "deflate", "br", "zstd", "identity, gzip", "x-custom", "GZIP"]
)
async def test_any_content_encoding_but_identity_is_415(server: Server, encoding: str) -> None:
    """Every encoding but identity is 415 with a JSON-RPC body, a corrupt one too (never a 500)."""
    headers = ["Host: 127.0.0.1", JSON, f"Content-Encoding: {encoding}"]
    status, body = await send(server, raw("POST", RPC_PATH, *headers, body=b"\x1f\x8bcorrupt"))
    assert_refused(status, body, 415, "Content-Encoding")
    headers = ["Host: 127.0.0.1", JSON, "Content-Encoding: identity"]
    status, _ = await send(server, raw("POST", RPC_PATH, *headers, body=SUBMIT))
    assert status == 200


ORDER = [  # (token on the server, headers, expected status, what the message names)
    (None, ["Host: evil.example", EVIL_ORIGIN, "Content-Encoding: gzip"], 403, "Host"),
    (None, ["Host: 127.0.0.1", EVIL_ORIGIN, "Content-Encoding: gzip"], 403, "Origin"),
    (TOKEN, ["Host: evil.example", EVIL_ORIGIN, "Content-Encoding: gzip"], 403, "Origin"),
    (TOKEN, ["Host: evil.example", "Content-Type: text/plain", "Content-Encoding: br"], 401, ""),
    (None, ["Host: localhost", "Content-Type: text/plain"], 415, "Content-Type"),
    (None, ["Host: localhost", JSON, "Content-Encoding: gzip"], 415, "Content-Encoding"),
    (TOKEN, ["Host: a", f"Authorization: Bearer {TOKEN}", JSON, "Content-Encoding: br"], 415, ""),
    (TOKEN, ["Host: a", f"Authorization: Bearer {TOKEN}", JSON], 413, "limit"),
]


@pytest.mark.parametrize(("token", "headers", "expected", "says"), ORDER)
async def test_the_gate_answers_in_order_without_reading_the_body(
    start_server: StartServer, token: str | None, headers: list[str], expected: int, says: str
) -> None:
    """Host, Origin, token, encoding, size: the first that fails answers, and no body is read.

    Only the head is sent, announcing a body larger than the limit: the answer comes anyway.
    """
    server = await start_server(token=token, max_body_bytes=1000)
    status, body = await send(server, raw("POST", RPC_PATH, *headers, length=10_000_000))
    assert status == expected, body
    assert says in body["error"]["message"]


async def test_health_without_the_token_says_only_ok(start_server: StartServer) -> None:
    """A probe needs no secret: /healthz without the token is {"status": "ok"}, no details."""
    server = await start_server(token=TOKEN)
    await server.store.submit("repeat", "secret text")
    status, body = await send(server, raw("GET", HEALTH_PATH, "Host: 127.0.0.1"))
    assert (status, body) == (200, {"status": "ok"})
    status, body = await send(
        server, raw("GET", HEALTH_PATH, "Host: 127.0.0.1", "Authorization: x")
    )
    assert (status, body) == (200, {"status": "ok"})
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(server.url + HEALTH_PATH) as reply,
    ):
        details = await reply.json()
    assert details["status"] == "ok"
    assert details["queued"] + details["running"] == 1


async def test_health_without_the_token_still_reports_a_dead_worker(
    start_server: StartServer,
) -> None:
    """Without the token a stopped worker is still a 503, with nothing but the status."""
    from backend.app import WORKER

    server = await start_server(token=TOKEN)
    server.app[WORKER].cancel()
    await until(lambda: server.app[WORKER].done(), what="the worker to stop")
    status, body = await send(server, raw("GET", HEALTH_PATH, "Host: 127.0.0.1"))
    assert (status, body) == (503, {"status": "error"})


async def exchange(server: Server, request: bytes) -> tuple[int, dict[str, str], Any]:
    """Send `request` on a fresh connection: the status, the headers (names in lower case)
    and the body as JSON."""
    reader, writer = await connect(server)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            fields = [line.split(": ", 1) for line in head[1:] if ": " in line]
            headers = {name.lower(): value for name, value in fields}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        await close(writer)
    return int(head[0].split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(
    "encoding", ["identity,identity", "identity, ", ",identity", "Identity ,, IDENTITY"]
)
async def test_a_content_encoding_list_of_identity_is_accepted(
    server: Server, encoding: str
) -> None:
    """Content-Encoding is a comma-separated list with empty elements allowed (RFC 9110 5.6.1):
    identity, once or more, is no encoding at all, so the body is served."""
    headers = ["Host: 127.0.0.1", JSON, f"Content-Encoding: {encoding}"]
    status, body = await send(server, raw("POST", RPC_PATH, *headers, body=SUBMIT))
    assert status == 200, body
    assert body["result"]["status"] == "queued"


HOST_REFUSAL = (
    "Host 'evil.example:80' is not one of this server's names: without a token it answers "
    "only requests sent to localhost, 127.0.0.1, [::1] or its --host address; "
    "start it with --allow-host NAME to allow another"
)
ORIGIN_REFUSAL = (
    "Origin 'https://evil.example' is another web site: pages from it may not use this "
    "server; start it with --allow-origin URL to let a browser app in"
)
ENCODING_REFUSAL = (
    "Content-Encoding 'identity, gzip, br' is not accepted: "
    "send the body uncompressed (or 'identity')"
)
TYPE_REFUSAL = (
    "Content-Type 'Text/Plain; charset=utf-8' is not accepted: "
    "send 'Content-Type: application/json'"
)
REFUSALS = [  # (token on the server, headers, status, the whole message)
    (None, ["Host: evil.example:80", JSON], 403, HOST_REFUSAL),
    (None, ["Host: localhost", EVIL_ORIGIN, JSON], 403, ORIGIN_REFUSAL),
    (
        None,
        ["Host: localhost", JSON, "Content-Encoding: identity", "Content-Encoding: gzip,BR"],
        415,
        ENCODING_REFUSAL,
    ),
    (None, ["Host: localhost", "Content-Type: Text/Plain; charset=utf-8"], 415, TYPE_REFUSAL),
]


@pytest.mark.parametrize(("token", "headers", "expected", "message"), REFUSALS)
async def test_each_refusal_is_typed_json_and_says_exactly_what_to_send(
    start_server: StartServer, token: str | None, headers: list[str], expected: int, message: str
) -> None:
    """Each refusal of the gate: its status, application/json, and the whole message, which
    quotes what was sent (every Content-Encoding header's codings, in order, comma-separated)."""
    server = await start_server(token=token)
    status, fields, body = await exchange(server, raw("POST", RPC_PATH, *headers, body=SUBMIT))
    assert (status, fields["content-type"]) == (expected, "application/json")
    assert body == {
        "jsonrpc": "2.0",
        "error": {"code": ErrorCode.INVALID_REQUEST, "message": message},
        "id": None,
    }
    assert nothing_ran(server)


@pytest.mark.parametrize("authorization", [[], [f"Authorization: Bearer {TOKEN}x"]])
async def test_a_missing_or_wrong_token_is_a_typed_401_that_names_the_header(
    start_server: StartServer, authorization: list[str]
) -> None:
    """Without the right `Authorization` (none, or a token with a character more)
    the answer is 401, application/json, a WWW-Authenticate challenge, and the exact header
    to send."""
    server = await start_server(token=TOKEN)
    headers = ["Host: 127.0.0.1", *authorization, JSON]
    status, fields, body = await exchange(server, raw("POST", RPC_PATH, *headers, body=SUBMIT))
    assert (status, fields["content-type"]) == (401, "application/json")
    assert fields["www-authenticate"] == 'Bearer realm="taskrpc"'
    assert body == {
        "jsonrpc": "2.0",
        "error": {
            "code": ErrorCode.UNAUTHORIZED,
            "message": "missing or wrong token: send the header 'Authorization: Bearer <token>'",
        },
        "id": None,
    }
    assert nothing_ran(server)


async def test_an_answer_to_a_served_call_is_typed_json(server: Server) -> None:
    """A served call's answer is application/json, as every refusal is."""
    headers = ["Host: 127.0.0.1", JSON]
    status, fields, body = await exchange(server, raw("POST", RPC_PATH, *headers, body=SUBMIT))
    assert (status, fields["content-type"]) == (200, "application/json")
    assert body["result"]["status"] == "queued"
