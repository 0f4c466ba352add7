"""A closed-loop HTTP/1.1 load generator over keep-alive connections, run as its own process.

`python -m bench.load --port P --body-file F --connections N --duration S --warmup W`
opens N connections to 127.0.0.1:P, and on each sends `POST /rpc` with the body in F,
waits for the answer, and sends again, for W + S seconds. Requests sent during the
last S seconds are measured. It prints one JSON object (see `bench.common.LoadResult`).

It speaks HTTP with a bare asyncio protocol and pre-built request bytes instead of a
full client, so that it costs far less CPU per request than the server it measures;
it reports its own CPU use so a reader can tell when it was the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.common import LoadResult, percentile

_ERROR_MEMBER = b'"error":{'  # a JSON-RPC error object; a job's `"error":null` is not one


@dataclass
class Window:
    """The measured window, shared by every connection."""

    start_ns: int
    end_ns: int
    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0


class Connection(asyncio.Protocol):
    """One keep-alive connection with one request in flight at a time."""

    def __init__(self, request: bytes, window: Window, done: asyncio.Future[None]) -> None:
        self.request = request
        self.window = window
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.expected: int | None = None  # bytes of head + body, once the head is in
        self.body_start = 0
        self.status = 0
        self.sent_ns = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self) -> None:
        assert self.transport is not None
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expected is None:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buffer[:head_end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"\r\ncontent-length:")
            length = 0 if at < 0 else int(head[at + 17 : head.find(b"\r", at + 2)].strip() or 0)
            if at < 0 and b"transfer-encoding" in head:
                self._fail("chunked answers are not supported")
                return
            self.body_start = head_end + 4
            self.expected = self.body_start + length
        if len(self.buffer) < self.expected:
            return
        body = bytes(self.buffer[self.body_start : self.expected])
        del self.buffer[: self.expected]
        self.expected = None
        self._answered(body)

    def _answered(self, body: bytes) -> None:
        now = time.perf_counter_ns()
        window = self.window
        if self.sent_ns >= window.start_ns:
            window.latencies_ns.append(now - self.sent_ns)
            if self.status != 200 or _ERROR_MEMBER in body:
                window.errors += 1
        if now < window.end_ns:
            self.send()
        else:
            self._finish()

    def _fail(self, reason: str) -> None:
        self.window.errors += 1
        if not self.done.done():
            self.done.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.window.errors += 1
            self.done.set_exception(ConnectionError(f"the server closed the connection: {exc}"))


def _returning(protocol: Connection) -> Callable[[], Connection]:
    return lambda: protocol


def http_request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def run(
    port: int, body: bytes, connections: int, duration: float, warmup: float
) -> LoadResult:
    loop = asyncio.get_running_loop()
    request = http_request(port, body)
    window = Window(0, 0)
    protocols: list[Connection] = []
    for _ in range(connections):
        protocol = Connection(request, window, loop.create_future())
        await loop.create_connection(_returning(protocol), "127.0.0.1", port)
        protocols.append(protocol)
    begin = time.perf_counter_ns()
    window.start_ns = begin + int(warmup * 1e9)
    window.end_ns = window.start_ns + int(duration * 1e9)
    cpu_before = _cpu()
    for protocol in protocols:
        protocol.send()
    async with asyncio.timeout(warmup + duration + 30):
        await asyncio.gather(*(p.done for p in protocols))
    wall = (time.perf_counter_ns() - begin) / 1e9
    cpu = (_cpu() - cpu_before) / wall
    latencies = [ns / 1e6 for ns in window.latencies_ns]
    return LoadResult(
        requests=len(latencies),
        rate=len(latencies) / duration,
        errors=window.errors,
        p50_ms=percentile(latencies, 0.50),
        p90_ms=percentile(latencies, 0.90),
        p99_ms=percentile(latencies, 0.99),
        cpu=cpu,
    )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    if not 1 <= args.connections <= 1000 or not 0 < args.duration <= 60:
        parser.error("connections must be 1..1000 and duration 0..60 s")
    result = asyncio.run(
        run(args.port, args.body_file.read_bytes(), args.connections, args.duration, args.warmup)
    )
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
