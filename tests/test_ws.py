"""GET /ws: JSON-RPC over a WebSocket, subscriptions, coalescing, slow subscribers, the token."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, cast

import aiohttp
import pytest

from backend.protocol import (
    WS_PATH,
    Changes,
    ErrorCode,
    JobStatus,
    Snapshot,
    SocketMethod,
    Unauthorized,
)
from backend.ws import HUB, Connection
from cli.client import Client
from tests.conftest import Server, StartServer, until

SLOW = 1000.0  # time scale at which no job finishes during a test
# The hub does the same over any store; a memory-only submit takes microseconds, a journaled
# one waits for its commit (these tests submit hundreds or thousands of jobs one by one).
MEMORY = ":memory:"


@pytest.fixture
def server(server_on_each_store: Server) -> Server:
    """Every socket test runs on each store: memory, the journal, and PostgreSQL."""
    return server_on_each_store


async def frames(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    """The next `count` JSON messages on `ws`."""
    return [await ws.receive_json(timeout=10) for _ in range(count)]


async def test_socket_answers_the_same_methods_as_http(server: Server) -> None:
    """A request and a batch sent on /ws get the answers /rpc would give."""
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        await ws.send_json({"jsonrpc": "2.0", "method": "submit", "params": [1, "abc"], "id": 7})
        (answer,) = await frames(ws, 1)
        assert answer["id"] == 7
        assert answer["result"]["status"] == JobStatus.QUEUED
        await ws.send_json(
            [
                {"jsonrpc": "2.0", "method": "status", "params": {"id": "nope"}, "id": 1},
                {"jsonrpc": "2.0", "method": "types", "id": 2},
            ]
        )
        batch: Any = await ws.receive_json(timeout=10)
        by_id = {item["id"]: item for item in batch}
        assert by_id[1]["error"]["code"] == ErrorCode.JOB_NOT_FOUND
        assert [t["name"] for t in by_id[2]["result"]] == ["reverse", "swap", "repeat"]
        await ws.send_str("{not json")
        (parse_error,) = await frames(ws, 1)
        assert parse_error["error"]["code"] == ErrorCode.PARSE_ERROR


async def test_subscribe_gives_a_snapshot_then_changes_in_order(server: Server) -> None:
    """The snapshot holds the existing jobs; each job's changes then arrive in order, seq by seq."""
    first = await server.store.submit("reverse", "old")
    async with Client(server.url) as client, client.subscribe(limit=10) as feed:
        assert feed.snapshot is not None
        assert [job["id"] for job in feed.snapshot["jobs"]] == [first.id]
        assert (
            feed.snapshot["counts"][JobStatus.QUEUED]
            + feed.snapshot["counts"][JobStatus.RUNNING]
            + feed.snapshot["counts"][JobStatus.DONE]
            == 1
        )
        new = [await server.store.submit("reverse", text) for text in ("a", "b")]
        seen: dict[str, list[str]] = {job.id: [] for job in new}
        seqs = [feed.snapshot["seq"]]
        async with asyncio.timeout(10):
            async for event in feed:
                assert "removed" in event, "no resync expected"
                seqs.append(event["seq"])
                for job in event["jobs"]:
                    if job["id"] in seen and job["status"] not in seen[job["id"]][-1:]:
                        seen[job["id"]].append(job["status"])
                if all(statuses[-1:] == [JobStatus.DONE] for statuses in seen.values()):
                    break
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    for statuses in seen.values():
        assert statuses[-1] == JobStatus.DONE
        order = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE]
        assert statuses == [s for s in order if s in statuses]  # never backwards


async def test_a_burst_is_coalesced_into_few_notifications(
    start_on_each_store: StartServer,
) -> None:
    """500 submits in a burst reach a subscriber as a handful of notifications, not 500."""
    server = await start_on_each_store(time_scale=SLOW)
    async with Client(server.url) as client, client.subscribe() as feed:
        burst = [server.store.submit("swap", f"text {n}") for n in range(500)]
        ids = {job.id for job in await asyncio.gather(*burst)}
        seen: set[str] = set()
        notifications = 0
        async with asyncio.timeout(10):
            async for event in feed:
                notifications += 1
                seen.update(job["id"] for job in event["jobs"])
                if ids <= seen:
                    break
    assert notifications <= 3


async def test_snapshot_limit_is_checked(server: Server) -> None:
    """`subscribe` refuses a limit out of range with invalid params."""
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        for limit in (0, "10", True, 10**9):
            await ws.send_json(
                {
                    "jsonrpc": "2.0",
                    "method": SocketMethod.SUBSCRIBE,
                    "params": {"limit": limit},
                    "id": 1,
                }
            )
            (answer,) = await frames(ws, 1)
            assert answer["error"]["code"] == ErrorCode.INVALID_PARAMS, limit


