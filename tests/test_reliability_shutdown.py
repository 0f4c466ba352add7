"""Shutdown: a stop signal while a job runs and clients wait ends the process fast and cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from backend.protocol import HEALTH_PATH, JobStatus
from tests.conftest import ServerProcess, spawn_server, until
from tests.test_reliability_faults import head, read_reply, request

WAITERS = 50


async def call(session: aiohttp.ClientSession, url: str, method: str, params: Any) -> Any:
    """One JSON-RPC call; returns its result."""
    headers = {"Content-Type": "application/json"}
    async with session.post(url + "/rpc", data=request(method, params), headers=headers) as reply:
        answer = await reply.json()
    return answer["result"]


async def running_id(session: aiohttp.ClientSession, url: str) -> str | None:
    """The id of the job the server is running, from /healthz."""
    async with session.get(url + HEALTH_PATH) as reply:
        health = await reply.json()
    return health["running_id"]  # type: ignore[no-any-return]


async def until_running(session: aiohttp.ClientSession, url: str, job_id: str) -> None:
    """Poll /healthz (with a deadline) until the server runs `job_id`."""
    async with asyncio.timeout(10):
        while await running_id(session, url) != job_id:  # noqa: ASYNC110 - the server is elsewhere
            await asyncio.sleep(0.01)


async def wait_for(server: ServerProcess, job_id: str, sent: list[str]) -> str:
    """Send `wait` on a raw connection, note it in `sent`; return how it ended.

    The outcome is 'response', 'closed' (a clean end of stream), 'reset' or 'hung'.
    """
    parts = urlsplit(server.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    body = request("wait", {"id": job_id, "timeout": 60})
    writer.write(head(len(body)) + body)
    await writer.drain()
    sent.append(job_id)
    try:
        status, reply = await read_reply(reader, timeout=5.0)
    except asyncio.IncompleteReadError as exc:
        return "closed" if not exc.partial else "reset"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "hung"
    finally:
        writer.close()
    job = json.loads(reply)["result"]
    assert status == 200
    assert job["id"] == job_id
    return "response"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_stop_signal_with_a_running_job_and_50_waiters(signum: signal.Signals) -> None:
    """Stopped mid-job with 50 clients in `wait`: exit 0 within 2 s; every waiter answered."""
    server = spawn_server("--time-scale", "1", "--log-level", "warning")
    try:
        async with aiohttp.ClientSession() as session:
            running = await call(session, server.url, "submit", {"type": "repeat", "data": "ab"})
            queued = await call(session, server.url, "submit", {"type": "reverse", "data": "ab"})
            await until_running(session, server.url, running["id"])
            ids = [(running if n % 2 else queued)["id"] for n in range(WAITERS)]
            sent: list[str] = []
            waiters = [asyncio.create_task(wait_for(server, job_id, sent)) for job_id in ids]
            await until(lambda: len(sent) == WAITERS, what="every wait to be sent")
            # Each round trip below is answered only after the server read every request that
            # reached it earlier, so once they are done all 50 waits are in progress.
            for _ in range(3):
                assert await running_id(session, server.url) == running["id"]
        assert not any(waiter.done() for waiter in waiters), "a wait returned before the signal"
        assert await call_status(server, queued["id"]) == JobStatus.QUEUED

        signalled = time.monotonic()
        server.process.send_signal(signum)
        await until(lambda: server.process.poll() is not None, timeout=2.0, what="the exit")
        took = time.monotonic() - signalled
        outcomes = await asyncio.gather(*waiters)
    finally:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait()
        assert server.process.stderr is not None
        assert server.process.stdout is not None
        errors = server.process.stderr.read()
        server.process.stderr.close()
        server.process.stdout.close()
    assert server.process.returncode == 0, errors
    assert took < 2.0
    assert "Traceback" not in errors, errors
    # Shutdown wakes every waiter, which answers with the job as it is: no one is cut off.
    assert set(outcomes) == {"response"}, outcomes
    assert "1 queued and 1 interrupted job will resume at the next start" in errors


async def call_status(server: ServerProcess, job_id: str) -> str:
    """The job's status, asked on a fresh connection."""
    async with aiohttp.ClientSession() as session:
        job = await call(session, server.url, "status", {"id": job_id})
    return job["status"]  # type: ignore[no-any-return]
