"""The processes of `make bench-peers`: a private redis-server, peer workers, client drivers.

Each is started on 127.0.0.1 only, and stopped (SIGTERM, then SIGKILL) by its `stop()` in a
`with` block, so an error or Ctrl+C leaves nothing running. Every failure is raised as a
`BenchError` whose message names the process and ends with the tail of its stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from bench.common import HOST, ROOT
from bench.peers.server import PR_SET_PDEATHSIG

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.py"
START_TIMEOUT = 60.0  # seconds a process gets to be ready (10 Celery imports on 2 busy cores)


P = TypeVar("P", bound="Process")


class BenchError(Exception):
    """A process of the benchmark failed; the message says which and why."""


def free_port() -> int:
    """A port nothing listens on now (another process could take it before we do: rare)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM if the bench itself is killed (-9)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def rss(pid: int) -> int:
    """Resident set size of a process in bytes, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for process {pid}")


class Process:
    """A child process with its stderr kept in a temporary file for error messages."""

    def __init__(
        self, argv: Sequence[str], name: str, env: dict[str, str] | None = None, pipes: bool = False
    ) -> None:
        self.name = name
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        pipe = subprocess.PIPE if pipes else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdin=pipe,
                stdout=pipe,
                stderr=self._stderr,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            self._stderr.close()
            raise BenchError(f"cannot start {name} ({argv[0]}): {exc}") from exc

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        return rss(self.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used, from /proc (10 ms resolution)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def check(self) -> None:
        """Raise if the process has ended."""
        if self.process.poll() is not None:
            raise BenchError(f"{self.name} exited ({self.process.returncode}): {self.stderr()}")

    def stderr(self) -> str:
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read()[-1500:].decode("utf-8", "replace").strip()
        return f"\n--- its stderr ends:\n{text}" if text else "(nothing on stderr)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()


class RedisServer(Process):
    """A private redis-server: loopback only, no persistence, an empty temporary folder."""

    def __init__(self, binary: str) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="bench-peers-redis-")
        self.port = free_port()
        argv = [binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly"]
        argv += ["no", "--dir", self.folder.name, "--protected-mode", "yes", "--loglevel"]
        super().__init__([*argv, "warning"], f"redis-server on port {self.port}")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError):
                if self.command("PING") == "PONG":
                    return
            self.check()
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"{self.name} did not answer PING: {self.stderr()}")
            time.sleep(0.02)

    def command(self, *words: str) -> str:
        """One redis command over a fresh connection; a simple, error or bulk string reply."""
        request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
        with socket.create_connection((HOST, self.port), timeout=10) as connection:
            connection.sendall(request.encode())
            reply = b""
            while not _complete(reply):
                chunk = connection.recv(65536)
                if not chunk:
                    raise BenchError(f"redis closed the connection after {reply[:100]!r}")
                reply += chunk
        kind, head, rest = reply[:1], *reply[1:].split(b"\r\n", 1)
        if kind == b"-":
            raise BenchError(f"redis said {head.decode()}")
        if kind == b"$":
            return rest[: int(head)].decode()
        return head.decode()

    def used_memory(self) -> int:
        """redis's own count of the bytes it has allocated (INFO memory: used_memory)."""
        for line in self.command("INFO", "memory").splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":")[1])
        raise BenchError("no used_memory in INFO")

    def stop(self) -> None:
        super().stop()
        self.folder.cleanup()


class Driver(Process):
    """One client process (`driver.py SYSTEM`) that answers one JSON line per command."""

    def __init__(self, python: Path, system: str, env: dict[str, str], number: int) -> None:
        super().__init__(
            [str(python), str(DRIVER), system], f"{system} client {number}", env, pipes=True
        )
        self.buffer = b""

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(command).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError as exc:
            raise BenchError(f"{self.name} is gone: {self.stderr()}") from exc

    def receive(self, deadline: float, watch: Sequence[Process]) -> dict[str, Any]:
        """The next answer; raises if it is an error, too late, or a watched process died."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            for other in (self, *watch):
                other.check()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} gave no answer in time: {self.stderr()}")
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.check()
                    raise BenchError(f"{self.name} closed its output: {self.stderr()}")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise BenchError(f"{self.name}: {answer['error']} {self.stderr()}")
        return answer


class Drivers:
    """`count` client processes of one system, commanded together."""

    def __init__(self, python: Path, system: str, count: int) -> None:
        env = {"PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}"}
        self.all: list[Driver] = []
        try:
            for number in range(count):
                self.all.append(Driver(python, system, env, number))
            self.ask(lambda _: None, START_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    def ask(
        self,
        command: Callable[[int], dict[str, Any] | None],
        timeout: float,
        watch: Sequence[Process] = (),
        only: int | None = None,
    ) -> list[dict[str, Any]]:
        """Send `command(n)` to driver n (None: send nothing, just read) and collect answers."""
        drivers = self.all if only is None else self.all[:only]
        for number, driver in enumerate(drivers):
            message = command(number)
            if message is not None:
                driver.send(message)
        deadline = time.monotonic() + timeout
        return [driver.receive(deadline, watch) for driver in drivers]

    def cpu_seconds(self) -> float:
        return sum(driver.cpu_seconds() for driver in self.all)

    def stop(self) -> None:
        for driver in self.all:
            with contextlib.suppress(BenchError, OSError):
                driver.send({"op": "quit"})
        for driver in self.all:
            driver.stop()


def _complete(reply: bytes) -> bool:
    """Whether `reply` holds one whole simple, error, integer or bulk string reply."""
    head_end = reply.find(b"\r\n")
    if head_end < 0:
        return False
    if reply[:1] != b"$":
        return True
    return len(reply) >= head_end + 2 + max(0, int(reply[1:head_end])) + 2


@contextlib.contextmanager
def running(process: P) -> Iterator[P]:
    """The process, stopped on the way out of the `with` block whatever happens."""
    try:
        yield process
    finally:
        process.stop()