async def test_a_subscriber_that_never_reads_is_bounded_and_delays_no_one(
    start_server: StartServer,
) -> None:
    """A stuck subscriber's backlog stays bounded, then it must resync; others keep up."""
    server = await start_server(time_scale=SLOW, db=MEMORY)
    hub = server.app[HUB]
    hub.max_backlog = 8 * 1024
    async with Client(server.url) as client, client.subscribe() as slow:
        await until(lambda: len(hub.subscribers) == 1, what="the slow subscriber")
        (stuck,) = hub.subscribers
        _set_buffers(stuck, slow, 4096)
        async with client.subscribe() as fast:
            seen: set[str] = set()
            worst = 0
            for _ in range(8):  # 8 bursts of 150 submits: far more than the buffers hold
                burst = {(await server.store.submit("swap", "x" * 40)).id for _ in range(150)}
                async with asyncio.timeout(5):  # the fast one is never held up
                    while not burst <= seen:
                        event = await anext(fast)
                        seen.update(job["id"] for job in event["jobs"])
                worst = max(worst, stuck._backlog)
            assert worst <= hub.max_backlog
            assert stuck not in hub.subscribers, "the stuck subscriber was never cut off"
        _set_buffers(stuck, slow, 1 << 20)
        async with asyncio.timeout(10):  # reading again, it resyncs from a fresh snapshot
            while "removed" in (event := await anext(slow)):
                pass
        assert event["total"] == 1200
        assert stuck in hub.subscribers


def _set_buffers(connection: Connection, feed: Any, size: int) -> None:
    """Size the kernel buffers: small ones make a stuck reader block the server soon."""
    assert connection.ws._req is not None
    server_transport = connection.ws._req.transport
    client_transport = feed._ws._conn.transport
    for transport, option in (
        (server_transport, socket.SO_SNDBUF),
        (client_transport, socket.SO_RCVBUF),
    ):
        assert transport is not None
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, option, size)


async def test_token_in_the_header(start_server: StartServer) -> None:
    """With a token set, /ws accepts the Authorization header and refuses a missing one."""
    server = await start_server(token="s3cret")
    async with Client(server.url, token="s3cret") as client, client.subscribe() as feed:
        assert feed.snapshot is not None
    async with Client(server.url) as client:
        with pytest.raises(Unauthorized):
            async with client.subscribe():
                pass


@pytest.mark.parametrize(
    ("first", "accepted"),
    [
        (
            {"jsonrpc": "2.0", "method": SocketMethod.AUTH, "params": {"token": "s3cret"}, "id": 1},
            True,
        ),
        (
            {"jsonrpc": "2.0", "method": SocketMethod.AUTH, "params": {"token": "wrong"}, "id": 1},
            False,
        ),
        ({"jsonrpc": "2.0", "method": SocketMethod.SUBSCRIBE, "id": 1}, False),
    ],
)
async def test_token_in_the_first_message(
    start_server: StartServer, first: dict[str, Any], accepted: bool
) -> None:
    """Without the header, the first message must be `auth` with the right token, or it closes."""
    server = await start_server(token="s3cret")
    await server.store.submit("reverse", "private text")
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        await ws.send_json(first)
        (answer,) = await frames(ws, 1)
        if not accepted:
            assert answer["error"]["code"] == ErrorCode.UNAUTHORIZED
            assert "private" not in json.dumps(answer)
            closing = await ws.receive(timeout=10)
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert closing.data == aiohttp.WSCloseCode.POLICY_VIOLATION
            return
        assert answer["result"] is True
        await ws.send_json({"jsonrpc": "2.0", "method": SocketMethod.SUBSCRIBE, "id": 2})
        (snapshot,) = await frames(ws, 1)
        assert [job["preview"] for job in snapshot["result"]["jobs"]] == ["private text"]


async def test_resync_notification_makes_the_client_resubscribe(server: Server) -> None:
    """A `jobs.resync` from the server turns into a fresh snapshot in the client's feed."""
    async with Client(server.url) as client, client.subscribe() as feed:
        (connection,) = server.app[HUB].subscribers
        connection.hub.max_backlog = 0
        await server.store.submit("reverse", "overflow")  # its notification overflows at once
        async with asyncio.timeout(10):
            event: Changes | Snapshot = await anext(feed)
        assert "total" in event, "expected a snapshot"
        assert cast(Snapshot, event)["total"] == 1


