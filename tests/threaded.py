"""A real server on its own event loop in a thread, for tests that run `cli.main.main` in-process.

`main` must run in the main thread (it installs a SIGINT handler around `submit`), so the
server cannot share the test's event loop: it gets a loop of its own in a thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from backend import app as server_app
from backend.app import STORE
from backend.settings import Settings
from backend.store import MemoryStore
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
