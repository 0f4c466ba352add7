"""Shared fixtures: a real server on a free loopback port, in-process or as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from backend import app as server_app
from backend.app import STORE
from backend.settings import Settings
from backend.store import MemoryStore, Store
from cli.client import Client
from tests.pg import Cluster, drop_database, new_database, pg_cluster, pg_url

__all__ = ["pg_cluster", "pg_url"]  # fixtures for the tests that need PostgreSQL (tests/pg.py)

FAST = 0.01  # time scale for most tests: reverse 20 ms, swap 50 ms, repeat 70 ms
BIN = Path(sys.executable).parent
LISTENING = re.compile(r"listening on (http://\S+)")


def pytest_configure() -> None:
    """Ctrl+C as a terminal gives it, however the suite was started. A shell without job
    control starts a background command (`make test &`, nohup) with SIGINT ignored; Python
    keeps it so, and every process the tests start inherits it: the tests of Ctrl+C would
    then see nothing happen. A handler here is reset to the default in each child."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class Server:
    """A server running in this test's event loop."""

    url: str
    app: web.Application

    @property
    def store(self) -> Store:
        """The server's store, whichever kind: tests use it through the `Store` interface."""
        store: Store = self.app[STORE]
        return store

    @property
    def memory_store(self) -> MemoryStore:
        """The store of a single server (both single-server stores are a MemoryStore), for
        the tests that look inside it."""
        store = self.app[STORE]
        assert isinstance(store, MemoryStore)
        return store

    async def post(
        self, body: bytes | str | Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """POST bytes, a string or a value as JSON to /rpc; returns (HTTP status, JSON or None)."""
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        headers = {"Content-Type": "application/json", **(headers or {})}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + "/rpc", data=body, headers=headers) as reply,
        ):
            raw = await reply.read()
            return reply.status, json.loads(raw) if raw else None

    async def call(self, method: str, params: Any = None, **headers: str) -> dict[str, Any]:
        """One JSON-RPC request; returns the whole response object."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params is not None:
            request["params"] = params
        status, response = await self.post(request, headers)
        assert status == 200, status
        assert isinstance(response, dict)
        return response


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture(autouse=True, scope="session")
def _state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No test writes to the real state directory: the default database is in a temporary one."""
    state = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(state))
        patch.delenv("TASKRPC_DB", raising=False)
        yield state


def fresh_db() -> str:
    """A database file of its own, in a new folder of the test session's state directory."""
    folder = tempfile.mkdtemp(prefix="db-", dir=os.environ["XDG_STATE_HOME"])
    return str(Path(folder) / "taskrpc.db")


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start servers with settings of the test's choosing, each on a database file of its own
    (the default, journaled store) unless the test says `db=`; all stop at the end."""
    async with servers(tmp_path) as start:
        yield start


@contextlib.asynccontextmanager
async def servers(tmp_path: Path) -> AsyncIterator[StartServer]:
    """What `start_server` gives: start servers, stop them all when the block ends."""
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> Server:
        db = str(tmp_path / f"taskrpc-{len(runners)}.db")
        settings = Settings(**{"port": 0, "time_scale": FAST, "db": db, **overrides})
        runner, url = await server_app.start(settings)
        runners.append(runner)
        return Server(url, runner.app)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(params=["journaled", "memory", "postgres"])
async def start_on_each_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StartServer]:
    """`start_server` on each store: the default journal, memory only, and a PostgreSQL
    database of its own on the session's cluster (the servers one test starts share it)."""
    cluster: Cluster | None = None
    store: dict[str, Any] = {}
    if request.param == "memory":
        store["db"] = ":memory:"
    elif request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        store["db"] = await new_database(cluster)
    async with servers(tmp_path) as start:

        async def start_on(**overrides: Any) -> Server:
            return await start(**store, **overrides)

        yield start_on
    if cluster is not None:  # once the servers stopped
        await drop_database(cluster, store["db"])


@pytest.fixture
async def server_on_each_store(start_on_each_store: StartServer) -> Server:
    """A server on each store: one contract for all three."""
    return await start_on_each_store()


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    """A server at the fast time scale."""
    return await start_server()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    """The client library, connected to `server`."""
    async with Client(server.url) as connected:
        yield connected


@dataclass
class ServerProcess:
    """`taskrpc-server` running as a subprocess."""

    url: str
    process: subprocess.Popen[str]
    line: str = ""  # the start-up line

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout)

    def reap(self) -> None:
        """Kill the process if it still runs and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def spawn_server(
    *args: str, env: dict[str, str] | None = None, own_db: bool = True
) -> ServerProcess:
    """Start `taskrpc-server --port 0 ARGS` and wait for its 'listening on' line.

    With `own_db` and no `--db` in ARGS, the server gets a database file of its own.
    """
    if own_db and "--db" not in args:
        args = (*args, "--db", fresh_db())
    process = subprocess.Popen(
        [str(BIN / "taskrpc-server"), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the server flushes this line as soon as it listens
    found = LISTENING.search(line)
    if found is None:
        process.kill()
        raise AssertionError(f"no 'listening on' line: {line!r} {process.stderr.read()!r}")  # type: ignore[union-attr]
    return ServerProcess(found.group(1), process, line)


@pytest.fixture
def server_process() -> Iterator[ServerProcess]:
    """`taskrpc-server` as a subprocess at the fast time scale."""
    started = spawn_server("--time-scale", str(FAST))
    yield started
    started.reap()


def run_cli(
    *args: str,
    url: str | None = None,
    stdin: str | bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `taskrpc ARGS` to completion; text in and out is UTF-8."""
    full_env = {**os.environ, "PYTHONIOENCODING": "", **(env or {})}
    if url is not None:
        full_env["TASKRPC_URL"] = url
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run(
        [str(BIN / "taskrpc"), *args],
        input=data,
        capture_output=True,
        env=full_env,
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    )


@contextlib.asynccontextmanager
async def stand_in(app: web.Application) -> AsyncIterator[str]:
    """`app` (a stand-in for a server, or another service) on a free loopback port: its URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll `predicate` every few milliseconds until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
