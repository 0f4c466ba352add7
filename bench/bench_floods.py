"""Floods (issue 8): the longest /healthz answer under each flood, and the worst-case RSS.

Stall: a probe thread asks `/healthz` over one keep-alive connection every 5 ms and keeps
the slowest answer; the baseline is the same probe on the idle server, in this run. An
answer waits for whatever holds the event loop, so the slowest answer bounds the longest
stall from above (it adds a round trip and this machine's scheduling noise).

Memory: RSS of a server at the default limits with the queue full of the costliest texts
(10 000 emoji each, 4 bytes a code point, until --max-queued-chars; then 1-character jobs
until --max-queued), every text sent back once (`status`); and, on a second server at time
scale 0, the finished results kept at their limits (--max-finished, --max-kept-chars),
every result read once. The worst case is the first's RSS plus the second's growth.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from bench.common import HOST, Row, Rpc, Server, log

JOBS = 100_000
WAITS = 50_000
TARGET = 0.1  # seconds: the slowest /healthz answer allowed during a flood
BIG = "😀" * 10_000  # the costliest text the defaults allow: 10 000 code points of 4 bytes
BIG_PER_BATCH = 8  # 8 x 120 KB (json.dumps writes an emoji as two \\u escapes) < 1 MiB
MEMORY_BOUND = 2 * 2**30
QUEUED_CHARS = 100_000_000  # the default --max-queued-chars
RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection


class Probe:
    """Times GET /healthz over one keep-alive connection, in a thread, while running."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection(HOST, port, timeout=60)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.worst = 0.0
        self.count = 0

    def __enter__(self) -> Probe:
        self._ask()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        self._connection.close()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.worst = max(self.worst, self._ask())
            self.count += 1

    def _ask(self) -> float:
        started = time.perf_counter()
        self._connection.request("GET", "/healthz")
        self._connection.getresponse().read()
        return time.perf_counter() - started


def _request(method: str, params: Any, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}


def _fill(rpc: Rpc, count: int, text: str = "flood job", batch: int = 1000) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        size = min(batch, count - len(ids))
        answers = rpc.post([_request("submit", ["reverse", text], n) for n in range(size)])
        ids += [answer["result"]["id"] for answer in answers if "result" in answer]
        if len(answers) != size or any("error" in answer for answer in answers):
            break  # a limit was reached
    return ids


def _flood_row(what: str, worst: float, idle: float, note: str = "") -> Row:
    return Row(
        f"floods: slowest /healthz during {what}",
        f"{worst * 1000:.0f} ms",
        f"{idle * 1000:.0f} ms idle",
        worst / idle if idle else None,
        f"< {TARGET * 1000:.0f} ms",
        worst < TARGET,
        note,
    )


def _idle(port: int) -> float:
    with Probe(port) as probe:
        time.sleep(1.0)
    return probe.worst


