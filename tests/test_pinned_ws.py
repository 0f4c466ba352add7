"""WebSocket behaviours that planted faults once slipped past (issue 14)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from backend import ws as ws_module
from backend.protocol import WS_PATH, ErrorCode, Notification, Snapshot, SocketMethod
from backend.ws import COALESCE, HUB, MAX_IN_FLIGHT, MAX_SNAPSHOT, Connection, Hub
from tests.conftest import Server, StartServer, until

SLOW = 1000.0  # time scale at which no job finishes during a test
# The hub does the same over any store; a memory-only submit takes microseconds, a journaled
# one waits for its commit (these tests submit hundreds or thousands of jobs one by one).
MEMORY = ":memory:"


@asynccontextmanager
async def subscribed(server: Server) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A raw socket that has subscribed and read its snapshot."""
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        await ws.send_json(
            {"jsonrpc": "2.0", "method": SocketMethod.SUBSCRIBE, "params": {"limit": 1}, "id": 1}
        )
        answer = await ws.receive_json(timeout=10)
        assert "result" in answer, answer
        yield ws


async def _read_until(
    ws: aiohttp.ClientWebSocketResponse, ids: set[str], seen: set[str]
) -> list[dict[str, Any]]:
    """Frames until every id in `ids` was in a `jobs.changed`; all frames read."""
    got: list[dict[str, Any]] = []
    while not ids <= seen:
        frame = await ws.receive_json(timeout=10)
        got.append(frame)
        if frame.get("method") == Notification.JOBS_CHANGED:
            seen.update(job["id"] for job in frame["params"]["jobs"])
    return got


async def test_a_burst_over_many_loop_turns_is_coalesced(start_server: StartServer) -> None:
    """200 submits spread over 200 loop turns reach a subscriber in about one frame per interval."""
    server = await start_server(time_scale=SLOW, db=MEMORY)
    async with subscribed(server) as ws:
        start = time.monotonic()
        ids: set[str] = set()
        for n in range(200):
            ids.add((await server.store.submit("swap", f"text {n}")).id)
            await asyncio.sleep(0)  # a new loop turn between two changes
        elapsed = time.monotonic() - start
        frames = await _read_until(ws, ids, set())
    changed = [f for f in frames if f.get("method") == Notification.JOBS_CHANGED]
    assert len(changed) <= math.ceil(elapsed / COALESCE) + 2, (len(changed), elapsed)


async def test_a_subscriber_that_reads_everything_is_never_told_to_resync(
    start_server: StartServer,
) -> None:
    """Many more bytes than the backlog limit, sent to a reader that keeps up: no resync."""
    server = await start_server(time_scale=SLOW, db=MEMORY)
    hub = server.app[HUB]
    hub.max_backlog = 20_000  # each round below sends ~6 KB; 20 rounds send ~120 KB
    seen: set[str] = set()
    frames: list[dict[str, Any]] = []
    async with subscribed(server) as ws:
        for round_ in range(20):
            ids = {(await server.store.submit("swap", f"r{round_} {n}")).id for n in range(20)}
            frames += await _read_until(ws, ids, seen)
    sent = sum(len(str(f)) for f in frames)
    assert sent > 2 * hub.max_backlog
    assert not [f for f in frames if f.get("method") == Notification.RESYNC]


async def test_an_auth_token_with_extra_characters_is_refused(start_server: StartServer) -> None:
    """`auth` with the token plus one character (or its prefix) is refused and the socket closed."""
    server = await start_server(token="s3cret")
    for wrong in ("s3cretx", "s3cret ", "s3cre", "xs3cret"):
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(server.url + WS_PATH) as ws,
        ):
            await ws.send_json(
                {"jsonrpc": "2.0", "method": SocketMethod.AUTH, "params": {"token": wrong}, "id": 1}
            )
            answer = await ws.receive_json(timeout=10)
            assert answer["error"]["code"] == ErrorCode.UNAUTHORIZED, wrong
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), wrong
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        await ws.send_json(
            {"jsonrpc": "2.0", "method": SocketMethod.AUTH, "params": {"token": "s3cret"}, "id": 1}
        )
        assert (await ws.receive_json(timeout=10))["result"] is True


def _padded(size: int) -> str:
    """A notification frame of exactly `size` characters."""
    head = '{"jsonrpc":"2.0","method":"pad","params":"'
    return head + "x" * (size - len(head) - 2) + '"}'


async def _settled(hub: Hub) -> Connection:
    """The one open socket, once its transport has sent everything written to it."""
    await until(lambda: len(hub.connections) == 1, what="one socket")
    (connection,) = hub.connections
    await until(lambda: connection._unsent() == 0, what="an empty transport buffer")
    return connection


async def test_a_notification_of_exactly_the_backlog_limit_is_sent_every_time(
    start_server: StartServer,
) -> None:
    """The bound is inclusive and counts only what is still queued: a notification of exactly
    max_backlog characters goes out after a subscribe, and again once the first went out."""
    server = await start_server(time_scale=SLOW)
    hub = server.app[HUB]
    hub.max_backlog = 10_000
    frame = _padded(hub.max_backlog)
    async with subscribed(server) as ws:
        for _ in range(2):
            (await _settled(hub)).notify(frame)
            assert await ws.receive_str(timeout=10) == frame


