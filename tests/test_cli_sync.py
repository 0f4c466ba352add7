"""The client library's details a script relies on: default page size, error attributes and
words, and HTTP framings (the transports `cli.sync` and `cli.http1`, and `cli.client`)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import cli.client
import cli.rpc
from backend.protocol import AlreadyFinished, JobStatus, Method, Unauthorized
from cli.client import Client, failed
from cli.rpc import Call, Calls, TimedOut, base_url, decode
from cli.sync import Disconnected, NotTaskrpc, SyncClient, TransportError, Unreachable
from tests.conftest import Server, StartServer, stand_in, until
from tests.test_cli_api import RawHttp, Recorder, ok, raw_types, recording, types_at
from tests.test_pinned_cli import dropping_server
from tests.threaded import ThreadedServer, hold_a_wait, server_in_thread

TOKEN = "s3cret-token"


@pytest.fixture
def slow() -> Iterator[ThreadedServer]:
    """A server where no job finishes during a test."""
    with server_in_thread(1000.0) as server:
        yield server


def test_a_page_is_100_jobs_by_default(slow: ThreadedServer) -> None:
    """jobs() without a limit: the 100 newest, and a cursor to the rest (both clients); the
    async client's status filter."""
    with SyncClient(slow.url) as client:
        for n in range(101):
            client.submit("reverse", f"t{n}")
        jobs, counts, cursor = client.jobs()
        built, _, _ = client.run(Calls.list())
    assert len(jobs) == len(built) == 100
    assert sum(counts.values()) == 101
    assert cursor is not None

    async def pages() -> tuple[int, list[str]]:
        async with Client(slow.url) as client:
            jobs, _, _ = await client.jobs()
            running, _, _ = await client.jobs(JobStatus.RUNNING)
            return len(jobs), [job["status"] for job in running]

    assert asyncio.run(pages()) == (100, ["running"])


def test_unreachable_says_why_in_lower_case() -> None:
    """Unreachable carries the URL and the system's reason, as a clause: '(connection refused)'."""
    with SyncClient("http://127.0.0.1:9") as client, pytest.raises(Unreachable) as caught:
        client.types()
    assert str(caught.value) == (
        "cannot reach http://127.0.0.1:9 — is taskrpc-server running? (connection refused)"
    )
    assert caught.value.url == "http://127.0.0.1:9"


def test_an_error_without_any_text_is_named_by_its_class() -> None:
    """cli.sync._reason: an OSError with neither strerror nor text reads as its class name."""
    from cli.sync import _reason

    assert _reason(ConnectionResetError()) == "ConnectionResetError"


async def test_not_taskrpc_names_the_url() -> None:
    """NotTaskrpc carries the URL that answered, for a script to report."""
    async with stand_in(recording(Recorder())) as url:
        with pytest.raises(NotTaskrpc) as caught:
            await asyncio.to_thread(types_at, f"{url}/other")
    assert caught.value.url == f"{url}/other"


async def test_chunks_ended_by_a_bare_newline_are_read() -> None:
    """A chunked answer whose lines end in LF alone (tolerated, as http.client does) is read."""
    body = ok("[3]", 1)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\n%s\n0\n\n" % (
        len(body),
        body,
    )
    assert await raw_types(RawHttp(chunked)) == [[3]]


# -- the async client (the dashboard's transport) ------------------------------------------


async def test_async_client_calls(server: Server) -> None:
    """Client: submit, status, wait, result, cancel, types and a raw call, against the server."""
    async with Client(f"{server.url}/rpc/") as client:
        assert client.url == server.url
        job = await client.submit("reverse", "кот")
        assert (await client.status(job["id"]))["id"] == job["id"]
        done = await client.wait(job["id"], 10)
        assert done["status"] == "done"
        assert await client.result(job["id"]) == "ток"
        assert [t["name"] for t in await client.types()] == ["reverse", "swap", "repeat"]
        assert [t["code"] for t in await client.call(Method.TYPES)] == [1, 2, 3]
        assert (await client.call(Method.STATUS, {"id": job["id"]}))["status"] == "done"
        with pytest.raises(AlreadyFinished):
            await client.cancel(job["id"])
        health = await client.health()
    assert health["status"] == "ok"