def _waits(rows: list[Row], max_waiters: int | None = None) -> None:
    """50 clients send 1 000 waits each, then vanish; at the default --max-waiters 10 000 are
    held (the rest answered -32008), with --max-waiters 50000 all of them."""
    extra = () if max_waiters is None else ("--max-waiters", str(max_waiters))
    held = f"{max_waiters or 10_000:,} held" + ("" if max_waiters else ", the default limit")
    with Server.taskrpc("--time-scale", "1000", *extra) as server:
        rpc = Rpc(server.port)
        (job_id,) = _fill(rpc, 1)
        idle = _idle(server.port)
        body = json.dumps([_request("wait", [job_id, 120], n) for n in range(1000)]).encode()
        head = b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        log(f"floods: {WAITS:,} waits on 50 connections")
        clients = []
        with Probe(server.port) as holding:
            for _ in range(WAITS // 1000):
                client = socket.create_connection((HOST, server.port))
                client.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                clients.append(client)
            _until(lambda: _busy(rpc, job_id), "the waits to be held")
            time.sleep(1.0)  # the refused ones, if any, are answered meanwhile
        with Probe(server.port) as dropping:
            started = time.perf_counter()
            rpc.call("submit", type="reverse", data="one more")
            submit = time.perf_counter() - started
            for client in clients:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
                client.close()  # a reset: the clients are gone
            _until(lambda: not _busy(rpc, job_id), "the waits to be dropped")
            time.sleep(0.5)
        rpc.close()
    rows.append(_flood_row(f"{WAITS:,} waits arriving (50 x 1 000; {held})", holding.worst, idle))
    rows.append(
        _flood_row(
            f"those waits dropped at once ({held})",
            dropping.worst,
            idle,
            f"a submit with them held: {submit * 1000:.0f} ms",
        )
    )


def _busy(rpc: Rpc, job_id: str) -> bool:
    answer = rpc.post(_request("wait", [job_id, 0]))
    return "error" in answer and answer["error"]["code"] == -32008


def _until(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _full_server_floods(rows: list[Row]) -> None:
    with Server.taskrpc("--time-scale", "1000") as server:
        rpc = Rpc(server.port)
        log(f"floods: submitting {JOBS:,} jobs")
        _fill(rpc, JOBS)
        idle = _idle(server.port)
        with Probe(server.port) as probe:
            asyncio.run(_subscribes(server.port))
        what = "16 pipelined subscribe, limit 20 000, 100 000 jobs"
        rows.append(_flood_row(what, probe.worst, idle))
        with Probe(server.port) as probe:
            answers = rpc.post([_request("list", {"cursor": "1"}, n) for n in range(1000)])
            assert len(answers) == 1000
        rows.append(_flood_row('a batch of 1 000 list, cursor "1"', probe.worst, idle))
        with Probe(server.port) as probe, _connections(server.port, 1500):
            time.sleep(1.0)
        rows.append(_flood_row("1 500 connections at once (cap 1 000)", probe.worst, idle))
        rpc.close()


async def _subscribes(port: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://{HOST}:{port}/ws", max_msg_size=0) as ws,
    ):
        for n in range(16):
            await ws.send_str(json.dumps(_request("subscribe", {"limit": 20_000}, n)))
        answers = 0
        while answers < 16:
            message = await ws.receive(timeout=120)
            answers += message.data.startswith('{"jsonrpc":"2.0","result"')


@contextlib.contextmanager
def _connections(port: int, count: int) -> Iterator[None]:
    sockets = []
    try:
        for n in range(count):
            flood = socket.socket()
            flood.setblocking(False)
            flood.connect_ex((HOST, port))
            sockets.append(flood)
            if n % 3 == 0:
                with contextlib.suppress(OSError):
                    flood.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        yield
    finally:
        for flood in sockets:
            flood.close()


def _memory(rows: list[Row]) -> None:
    with Server.taskrpc("--time-scale", "1000") as server:
        rpc = Rpc(server.port)
        before = server.rss()
        log("memory: filling the queue with the costliest texts")
        # As many costliest texts as leave room for one character per remaining job.
        big = _fill(rpc, (QUEUED_CHARS - JOBS) // len(BIG), BIG, batch=BIG_PER_BATCH)
        small = _fill(rpc, JOBS - len(big), "x")
        for start in range(0, len(big), BIG_PER_BATCH):  # each text sent back once
            chunk = big[start : start + BIG_PER_BATCH]
            rpc.post([_request("status", [job_id], n) for n, job_id in enumerate(chunk)])
        queue_rss = server.rss()
        rpc.close()
    with Server.taskrpc("--time-scale", "0") as server:
        rpc = Rpc(server.port)
        kept_before = server.rss()
        log("memory: filling the kept results")
        done = _fill(rpc, 10_000, BIG, batch=BIG_PER_BATCH)
        _until(lambda: _all_done(rpc, done[-1]), "the jobs to run")
        for start in range(0, len(done), BIG_PER_BATCH):  # every kept result read once
            chunk = done[start : start + BIG_PER_BATCH]
            rpc.post([_request("result", [job_id], n) for n, job_id in enumerate(chunk)])
        kept_growth = server.rss() - kept_before
        rpc.close()
    worst = queue_rss + kept_growth
    rows.append(
        Row(
            "memory: worst-case RSS at the default limits (full queue + kept results)",
            f"{worst / 2**20:,.0f} MiB",
            f"{before / 2**20:.0f} MiB empty",
            None,
            f"≤ {MEMORY_BOUND / 2**30:.0f} GiB",
            worst <= MEMORY_BOUND,
            f"queue: {len(big):,} texts of 10 000 emoji + {len(small):,} of 1 char, "
            f"{queue_rss / 2**20:,.0f} MiB; kept results +{kept_growth / 2**20:,.0f} MiB",
        )
    )


def _all_done(rpc: Rpc, last: str) -> bool:
    return bool(rpc.call("status", id=last)["status"] == "done")


def rows() -> list[Row]:
    result: list[Row] = []
    _waits(result)
    _waits(result, WAITS)
    _full_server_floods(result)
    _memory(result)
    return result
