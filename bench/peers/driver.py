"""One client process of `make bench-peers`: `python driver.py SYSTEM`.

It runs under whichever venv has SYSTEM's client library (taskrpc: the project's .venv; RQ and
Celery: .venv-peers/rq-celery; arq: .venv-peers/arq), so it imports nothing but the standard
library at the top and that one library in its adapter. It reads one command per line (JSON) on
stdin and answers one JSON line on stdout: `{"error": "…"}` if the command failed. Every system is
driven through the same loops here; only the adapter, which uses each library's own public API,
differs. Times that several processes share (a window's start) are wall-clock `time.time()`.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import sys
import time
import traceback
from typing import Any

HOST = "127.0.0.1"
WAIT_TIMEOUT = 120  # seconds one job may take to finish before the command fails


class Unsupported(Exception):
    """The system has no API for this (arq has no batched enqueue)."""


class Adapter:
    """What the loops need from a system. A handle is what `enqueue` returned for one job."""

    async def open(self, port: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def enqueue(self, text: str) -> Any:
        raise NotImplementedError

    async def enqueue_batch(self, text: str, count: int) -> list[Any]:
        raise Unsupported

    def job_id(self, handle: Any) -> str:
        raise NotImplementedError

    async def wait(self, handle: Any, text: str, poll: float) -> None:
        """Return once the job is done with the right result; raise otherwise."""
        raise NotImplementedError

    async def status(self, job_id: str) -> str:
        raise NotImplementedError

    async def aio_enqueue(self, text: str) -> Any:
        raise Unsupported

    async def aio_status(self, job_id: str) -> str:
        raise Unsupported

    async def finished(self) -> int:
        """How many jobs have finished so far (to check that a drain left none behind)."""
        raise NotImplementedError


class Taskrpc(Adapter):
    """The project's Python API for scripts, `cli.sync.SyncClient` (stdlib `http.client`).

    Batches are one JSON-RPC array of `submit` calls (built by `cli.rpc.Calls`) on a keep-alive
    connection of their own; the A/B rows go through the dashboard's async client instead,
    `cli.client.Client` (aiohttp).
    """

    async def open(self, port: int) -> None:
        from cli.client import Client
        from cli.sync import SyncClient

        url = f"http://{HOST}:{port}"
        self.client = SyncClient(url)
        self.aio = Client(url)
        await self.aio.__aenter__()
        self.batches = http.client.HTTPConnection(HOST, port, timeout=WAIT_TIMEOUT)

    async def close(self) -> None:
        self.client.close()
        await self.aio.__aexit__(None, None, None)
        self.batches.close()

    async def enqueue(self, text: str) -> Any:
        return self.client.submit("reverse", text)["id"]

    async def enqueue_batch(self, text: str, count: int) -> list[Any]:
        from backend.protocol import RPC_PATH
        from cli.rpc import Calls

        batch = [Calls.submit("reverse", text).payload(n) for n in range(count)]
        headers = {"Content-Type": "application/json"}
        self.batches.request("POST", RPC_PATH, json.dumps(batch).encode(), headers)
        answers = json.loads(self.batches.getresponse().read())
        if not isinstance(answers, list) or any("result" not in a for a in answers):
            raise RuntimeError(f"batched submit failed: {str(answers)[:300]}")
        return [a["result"]["id"] for a in sorted(answers, key=lambda a: a["id"])]

    def job_id(self, handle: Any) -> str:
        return str(handle)

    async def wait(self, handle: Any, text: str, poll: float) -> None:
        from backend.protocol import JobStatus

        # One `wait` call: without a `seen` status it answers once the job has finished.
        job = self.client.wait(handle, timeout=WAIT_TIMEOUT)
        if job["status"] != JobStatus.DONE.value:
            raise RuntimeError(f"job {handle} ended {job['status']}: {job.get('error')}")

    async def status(self, job_id: str) -> str:
        return str(self.client.status(job_id)["status"])

    async def aio_enqueue(self, text: str) -> Any:
        return (await self.aio.submit("reverse", text))["id"]

    async def aio_status(self, job_id: str) -> str:
        return str((await self.aio.status(job_id))["status"])

    async def finished(self) -> int:
        from backend.protocol import JobStatus

        _, counts, _ = self.client.jobs(limit=1)
        return int(counts.get(JobStatus.DONE.value, 0))


class Rq(Adapter):
    """RQ: `Queue.enqueue`, `Queue.enqueue_many`, `Job.latest_result` (it blocks), `Job.fetch`."""

    async def open(self, port: int) -> None:
        from jobs_rq import QUEUE
        from redis import Redis
        from rq import Queue

        self.connection = Redis(host=HOST, port=port)
        self.queue = Queue(QUEUE, connection=self.connection)

    async def close(self) -> None:
        self.connection.close()

    async def enqueue(self, text: str) -> Any:
        from jobs_rq import reverse

        return self.queue.enqueue(reverse, text)

    async def enqueue_batch(self, text: str, count: int) -> list[Any]:
        from jobs_rq import reverse
        from rq import Queue

        jobs = [Queue.prepare_data(reverse, (text,)) for _ in range(count)]
        return list(self.queue.enqueue_many(jobs))

    def job_id(self, handle: Any) -> str:
        return str(handle.id)

    async def wait(self, handle: Any, text: str, poll: float) -> None:
        result = handle.latest_result(timeout=WAIT_TIMEOUT)
        if result is None or result.return_value != text[::-1]:
            raise RuntimeError(f"job {handle.id} gave {result!r}")

    async def status(self, job_id: str) -> str:
        from rq.job import Job

        # One HGETALL: the documented lookup by id, without get_status()'s second round trip.
        return str(Job.fetch(job_id, connection=self.connection).get_status(refresh=False).value)

    async def finished(self) -> int:
        return int(self.queue.finished_job_registry.count)


class Arq(Adapter):
    """arq: `enqueue_job`, `Job.result` (it polls, as often as the command says), `Job.status`."""

    async def open(self, port: int) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        self.pool = await create_pool(RedisSettings(host=HOST, port=port))

    async def close(self) -> None:
        await self.pool.aclose()

    async def enqueue(self, text: str) -> Any:
        job = await self.pool.enqueue_job("reverse", text)
        if job is None:
            raise RuntimeError("arq refused the job (duplicate id)")
        return job

    def job_id(self, handle: Any) -> str:
        return str(handle.job_id)

    async def wait(self, handle: Any, text: str, poll: float) -> None:
        result = await handle.result(timeout=WAIT_TIMEOUT, poll_delay=poll)
        if result != text[::-1]:
            raise RuntimeError(f"job {handle.job_id} gave {result!r}")

    async def status(self, job_id: str) -> str:
        from arq.jobs import Job

        return str((await Job(job_id, self.pool).status()).value)

    async def finished(self) -> int:
        from arq.constants import result_key_prefix

        return len(await self.pool.keys(result_key_prefix + "*"))


class CeleryAdapter(Adapter):
    """Celery: `delay`, `group(...).apply_async()`, `AsyncResult.get` (pub/sub) and `.state`."""

    async def open(self, port: int) -> None:
        from redis import Redis

        os.environ["PEERS_REDIS_PORT"] = str(port)  # jobs_celery builds its app on import
        from jobs_celery import app

        self.app = app
        self.results = Redis(host=HOST, port=port, db=1)

    async def close(self) -> None:
        self.results.close()

    async def enqueue(self, text: str) -> Any:
        from jobs_celery import reverse

        return reverse.delay(text)

    async def enqueue_batch(self, text: str, count: int) -> list[Any]:
        from celery import group
        from jobs_celery import reverse

        return list(group(reverse.s(text) for _ in range(count)).apply_async().results)

    def job_id(self, handle: Any) -> str:
        return str(handle.id)

    async def wait(self, handle: Any, text: str, poll: float) -> None:
        result = handle.get(timeout=WAIT_TIMEOUT)
        if result != text[::-1]:
            raise RuntimeError(f"job {handle.id} gave {result!r}")

    async def status(self, job_id: str) -> str:
        from celery.result import AsyncResult

        return str(AsyncResult(job_id, app=self.app).state)

    async def finished(self) -> int:
        return sum(1 for _ in self.results.scan_iter("celery-task-meta-*", count=1000))


ADAPTERS: dict[str, type[Adapter]] = {
    "taskrpc": Taskrpc,
    "rq": Rq,
    "arq": Arq,
    "celery": CeleryAdapter,
}


async def _until(start_at: float) -> None:
    await asyncio.sleep(max(0.0, start_at - time.time()))


async def enqueue(adapter: Adapter, command: dict[str, Any]) -> dict[str, Any]:
    """Enqueue singles or batches until the window closes; count jobs from calls begun in it."""
    text, batch = command["text"], int(command["batch"])
    single = adapter.aio_enqueue if command.get("aio") else adapter.enqueue
    await _until(command["start_at"])
    end = command["start_at"] + command["duration"]
    jobs = 0
    while time.time() < end:
        if batch == 1:
            await single(text)
        else:
            await adapter.enqueue_batch(text, batch)
        jobs += batch
    return {"jobs": jobs, "ended": time.time()}


async def latency(adapter: Adapter, command: dict[str, Any]) -> dict[str, Any]:
    """One job at a time: enqueue, wait for its result; the first `warmup` are not kept."""
    text, poll = command["text"], command["poll"]
    times: list[float] = []
    handle = None
    for n in range(command["warmup"] + command["count"]):
        start = time.perf_counter()
        handle = await adapter.enqueue(text)
        await adapter.wait(handle, text, poll)
        if n >= command["warmup"]:
            times.append((time.perf_counter() - start) * 1000)
    return {"ms": times, "last_id": adapter.job_id(handle)}


async def status(adapter: Adapter, command: dict[str, Any]) -> dict[str, Any]:
    """Ask for one finished job's status again and again until the window closes."""
    job_id, expected = command["id"], command["expect"]
    lookup = adapter.aio_status if command.get("aio") else adapter.status
    await _until(command["start_at"])
    end = command["start_at"] + command["duration"]
    calls = 0
    while time.time() < end:
        answer = await lookup(job_id)
        if answer.lower() not in expected:
            raise RuntimeError(f"status of {job_id} is {answer!r}, expected one of {expected}")
        calls += 1
    return {"calls": calls, "ended": time.time()}