async def test_async_client_outside_its_block_says_so(server: Server) -> None:
    """Using a Client outside `async with` is a clear error, not an AttributeError."""
    client = Client(server.url)
    said = r"^use the client inside 'async with'$"
    for attempt in (client.types(), client.health()):
        with pytest.raises(RuntimeError, match=said):
            await attempt
    with pytest.raises(RuntimeError, match=said):
        client.subscribe()
    async with client:
        assert client.subscribe().limit == 1000  # the first snapshot's size, by default
        async with client.subscribe() as feed:  # on this client's session, at its URL
            assert feed.snapshot is not None
            assert feed.url == server.url
    with pytest.raises(RuntimeError, match=said):
        await client.types()  # closed again at the end of the block


async def test_a_subscription_asks_for_its_limit(server: Server) -> None:
    """The first snapshot holds at most the subscription's `limit` jobs, the newest."""
    async with Client(server.url) as client:
        jobs = [await client.submit("reverse", str(n)) for n in range(3)]
        async with client.subscribe(limit=2) as feed:
            assert feed.snapshot is not None
            assert [job["id"] for job in feed.snapshot["jobs"]] == [jobs[2]["id"], jobs[1]["id"]]


async def test_async_client_errors_are_transport_errors() -> None:
    """Nothing listening: Unreachable with the reason; a page that is not JSON-RPC: NotTaskrpc;
    a connection dropped mid-call: Disconnected."""
    async with Client("http://127.0.0.1:9") as client:
        with pytest.raises(Unreachable) as caught:
            await client.types()
    assert str(caught.value) == (
        "cannot reach http://127.0.0.1:9 — is taskrpc-server running? "
        "(Connect call failed ('127.0.0.1', 9))"
    )
    async with stand_in(recording(Recorder())) as url, Client(f"{url}/other") as client:
        with pytest.raises(NotTaskrpc) as not_taskrpc:
            await client.types()
    assert str(not_taskrpc.value) == (
        f"{url}/other answered HTTP 404, not JSON-RPC: is {url}/other a taskrpc server?"
    )
    async with dropping_server() as url, Client(url) as client:
        with pytest.raises(Disconnected, match=r"closed the connection \(is the server stopping"):
            await client.types()


async def test_async_client_sends_the_token(start_server: StartServer) -> None:
    """Client(token=...) sends the bearer token; without it the server refuses, with advice."""
    server = await start_server(token=TOKEN)
    async with Client(server.url, TOKEN) as client:
        assert len(await client.types()) == 3
        health = await client.health()
    assert health["queued"] == 0  # the details only the token shows
    async with Client(server.url) as client:
        with pytest.raises(Unauthorized, match="pass --token-file"):
            await client.types()


async def test_async_pages_follow_the_cursor(start_server: StartServer) -> None:
    """Client.jobs with a cursor reads the page after it."""
    server = await start_server(time_scale=1000.0)
    async with Client(server.url) as client:
        ids = [(await client.submit("reverse", f"t{n}"))["id"] for n in range(3)]
        first, _, cursor = await client.jobs(limit=2)
        rest, _, end = await client.jobs(limit=2, cursor=cursor)
    assert [job["id"] for job in first + rest] == ids[::-1]
    assert end is None


async def test_async_wait_and_follow(start_server: StartServer) -> None:
    """wait(seen=...) answers at once when the job already differs from what was seen;
    follow takes a job or its id and stops at its timeout."""
    server = await start_server(time_scale=1000.0)
    async with Client(server.url) as client:
        await client.submit("reverse", "a")
        job = await client.submit("reverse", "b")
        stale = {**job, "position": 5}
        began = asyncio.get_running_loop().time()
        now = await client.wait(job["id"], 10, seen=stale)  # type: ignore[arg-type]
        assert asyncio.get_running_loop().time() - began < 5
        assert now["position"] == 1
        for given in (job, job["id"]):
            began = asyncio.get_running_loop().time()
            seen = [change["status"] async for change in client.follow(given, timeout=0.3)]
            assert 0.3 <= asyncio.get_running_loop().time() - began < 5
            assert seen == ["queued"]


