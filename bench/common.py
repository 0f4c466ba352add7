"""What every benchmark shares: processes to start and stop, a small RPC client, the table."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # every process here binds and connects to loopback only
STARTUP_TIMEOUT = 20.0  # seconds a server gets to print its address
_LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the results table."""

    what: str
    value: str
    baseline: str
    ratio: float | None  # value / baseline, when both are numbers of one kind
    target: str
    met: bool | None  # None: the target is "report"
    note: str = ""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one run of `bench.load` measured."""

    requests: int  # answered inside the measured window
    rate: float  # requests per second
    errors: int  # HTTP status other than 200, or a JSON-RPC error object
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cpu: float  # the load generator's own CPU use, 1.0 = one core busy
    server_cpu_us: float = float("nan")  # the server's CPU time per answered request, in µs


class Server:
    """A server process (taskrpc or the bare baseline) on 127.0.0.1 and a free port."""

    def __init__(self, argv: Sequence[str], name: str, folder: str | None = None) -> None:
        self.name = name
        self._folder = folder  # removed at stop: the server's database, if it has one
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            list(argv), cwd=ROOT, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self.port = self._read_port()

    @classmethod
    def taskrpc(cls, *flags: str) -> Server:
        """`taskrpc-server --port 0 --log-level warning FLAGS…`; without `--db` in FLAGS, on a
        database file of its own in a temporary folder (never the user's state directory)."""
        argv = [sys.executable, "-m", "backend.main", "--host", HOST, "--port", "0"]
        folder = None
        if "--db" not in flags:
            folder = tempfile.mkdtemp(prefix="taskrpc-bench-")
            flags = (*flags, "--db", str(Path(folder) / "taskrpc.db"))
        return cls([*argv, "--log-level", "warning", *flags], "taskrpc-server", folder)

    @classmethod
    def bare(cls, job_file: Path, *flags: str) -> Server:
        """The baseline: a bare aiohttp handler that answers with the job in `job_file`, on the
        loop taskrpc-server would run (FLAGS: `--loop NAME`)."""
        argv = [sys.executable, "-m", "bench.baseline", "--port", "0", "--job-file", str(job_file)]
        return cls([*argv, *flags], "bare aiohttp")

    def _read_port(self) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        line = b""
        while time.monotonic() < deadline and self.process.poll() is None:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                line = self.process.stdout.readline()
                match = _LISTENING.search(line)
                if match:
                    return int(match.group(1))
        self.stop()
        raise RuntimeError(f"{self.name} did not start: {line!r} {self.stderr()}")

    def rss(self) -> int:
        """Resident set size in bytes, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used, from /proc (10 ms resolution)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].decode("utf-8", "replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RpcError(Exception):
    """The server answered a set-up call with a JSON-RPC error."""


class Rpc:
    """A minimal synchronous JSON-RPC client for setting up a benchmark (not for load)."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection(HOST, port, timeout=60)
        self._ids = 0

    def post(self, payload: object) -> Any:
        body = json.dumps(payload).encode()
        self._connection.request(
            "POST", "/rpc", body=body, headers={"Content-Type": "application/json"}
        )
        response = self._connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RpcError(f"HTTP {response.status}: {data[:200]!r}")
        return json.loads(data)

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        return {"jsonrpc": "2.0", "method": method, "params": params, "id": self._ids}

    def call(self, method: str, **params: Any) -> Any:
        answer = self.post(self.request(method, params))
        if "error" in answer:
            raise RpcError(str(answer["error"]))
        return answer["result"]

    def submit_many(self, kind: str, data: str, count: int, batch: int = 500) -> list[str]:
        """Submit `count` jobs in batches; returns their ids in order."""
        ids: list[str] = []
        while len(ids) < count:
            size = min(batch, count - len(ids))
            calls = [self.request("submit", {"type": kind, "data": data}) for _ in range(size)]
            answers = sorted(self.post(calls), key=lambda a: a["id"])
            for answer in answers:
                if "error" in answer:
                    raise RpcError(str(answer["error"]))
                ids.append(answer["result"]["id"])
        return ids

    def health(self) -> dict[str, Any]:
        self._connection.request("GET", "/healthz")
        response = self._connection.getresponse()
        result: dict[str, Any] = json.loads(response.read())
        return result

    def close(self) -> None:
        self._connection.close()


def rpc_body(method: str, params: dict[str, Any], request_id: int = 1) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id},
        separators=(",", ":"),
    ).encode()


def batch_body(method: str, params: dict[str, Any], count: int) -> bytes:
    """A batch of `count` calls of `method` with `params`, ids 0, 1, 2…"""
    return b"[" + b",".join(rpc_body(method, params, i) for i in range(count)) + b"]"


def run_load(
    server: Server, body: bytes, *, connections: int, duration: float, warmup: float = 0.5
) -> LoadResult:
    """Run `bench.load` in its own process against `server`; closed loop, keep-alive."""
    port = server.port
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(body)
        file.flush()
        argv = [
            sys.executable,
            "-m",
            "bench.load",
            f"--port={port}",
            f"--body-file={file.name}",
            f"--connections={connections}",
            f"--duration={duration}",
            f"--warmup={warmup}",
        ]
        cpu_before = server.cpu_seconds()
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, check=False, timeout=duration + warmup + 60
        )
        cpu = server.cpu_seconds() - cpu_before
    if done.returncode != 0:
        raise RuntimeError(f"bench.load failed: {done.stderr.decode(errors='replace')[-2000:]}")
    result = LoadResult(**json.loads(done.stdout))
    # The server's CPU over the whole run, spread over every request it answered
    # (the warm-up's too, estimated at the measured rate).
    answered = result.rate * (warmup + duration)
    return dataclasses.replace(result, server_cpu_us=cpu / answered * 1e6 if answered else 0.0)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (need not be sorted)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@contextlib.contextmanager
def job_file(job: dict[str, Any]) -> Iterator[Path]:
    """A temporary file holding `job` as JSON, for the baseline server to serve."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(job, file)
    try:
        yield Path(file.name)
    finally:
        os.unlink(file.name)


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
