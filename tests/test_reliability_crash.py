"""Crashes and stops lose nothing: kill -9 at random moments under load, and SIGTERM, then restart.

Through processes, as a person would run it: a server on a temporary file, 20 clients that
submit and record every id they were answered, and a reader that records results.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ServerProcess, spawn_server

ROUNDS = 5
CLIENTS = 20
TYPES = ("reverse", "swap", "repeat")


@dataclass
class Record:
    """What the clients were told, across every round."""

    acked: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (type, text)
    sent: dict[str, str] = field(default_factory=dict)  # text -> type, answered or not
    per_client: list[list[str]] = field(default_factory=lambda: [[] for _ in range(CLIENTS)])
    results: dict[str, str] = field(default_factory=dict)  # id -> result read before a crash


async def call(session: aiohttp.ClientSession, url: str, method: str, **params: Any) -> Any:
    request = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    async with session.post(url + "/rpc", json=request) as reply:
        answer = await reply.json()
    if "error" in answer:
        raise AssertionError(f"{method} {params}: {answer['error']}")
    return answer["result"]


async def submitter(
    session: aiohttp.ClientSession, url: str, client: int, round_: int, record: Record
) -> None:
    """Submit one job after another until the server is gone; record every answer."""
    n = 0
    while True:
        kind = TYPES[(client + n) % 3]
        text = f"c{client}-r{round_}-n{n}"
        record.sent[text] = kind
        try:
            job = await call(session, url, "submit", type=kind, data=text)
        except (aiohttp.ClientError, ConnectionError):
            return
        record.acked[job["id"]] = (kind, text)
        record.per_client[client].append(job["id"])
        n += 1


async def reader(session: aiohttp.ClientSession, url: str, record: Record) -> None:
    """Read results of finished jobs until the server is gone."""
    while True:
        try:
            page = await call(session, url, "list", status="done", limit=20)
            for job in page["jobs"]:
                if job["id"] not in record.results:
                    answer = await call(session, url, "result", id=job["id"])
                    record.results[job["id"]] = answer["result"]
        except (aiohttp.ClientError, ConnectionError):
            return


async def every_job(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    """Every job the server knows, newest first, page by page."""
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await call(session, url, "list", limit=1000, cursor=cursor)
        jobs.extend(page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            return jobs


async def check(server: ServerProcess, record: Record, interrupted: str | None) -> int:
    """Everything acknowledged is there, in order, once; nothing unknown; results unchanged."""
    async with aiohttp.ClientSession() as session:
        jobs = await every_job(session, server.url)
        by_id = {job["id"]: job for job in jobs}
        assert len(by_id) == len(jobs), "a job is listed twice"
        texts = [job["preview"] for job in jobs]
        assert len(set(texts)) == len(texts), "a submit was recorded twice"
        missing = record.acked.keys() - by_id.keys()
        assert not missing, f"{len(missing)} acknowledged jobs are gone"
        for job_id, (kind, text) in record.acked.items():
            assert (by_id[job_id]["type"], by_id[job_id]["preview"]) == (kind, text)
        unknown = [job for job in jobs if job["id"] not in record.acked]
        assert all(record.sent.get(job["preview"]) == job["type"] for job in unknown)
        for ids in record.per_client:  # each client's jobs run in the order it was answered
            seqs = [by_id[job_id]["seq"] for job_id in ids]
            assert seqs == sorted(seqs)
        for job_id, result in record.results.items():
            assert (await call(session, server.url, "result", id=job_id))["result"] == result
        if interrupted is not None:
            rerun = await call(session, server.url, "wait", id=interrupted, timeout=30)
            assert rerun["status"] == "done"
            assert rerun["attempts"] == 2
        for job in unknown:  # answered by the server, but the answer died with it
            record.acked[job["id"]] = (job["type"], job["preview"])
        return len(jobs)


def running_in(path: Path) -> str | None:
    """The id of the job the file says is running (after a crash: the interrupted one)."""
    with sqlite3.connect(path) as connection:
        row = connection.execute(
            "SELECT id, attempts FROM jobs WHERE status = 'running'"
        ).fetchone()
    if row is None:
        return None
    assert row[1] == 1
    return str(row[0])


async def test_kill_9_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """5 rounds of 20 clients and a kill -9 at a random moment: every acknowledged job survives,
    in order, once, with its text and type; a running job reruns with attempts 2."""
    path = tmp_path / "crash.db"
    record = Record()
    rng = random.Random(9)
    interrupted: str | None = None
    answered = 0
    for round_ in range(ROUNDS):
        server = spawn_server("--db", str(path), "--time-scale", "0.01", "--log-level", "error")
        try:
            await check(server, record, interrupted)
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CLIENTS + 1)
            ) as session:
                tasks = [
                    asyncio.create_task(submitter(session, server.url, n, round_, record))
                    for n in range(CLIENTS)
                ]
                tasks.append(asyncio.create_task(reader(session, server.url, record)))
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                server.process.kill()
                await asyncio.to_thread(server.process.wait, 10)
                async with asyncio.timeout(10):
                    await asyncio.gather(*tasks)
        finally:
            server.reap()
        interrupted = running_in(path)
        answered = sum(len(ids) for ids in record.per_client)
    server = spawn_server("--db", str(path), "--time-scale", "0.01", "--log-level", "error")
    try:
        found = await check(server, record, interrupted)
    finally:
        server.reap()
    assert found >= len(record.acked) > ROUNDS * CLIENTS
    print(  # the figures for a report: pytest -s shows them
        f"\ncrash test: {ROUNDS} rounds, {answered} submits answered, {len(record.acked)} jobs "
        f"known after the crashes, {found} found, {len(record.results)} results compared"
    )


async def test_sigterm_then_restart_resumes_the_running_job_first(tmp_path: Path) -> None:
    """SIGTERM puts the running job back at the head; the restart runs it again (attempts 2)."""
    path = tmp_path / "stop.db"
    server = spawn_server("--db", str(path), "--time-scale", "1", "--log-level", "warning")
    try:
        async with aiohttp.ClientSession() as session:
            jobs = [
                await call(session, server.url, "submit", type="reverse", data=f"job {n}")
                for n in range(3)
            ]
            first = await call(session, server.url, "wait", id=jobs[0]["id"], status="queued")
            assert first["status"] == "running"
        assert server.stop(signal.SIGTERM) == 0
        assert server.process.stderr is not None
        errors = server.process.stderr.read()
        assert "2 queued and 1 interrupted job will resume at the next start" in errors
    finally:
        server.reap()
    again = spawn_server("--db", str(path), "--time-scale", "1", "--log-level", "warning")
    try:
        async with aiohttp.ClientSession() as session:
            head = jobs[0]["id"]
            await call(session, again.url, "wait", id=head, status="queued", timeout=10)
            now = [await call(session, again.url, "status", id=job["id"]) for job in jobs]
    finally:
        again.reap()
    assert [job["status"] for job in now] == ["running", "queued", "queued"]
    assert [job["position"] for job in now] == [None, 1, 2]
    assert now[0]["attempts"] == 2
    assert [job["submitted_at"] for job in now] == [job["submitted_at"] for job in jobs]
