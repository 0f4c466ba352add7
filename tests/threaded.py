"""A real server on its own event loop in a thread, for tests that run `cli.main.main` in-process.

`main` must run in the main thread (it installs a SIGINT handler around `submit`), so the
server cannot share the test's event loop: it gets a loop of its own in a thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from backend import app as server_app
from backend.app import STORE
from backend.settings import Settings
from backend.store import MemoryStore
from cli.sync import SyncClient
from tests.conftest import fresh_db


@dataclass
class ThreadedServer:
    """A server running in a thread: its URL, its store, and its loop (to call into it)."""

    url: str
    store: MemoryStore
    loop: asyncio.AbstractEventLoop

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        """Run `coroutine` on the server's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


@contextmanager
def server_in_thread(time_scale: float, **settings: Any) -> Iterator[ThreadedServer]:
    """A server at `time_scale` (and `settings`) on a free loopback port, in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    config = Settings(**{"port": 0, "time_scale": time_scale, "db": fresh_db(), **settings})
    runner, url = asyncio.run_coroutine_threadsafe(server_app.start(config), loop).result(30)
    store = runner.app[STORE]
    assert isinstance(store, MemoryStore)
    try:
        yield ThreadedServer(url, store, loop)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def hold_a_wait(server: ThreadedServer, job_id: str, seconds: float = 0.5) -> threading.Thread:
    """A client holding a `wait` of `seconds` on `job_id` in a thread, returned once the
    server has parked it (so a server with `max_waiters=1` is at its limit)."""

    def hold() -> None:
        with SyncClient(server.url) as client:
            client.wait(job_id, seconds)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    deadline = time.monotonic() + 20
    while server.store.waiting < 1:
        assert time.monotonic() < deadline, "the held wait never parked"
        time.sleep(0.005)
    return holder