async def test_notifications_queued_together_add_up_against_the_backlog(
    start_server: StartServer,
) -> None:
    """Three notifications queued in one step count together: the third passes the limit, so
    all are dropped and the subscriber is told to resync."""
    server = await start_server(time_scale=SLOW)
    hub = server.app[HUB]
    hub.max_backlog = 3 * 1000 - 1
    async with subscribed(server) as ws:
        connection = await _settled(hub)
        for _ in range(3):
            connection.notify(_padded(1000))
        assert (await ws.receive_json(timeout=10))["method"] == Notification.RESYNC


async def test_requests_without_an_id_get_no_frame_and_hold_no_slot(
    start_server: StartServer,
) -> None:
    """Twice MAX_IN_FLIGHT notifications from the client are not answered and do not stop
    the socket: the request after them is answered, and it is the first frame."""
    server = await start_server(time_scale=SLOW)
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        for _ in range(2 * MAX_IN_FLIGHT):
            await ws.send_json({"jsonrpc": "2.0", "method": "types"})
        await ws.send_json({"jsonrpc": "2.0", "method": "types", "id": 9})
        assert (await ws.receive_json(timeout=10))["id"] == 9


async def test_a_socket_has_at_most_max_in_flight_requests_however_many_it_sent_before(
    start_server: StartServer,
) -> None:
    """After MAX_IN_FLIGHT answered requests, MAX_IN_FLIGHT waits still fill the socket's
    slots: the next request is read only once one of them is answered."""
    server = await start_server(time_scale=SLOW)
    hub = server.app[HUB]
    job = await server.store.submit("swap", "held")  # never finishes at this time scale
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        for n in range(MAX_IN_FLIGHT):
            await ws.send_json({"jsonrpc": "2.0", "method": "types", "id": n})
        assert (
            len([await ws.receive_json(timeout=10) for _ in range(MAX_IN_FLIGHT)]) == MAX_IN_FLIGHT
        )
        waits = set(range(100, 100 + MAX_IN_FLIGHT))
        for n in waits:
            params = {"id": job.id, "timeout": 60}
            await ws.send_json({"jsonrpc": "2.0", "method": "wait", "params": params, "id": n})
        await ws.send_json({"jsonrpc": "2.0", "method": "types", "id": 999})
        (connection,) = hub.connections
        await until(connection._slots.locked, what="every slot taken by a wait")
        await server.store.cancel(job.id)
        answers = [(await ws.receive_json(timeout=10))["id"] for _ in range(MAX_IN_FLIGHT + 1)]
    assert set(answers) == {*waits, 999}
    assert answers[0] != 999