async def test_socket_header_follows_the_http_rule(start_server: StartServer) -> None:
    """On /ws as on /rpc, only 'Bearer <token>' counts: a bare token in the header does not."""
    server = await start_server(token="s3cret")
    async with (
        aiohttp.ClientSession(headers={"Authorization": "s3cret"}) as session,
        session.ws_connect(server.url + WS_PATH) as ws,
    ):
        await ws.send_json({"jsonrpc": "2.0", "method": SocketMethod.SUBSCRIBE, "id": 1})
        (answer,) = await frames(ws, 1)
        assert answer["error"]["code"] == ErrorCode.UNAUTHORIZED


async def test_forgotten_jobs_are_reported_removed(start_on_each_store: StartServer) -> None:
    """When the server forgets finished jobs (max_finished), subscribers are told to drop them."""
    server = await start_on_each_store(time_scale=0.0, max_finished=2)
    async with Client(server.url) as client, client.subscribe() as feed:
        jobs = [await server.store.submit("reverse", str(n)) for n in range(5)]
        removed: set[str] = set()
        async with asyncio.timeout(10):
            while len(removed) < 3:
                event = await anext(feed)
                removed |= set(cast(Changes, event).get("removed", []))
    assert removed == {job.id for job in jobs[:3]}


async def test_sockets_past_max_subscribers_get_503(start_server: StartServer) -> None:
    """Past max_subscribers open sockets the upgrade is HTTP 503 (busy); a freed one works."""
    server = await start_server(max_subscribers=2)
    async with aiohttp.ClientSession() as session:
        first = await session.ws_connect(server.url + WS_PATH)
        second = await session.ws_connect(server.url + WS_PATH)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(server.url + WS_PATH)
        assert refused.value.status == 503
        async with session.get(server.url + WS_PATH, headers={"Upgrade": "websocket"}) as reply:
            assert reply.status == 503
            assert (await reply.json())["error"]["code"] == ErrorCode.SERVER_BUSY
        await first.close()
        await until(lambda: len(server.app[HUB].connections) == 1, what="the socket to close")
        third = await session.ws_connect(server.url + WS_PATH)
        await third.close()
        await second.close()


def _held_for(connection: Connection) -> int:
    """Characters queued for a socket plus bytes its transport has not sent yet."""
    transport = connection.ws._req.transport if connection.ws._req is not None else None
    unsent = transport.get_write_buffer_size() if transport is not None else 0
    return sum(len(frame) for frame, _ in connection._out) + unsent


async def test_the_backlog_counts_what_the_transport_has_not_sent(
    start_server: StartServer,
) -> None:
    """A subscriber whose unread snapshot fills its transport is cut off at the first change."""
    server = await start_server(time_scale=SLOW, db=MEMORY)
    hub = server.app[HUB]
    hub.max_backlog = 64 * 1024
    for n in range(5000):
        await server.store.submit("swap", f"job {n:05d} " + "x" * 30)
    async with Client(server.url) as client, client.subscribe(limit=1) as slow:
        await until(lambda: len(hub.subscribers) == 1, what="the slow subscriber")
        (stuck,) = hub.subscribers
        _set_buffers(stuck, slow, 4096)
        assert slow._ws is not None
        await slow._ws.send_json(
            {"jsonrpc": "2.0", "method": "subscribe", "params": [5000], "id": 9}
        )
        await until(lambda: _held_for(stuck) > hub.max_backlog, what="an unsent snapshot")
        await server.store.submit("swap", "one small change")  # a notification of about 400 bytes
        await until(lambda: stuck not in hub.subscribers, what="the stuck subscriber cut off")


async def test_pipelined_snapshots_do_not_pile_up_for_a_socket_that_does_not_read(
    start_server: StartServer,
) -> None:
    """16 subscribes from a socket that reads nothing hold one snapshot's worth, not 16."""
    server = await start_server(time_scale=SLOW, db=MEMORY)
    hub = server.app[HUB]
    for n in range(3000):
        await server.store.submit("swap", f"job {n:05d} " + "x" * 30)
    async with Client(server.url) as client, client.subscribe(limit=1) as slow:
        await until(lambda: len(hub.subscribers) == 1, what="the slow subscriber")
        (stuck,) = hub.subscribers
        _set_buffers(stuck, slow, 4096)
        assert slow._ws is not None
        for n in range(16):
            await slow._ws.send_json(
                {"jsonrpc": "2.0", "method": "subscribe", "params": [3000], "id": n}
            )
        await until(lambda: _held_for(stuck) > 500_000, what="the first snapshot")
        one = _held_for(stuck)
        worst = one
        for _ in range(20):  # a second of watching: the others wait for the first to be sent
            await asyncio.sleep(0.05)
            worst = max(worst, _held_for(stuck))
        assert worst < 2 * one, (one, worst)