async def test_async_follow_tells_of_a_busy_server_and_its_end(
    start_server: StartServer,
) -> None:
    """follow(on_busy=...) hears each pause while the server is busy, then None once it
    answers again; never anything from a server that was not busy."""
    server = await start_server(time_scale=1000.0, max_waiters=1)
    heard: list[float | None] = []
    async with Client(server.url) as client:
        job = await client.submit("reverse", "a")
        holder = asyncio.create_task(client.wait(job["id"], 0.5))
        await until(lambda: server.store.waiting == 1, what="the held wait")
        async for _ in client.follow(job["id"], timeout=2.0, on_busy=heard.append):
            pass
        await holder
        assert heard[0] == 0.25
        assert heard[-1] is None  # answers came again
        pairs = itertools.pairwise(heard)
        assert all(not (a is None and b is None) for a, b in pairs)  # None ends a busy spell
        quiet: list[float | None] = []
        other = await client.submit("reverse", "b")
        async for _ in client.follow(other["id"], timeout=0.3, on_busy=quiet.append):
            pass
        assert quiet == []


def test_sync_wait_and_follow(slow: ThreadedServer) -> None:
    """SyncClient: wait(seen=...) answers at once when the job differs from what was seen and
    holds its timeout when it does not; follow takes a job or its id and stops at its timeout."""
    with SyncClient(slow.url) as client:
        client.submit("reverse", "a")
        job = client.submit("reverse", "b")  # queued behind the first, and stays there
        began = time.monotonic()
        assert client.wait(job["id"], 10, seen={**job, "position": 5})["position"] == 1
        assert time.monotonic() - began < 5
        assert client.call(Method.STATUS, {"id": job["id"]}) == job
        began = time.monotonic()
        assert client.wait(job["id"], 0.3, seen=job) == job
        assert 0.3 <= time.monotonic() - began < 5
        for given in (job, job["id"]):
            began = time.monotonic()
            seen = [change["status"] for change in client.follow(given, timeout=0.3)]
            assert 0.3 <= time.monotonic() - began < 5
            assert seen == ["queued"]


def test_sync_follow_tells_of_a_busy_server_and_its_end() -> None:
    """SyncClient.follow(on_busy=...) hears each pause while the server is busy, then None
    once it answers again; never anything from a server that was not busy."""
    heard: list[float | None] = []
    with server_in_thread(1000.0, max_waiters=1) as server, SyncClient(server.url) as client:
        job = client.submit("reverse", "a")
        holder = hold_a_wait(server, job["id"])
        for _ in client.follow(job["id"], timeout=2.0, on_busy=heard.append):
            pass
        holder.join(10)
        assert heard[0] == 0.25
        assert heard[-1] is None  # answers came again
        assert all(not (a is None and b is None) for a, b in itertools.pairwise(heard))
        quiet: list[float | None] = []
        other = client.submit("reverse", "b")
        for _ in client.follow(other["id"], timeout=0.3, on_busy=quiet.append):
            pass
        assert quiet == []


HOLD = 0.6  # seconds the stand-in below holds an answer: past a call's timeout of 0.2 s


def holding() -> web.Application:
    """A stand-in that answers every call with `[]`, and /healthz with `{}`, after HOLD s."""

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(HOLD)
        return web.json_response({"jsonrpc": "2.0", "result": [], "id": body["id"]})

    async def health(request: web.Request) -> web.Response:
        await asyncio.sleep(HOLD)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/rpc", answer)
    app.router.add_get("/healthz", health)
    return app


def _sync_calls(url: str, wait: float) -> tuple[Any, str]:
    """A call the server may hold `wait` s and a long poll as long (their answers), then a
    plain call (the error it ends in)."""
    with SyncClient(url) as client:
        held = client.call(Method.TYPES, None, wait=wait), client.wait("any", wait)
        try:
            client.call(Method.TYPES)
        except TransportError as exc:
            return held, str(exc)
    return held, "no error"