async def test_a_peer_that_does_not_answer_pings_is_closed(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server pings every HEARTBEAT seconds and closes a socket whose peer never answers."""
    monkeypatch.setattr(ws_module, "HEARTBEAT", 0.05)
    server = await start_server()
    hub = server.app[HUB]
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(server.url + WS_PATH, autoping=False) as ws,
    ):
        assert (await ws.receive(timeout=10)).type is aiohttp.WSMsgType.PING
        await until(lambda: not hub.connections, what="the silent socket closed")


async def test_a_change_notification_is_a_json_rpc_2_notification(
    start_server: StartServer,
) -> None:
    """`jobs.changed` carries `"jsonrpc": "2.0"`, its method and params, and no id."""
    server = await start_server(time_scale=SLOW)
    async with subscribed(server) as ws:
        job = await server.store.submit("swap", "x")
        (frame,) = await _read_until(ws, {job.id}, set())
    assert frame["jsonrpc"] == "2.0"
    assert sorted(frame) == ["jsonrpc", "method", "params"]


async def test_subscribe_takes_a_limit_of_exactly_max_snapshot(start_server: StartServer) -> None:
    """`subscribe` with limit MAX_SNAPSHOT gets its snapshot; MAX_SNAPSHOT + 1 is refused."""
    server = await start_server(time_scale=SLOW)
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        for limit in (MAX_SNAPSHOT, MAX_SNAPSHOT + 1):
            params = {"limit": limit}
            await ws.send_json(
                {"jsonrpc": "2.0", "method": SocketMethod.SUBSCRIBE, "params": params, "id": 1}
            )
            answer = await ws.receive_json(timeout=10)
            if limit == MAX_SNAPSHOT:
                assert answer["result"]["limit"] == MAX_SNAPSHOT, answer
            else:
                assert answer["error"]["code"] == ErrorCode.INVALID_PARAMS, answer


class _HeldSnapshot:
    """Stands in for `hub.snapshot`: sends a notification to every socket while a snapshot
    is being built (after its subscribe dropped the older ones), then waits for `go`."""

    def __init__(self, hub: Hub, frame: str) -> None:
        self.hub = hub
        self.build = hub.snapshot
        self.frame = frame
        self.building = asyncio.Event()
        self.go = asyncio.Event()
        self.calls = 0

    async def __call__(self, limit: int) -> Snapshot:
        self.calls += 1
        if self.calls == 1:
            for connection in self.hub.connections:
                connection.notify(self.frame)
            self.building.set()
            await self.go.wait()
        return await self.build(limit)


def _subscribe(request_id: int) -> dict[str, Any]:
    """A `subscribe` request with the default limit."""
    return {"jsonrpc": "2.0", "method": SocketMethod.SUBSCRIBE, "params": {}, "id": request_id}


async def test_a_notification_during_a_snapshot_follows_its_answer_and_no_other(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change sent while a snapshot is built waits through other answers, then goes out
    right after the snapshot's answer."""
    server = await start_server(time_scale=SLOW)
    hub = server.app[HUB]
    held = _HeldSnapshot(hub, _padded(100))
    monkeypatch.setattr(hub, "snapshot", held)
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        await ws.send_json(_subscribe(1))
        await asyncio.wait_for(held.building.wait(), 10)
        await ws.send_json({"jsonrpc": "2.0", "method": "types", "id": 2})
        assert (await ws.receive_json(timeout=10))["id"] == 2
        held.go.set()
        assert (await ws.receive_json(timeout=10))["id"] == 1
        assert await ws.receive_str(timeout=10) == held.frame


async def test_a_notification_during_a_snapshot_is_superseded_by_the_next_one_asked(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a second subscribe waiting, a change held during the first snapshot is dropped:
    the second snapshot's answer follows the first's directly."""
    server = await start_server(time_scale=SLOW)
    hub = server.app[HUB]
    held = _HeldSnapshot(hub, _padded(100))
    monkeypatch.setattr(hub, "snapshot", held)
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        await ws.send_json(_subscribe(1))
        await asyncio.wait_for(held.building.wait(), 10)
        (connection,) = hub.connections
        await ws.send_json(_subscribe(2))
        await until(lambda: connection._building == 2, what="the second subscribe waiting")
        held.go.set()
        answers = [await ws.receive_json(timeout=10) for _ in range(2)]
    assert [answer.get("id") for answer in answers] == [1, 2]


async def test_a_snapshot_holds_the_newest_limit_jobs_only(start_server: StartServer) -> None:
    """`subscribe` with limit 2 over three jobs gets the newest two, and the total of three."""
    server = await start_server(time_scale=SLOW)
    ids = [(await server.store.submit("swap", f"job {n}")).id for n in range(3)]
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        params = {"limit": 2}
        await ws.send_json(
            {"jsonrpc": "2.0", "method": SocketMethod.SUBSCRIBE, "params": params, "id": 1}
        )
        snapshot = (await ws.receive_json(timeout=10))["result"]
    assert [job["id"] for job in snapshot["jobs"]] == ids[:0:-1]
    assert snapshot["total"] == 3


async def test_a_request_in_a_binary_frame_is_answered(start_server: StartServer) -> None:
    """A binary frame holding a UTF-8 JSON request, the first one included, is answered."""
    server = await start_server(token="s3cret")
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        auth = {"jsonrpc": "2.0", "method": SocketMethod.AUTH, "params": ["s3cret"], "id": 1}
        await ws.send_bytes(json.dumps(auth).encode())
        assert (await ws.receive_json(timeout=10))["result"] is True
        await ws.send_bytes(b'{"jsonrpc": "2.0", "method": "types", "id": "\xc3\xa9"}')
        assert (await ws.receive_json(timeout=10))["id"] == "é"


async def test_a_closed_subscriber_leaves_the_hub(start_server: StartServer) -> None:
    """A subscriber whose socket closes is no longer one the hub sends to."""
    server = await start_server(time_scale=SLOW, db=MEMORY)
    hub = server.app[HUB]
    async with subscribed(server):
        await until(lambda: len(hub.subscribers) == 1, what="the subscriber")
    await until(lambda: not hub.subscribers, what="the closed subscriber to leave")


async def test_a_message_over_max_body_bytes_closes_the_socket_as_too_big(
    start_server: StartServer,
) -> None:
    """The socket takes messages up to --max-body-bytes, as HTTP does: one byte more closes
    it with 1009 (message too big)."""
    server = await start_server(time_scale=SLOW, db=MEMORY, max_body_bytes=2000)
    call = {"jsonrpc": "2.0", "method": "types", "id": 1}
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + WS_PATH) as ws:
        padded = json.dumps({**call, "pad": ""})[:-1]

        def sized(size: int) -> str:  # the call, padded to exactly `size` bytes
            return padded + "x" * (size - len(padded) - 1) + "}"

        await ws.send_str(sized(2000))
        answer = await ws.receive(timeout=10)
        assert answer.type is aiohttp.WSMsgType.TEXT  # an answer (an error: "pad" is unknown)
        await ws.send_str(sized(2001))
        closing = await ws.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