async def drain(adapter: Adapter, command: dict[str, Any]) -> dict[str, Any]:
    """Submit `count` jobs to a running worker (in batches if the system has them) → all done."""
    text, count, batch, poll = command["text"], command["count"], command["batch"], command["poll"]
    before = await adapter.finished()
    start = time.perf_counter()
    handles: list[Any] = []
    try:
        while len(handles) < count:
            handles += await adapter.enqueue_batch(text, min(batch, count - len(handles)))
    except Unsupported:
        while len(handles) < count:
            handles.append(await adapter.enqueue(text))
    await adapter.wait(handles[-1], text, poll)
    deadline = time.monotonic() + WAIT_TIMEOUT
    while (done := await adapter.finished() - before) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {count} jobs done after the last one")
        await asyncio.sleep(0.001)
    return {"elapsed": time.perf_counter() - start, "done": done}


COMMANDS = {"enqueue": enqueue, "latency": latency, "status": status, "drain": drain}


async def serve(system: str) -> None:
    adapter = ADAPTERS[system]()
    opened = False
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    while line := await reader.readline():
        command = json.loads(line)
        op = command["op"]
        if op == "quit":
            break
        try:
            if op == "open":
                if opened:
                    await adapter.close()
                await adapter.open(command["port"])
                opened = True
                answer: dict[str, Any] = {"opened": command["port"]}
            else:
                answer = await COMMANDS[op](adapter, command)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            answer = {"error": f"{system} {op}: {type(exc).__name__}: {exc}"[:500]}
        print(json.dumps(answer), flush=True)
    if opened:
        await adapter.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