async def test_a_call_gives_up_at_its_timeout_unless_it_may_be_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both clients give up on a call after CALL_TIMEOUT s (/healthz after HEALTH_TIMEOUT s);
    a call the server may hold for `wait` s gets that much more."""
    monkeypatch.setattr(cli.rpc, "CALL_TIMEOUT", 0.2)
    monkeypatch.setattr(cli.client, "HEALTH_TIMEOUT", 0.2)
    async with stand_in(holding()) as url, Client(url) as client:
        assert await asyncio.wait_for(client.call(Method.TYPES, None, wait=1.5), 10) == []
        waited: Any = await asyncio.wait_for(client.wait("any", 1.5), 10)  # the stand-in's []
        assert waited == []
        with pytest.raises(TimedOut) as plain:
            await asyncio.wait_for(client.call(Method.TYPES), 10)
        assert str(plain.value) == f"{url} did not answer within 0.2 s"
        held, error = await asyncio.to_thread(_sync_calls, url, 1.5)
        assert held == ([], [])
        assert error == f"{url} did not answer within 0.2 s"
        with pytest.raises(TimedOut) as health:
            await asyncio.wait_for(client.health(), 10)
        assert str(health.value) == f"{url} did not answer within 0.2 s"


def test_the_base_url_drops_trailing_slashes_and_the_rpc_path_only() -> None:
    """`--url` may be the README's curl URL: `/rpc` and trailing slashes go, nothing else."""
    for given, base in [
        ("http://h:1", "http://h:1"),
        ("http://h:1//", "http://h:1"),
        ("http://h:1/rpc", "http://h:1"),
        ("http://h:1/rpc/", "http://h:1"),
        ("http://h:1/taskrpc/rpc", "http://h:1/taskrpc"),
        ("http://h:1/X/", "http://h:1/X"),
        ("http://h:1/rpcX", "http://h:1/rpcX"),
    ]:
        assert base_url(given) == base, given


def test_only_a_wait_is_given_more_than_a_calls_time() -> None:
    """Every call gets CALL_TIMEOUT s, and a wait its own timeout more: the server holds a
    wait's answer back, and nothing else's."""
    plain: list[Call[Any]] = [Calls.submit(1, "a"), Calls.status("a"), Calls.result("a")]
    plain += [Calls.cancel("a"), Calls.list(), Calls.types()]
    assert {call.timeout for call in plain} == {cli.rpc.CALL_TIMEOUT}
    assert Calls.wait("a", 30).timeout == cli.rpc.CALL_TIMEOUT + 30


def test_json_that_is_not_json_rpc_is_named_by_the_status_it_came_with() -> None:
    """An answer that is JSON but not a JSON-RPC response: NotTaskrpc naming its HTTP status."""
    url = "http://127.0.0.1:1"
    with pytest.raises(NotTaskrpc) as caught:
        decode(502, b'{"detail": "bad gateway"}', url)
    assert str(caught.value) == (
        f"{url} answered HTTP 502, not JSON-RPC: is {url} a taskrpc server?"
    )


def test_a_failure_is_named_by_its_words_or_else_by_its_kind() -> None:
    """The async client's error for a call an exception ended: what the exception says, or
    its class's name when it says nothing."""
    url = "http://127.0.0.1:1"
    said = failed(url, aiohttp.ClientPayloadError("the body was cut short"))
    assert str(said) == f"talking to {url} failed: the body was cut short"
    assert str(failed(url, aiohttp.ClientPayloadError())) == (
        f"talking to {url} failed: ClientPayloadError"
    )


async def test_a_health_answer_that_is_not_an_object_is_empty() -> None:
    """health(): an answer that is JSON but not an object reads as no details."""
    from aiohttp import web

    async def listing(request: web.Request) -> web.Response:
        return web.json_response([1, 2])

    app = web.Application()
    app.router.add_get("/healthz", listing)
    async with stand_in(app) as url, Client(url) as client:
        assert await client.health() == {}
