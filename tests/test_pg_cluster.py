"""Several real servers (subprocesses) on one real PostgreSQL database: one job at a time across
all of them, in global submission order, failover, fencing, live notifications, outages."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest

from backend.protocol import JobStatus, StorageUnavailable
from cli.client import Client
from tests.conftest import ServerProcess, spawn_server
from tests.pg import running_cluster

StartServer = Callable[..., ServerProcess]
FAILOVER_LIMIT = 3.0  # seconds from the runner's death to a standby running its job


@pytest.fixture
def start_on() -> Iterator[Callable[..., ServerProcess]]:
    """Start `taskrpc-server --db URL ARGS` subprocesses; all are killed at the end."""
    started: list[ServerProcess] = []

    def start(url: str, *args: str) -> ServerProcess:
        server = spawn_server("--db", url, "--log-level", "warning", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.reap()


def health(server: ServerProcess) -> tuple[int, dict[str, object]]:
    """GET /healthz: (HTTP status, body)."""
    try:
        with urllib.request.urlopen(server.url + "/healthz", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def runner_among(servers: list[ServerProcess], timeout: float = 10.0) -> ServerProcess:
    """The server whose /healthz says it is the runner, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for server in servers:
            if server.process.poll() is None and health(server)[1].get("role") == "runner":
                return server
        await asyncio.sleep(0.02)
    raise AssertionError(f"no runner among {[s.url for s in servers]} after {timeout} s")


async def until_all_name_the_runner(servers: list[ServerProcess], url: str) -> None:
    """Every server's /healthz names `url` as the runner (standbys look once a second)."""
    deadline = time.monotonic() + 5
    while {health(server)[1].get("runner") for server in servers} != {url}:
        if time.monotonic() > deadline:
            raise AssertionError(f"not all name {url}: {[health(s)[1] for s in servers]}")
        await asyncio.sleep(0.05)


async def until_parked(server: ServerProcess, count: int = 1) -> None:
    """`count` wait calls are parked on `server` (its /healthz counts them)."""
    deadline = time.monotonic() + 5
    while health(server)[1].get("waiting") != count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count} waits parked on {server.url}: {health(server)}")
        await asyncio.sleep(0.01)


@dataclass
class Row:
    """A job as the database recorded it."""

    id: str
    seq: int
    status: str
    attempts: int
    started_at: float | None
    finished_at: float | None
    runner: str | None


async def rows(url: str) -> list[Row]:
    """Every job in the database, in sequence order."""
    connection = await asyncpg.connect(url)
    try:
        records = await connection.fetch(
            "SELECT id, seq, status, attempts, started_at, finished_at, runner"
            " FROM taskrpc.jobs ORDER BY seq"
        )
    finally:
        await connection.close()
    return [Row(**dict(record)) for record in records]


async def until_finished(url: str, count: int, timeout: float) -> list[Row]:
    """Poll the database until `count` jobs are finished; returns every row."""
    deadline = time.monotonic() + timeout
    while True:
        found = await rows(url)
        if sum(1 for row in found if JobStatus(row.status).finished) >= count:
            return found
        if time.monotonic() > deadline:
            statuses = [row.status for row in found]
            raise AssertionError(f"only {statuses.count('done')} of {count} done: {statuses}")
        await asyncio.sleep(0.1)


def assert_one_at_a_time(found: list[Row]) -> None:
    """Started in sequence order, each after the one before it finished."""
    ran = [row for row in found if row.started_at is not None]
    by_start = sorted(ran, key=lambda row: row.started_at or 0.0)
    assert [row.seq for row in by_start] == [row.seq for row in ran], "not in submission order"
    for before, after in itertools.pairwise(by_start):
        assert before.finished_at is not None
        assert after.started_at is not None
        assert after.started_at >= before.finished_at, f"{before} and {after} overlap"


@pytest.mark.parametrize("servers", [2, 3])
async def test_many_servers_run_jobs_one_at_a_time_in_global_order(
    pg_url: str, start_on: StartServer, servers: int
) -> None:
    """Clients spread over 2 or 3 servers: every job runs exactly once, never two at once, in
    the order the submits were acknowledged across all servers."""
    cluster = [start_on(pg_url, "--time-scale", "0.0002") for _ in range(servers)]
    clients, per_client = 2 * servers, 2000 // (2 * servers)
    acked: list[tuple[float, float, str]] = []  # (sent, answered, id)

    async def submit_many(server: ServerProcess, first: int) -> None:
        async with Client(server.url) as client:
            for n in range(first, first + per_client):
                sent = time.monotonic()
                job = await client.submit(n % 3 + 1, f"text {n}")
                acked.append((sent, time.monotonic(), job["id"]))

    await asyncio.gather(
        *(submit_many(cluster[n % servers], n * per_client) for n in range(clients))
    )
    found = await until_finished(pg_url, len(acked), timeout=60)

    by_id = {row.id: row for row in found}
    assert len(found) == len(acked) == clients * per_client  # nothing doubled, nothing unknown
    assert by_id.keys() == {job_id for *_, job_id in acked}
    assert {(row.status, row.attempts) for row in found} == {("done", 1)}
    assert_one_at_a_time(found)
    # Global order: a job acknowledged before another was sent has the smaller sequence number.
    answered = sorted((answered, by_id[job_id].seq) for _, answered, job_id in acked)
    highest = list(itertools.accumulate((seq for _, seq in answered), max))
    for sent, _, job_id in acked:
        before = bisect.bisect_left(answered, (sent, -1))
        assert before == 0 or highest[before - 1] < by_id[job_id].seq


async def test_failover_reruns_the_interrupted_job_and_loses_nothing(
    pg_url: str, start_on: StartServer
) -> None:
    """Five times: kill -9 the runner mid-job; a standby runs within 3 s, the job reruns with
    attempts 2, clients waiting on the surviving servers get their answers, and every server
    names the new runner."""
    cluster = [start_on(pg_url, "--time-scale", "0.1") for _ in range(3)]
    acked: list[str] = []
    failovers: list[float] = []
    for _ in range(5):
        runner = await runner_among(cluster)
        survivors = [server for server in cluster if server is not runner]
        async with Client(survivors[0].url) as first, Client(survivors[1].url) as second:
            long = await first.submit("swap", "interrupted")  # 0.5 s at this time scale
            after = await second.submit("reverse", "after it")
            acked += [long["id"], after["id"]]
            waiting = [
                asyncio.create_task(second.wait(long["id"], 30)),
                asyncio.create_task(first.wait(after["id"], 30)),
            ]
            seen = long
            while seen["status"] != JobStatus.RUNNING:
                seen = await first.wait(long["id"], 5, seen)
            runner.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            new_runner = await runner_among(survivors, timeout=FAILOVER_LIMIT + 2)
            failovers.append(time.monotonic() - killed)
            done = await asyncio.gather(*waiting)
        assert [job["status"] for job in done] == ["done", "done"]
        await until_all_name_the_runner(survivors, new_runner.url)
        cluster = [*survivors, start_on(pg_url, "--time-scale", "0.1")]
        assert new_runner in survivors
    found = await rows(pg_url)
    assert [row.id for row in found] == acked  # every acknowledged job, once, in order
    assert [row.attempts for row in found] == [2, 1] * 5
    assert {row.status for row in found} == {"done"}
    assert_one_at_a_time([row for row in found if row.attempts == 1])
    assert max(failovers) <= FAILOVER_LIMIT, failovers


async def test_the_new_runner_logs_the_rerun_of_the_interrupted_job(
    pg_url: str, start_on: StartServer
) -> None:
    """After kill -9 of the runner mid-job, the new runner's one line for the job says attempt 2."""
    first = start_on(pg_url, "--time-scale", "0.1", "--log-level", "info")
    runner = await runner_among([first])
    second = start_on(pg_url, "--time-scale", "0.1", "--log-level", "info")
    async with Client(second.url) as client:
        job = await client.submit("repeat", "interrupted")  # 0.7 s at this time scale
        while job["status"] != JobStatus.RUNNING:
            job = await client.wait(job["id"], 5, job)
        runner.process.send_signal(signal.SIGKILL)
        while job["status"] != JobStatus.DONE:
            job = await client.wait(job["id"], 10, job)
    assert job["attempts"] == 2
    second.stop()
    assert second.process.stderr is not None
    log = second.process.stderr.read()
    ended = [line for line in log.splitlines() if f"job {job['id']} repeat done (" in line]
    assert len(ended) == 1, log
    assert ended[0].endswith(", attempt 2)"), log


async def test_a_runner_whose_session_is_killed_cannot_record_its_result(
    pg_url: str, start_on: StartServer
) -> None:
    """pg_terminate_backend on the runner's session mid-job: the job reruns (attempts 2) and
    the first run's result is never recorded."""
    cluster = [start_on(pg_url, "--time-scale", "0.1") for _ in range(2)]
    await runner_among(cluster)
    async with Client(cluster[0].url) as client:
        job = await client.submit("swap", "fenced")
        seen = job
        while seen["status"] != JobStatus.RUNNING:
            seen = await client.wait(job["id"], 5, seen)
        admin = await asyncpg.connect(pg_url)
        try:
            ended = await admin.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND objid = 1 AND granted"
            )
            first = await admin.fetchrow(
                "SELECT status, attempts FROM taskrpc.jobs WHERE id = $1", job["id"]
            )
        finally:
            await admin.close()
        assert ended
        assert first is not None
        assert tuple(first) == ("running", 1)
        finished = await client.wait(job["id"], 30)
    assert finished["status"] == "done"
    [row] = await rows(pg_url)
    assert (row.status, row.attempts) == ("done", 2)


async def test_a_change_through_one_server_reaches_waiters_on_another_within_100_ms(
    pg_url: str, start_on: StartServer
) -> None:
    """A `wait` on B returns within 100 ms of a cancel through A; a dashboard's subscription
    to B sees a job submitted through A."""
    a, b = start_on(pg_url, "--time-scale", "1"), start_on(pg_url, "--time-scale", "1")
    async with Client(a.url) as through_a, Client(b.url) as through_b:
        blocker = await through_a.submit("repeat", "keeps the runner busy for 7 s")
        queued = await through_a.submit("reverse", "waits behind it")
        seen = await through_b.status(queued["id"])
        assert seen["status"] == JobStatus.QUEUED
        waiting = asyncio.create_task(through_b.wait(queued["id"], 10, seen))
        await until_parked(b)
        assert not waiting.done()
        cancelled_at = time.monotonic()
        await through_a.cancel(queued["id"])
        changed = await waiting
        latency = time.monotonic() - cancelled_at
        assert changed["status"] == JobStatus.CANCELLED
        assert latency <= 0.1, f"B saw the cancel {latency * 1000:.0f} ms after A was asked"

        async with through_b.subscribe() as feed:
            submitted = await through_a.submit("swap", "seen on B")
            async with asyncio.timeout(5):
                async for changes in feed:
                    if any(job["id"] == submitted["id"] for job in changes["jobs"]):
                        break
        await through_a.cancel(blocker["id"])


async def test_losing_the_database_answers_32009_and_503_then_resumes(
    start_on: StartServer,
) -> None:
    """PostgreSQL stops: requests get -32009 and /healthz 503; it starts again: the same
    server answers and runs jobs, with no restart, and its log holds no traceback."""
    with running_cluster() as own:
        url = own.dsn()
        server = start_on(url, "--time-scale", "0.01")
        async with Client(server.url) as client:
            before = await client.submit("reverse", "before")
            assert (await client.wait(before["id"], 10))["status"] == "done"
            own.stop()
            await until_status(server, 503)
            assert health(server)[1]["storage"] == "unavailable"
            with pytest.raises(StorageUnavailable):
                await client.status(before["id"])
            with pytest.raises(StorageUnavailable):
                await client.submit("reverse", "during")
            own.start()
            await until_status(server, 200)
            after = await client.submit("reverse", "after")
            assert (await client.wait(after["id"], 10))["status"] == "done"
            assert await client.result(before["id"]) == "erofeb"
        assert server.stop() == 0
        assert server.process.stderr is not None
        log = server.process.stderr.read()
        assert "Traceback" not in log
        assert "lost the database" in log


async def until_status(server: ServerProcess, status: int, timeout: float = 10.0) -> None:
    """Poll /healthz until it answers `status`."""
    deadline = time.monotonic() + timeout
    while health(server)[0] != status:
        if time.monotonic() > deadline:
            answer = health(server)
            server.process.kill()
            assert server.process.stderr is not None
            raise AssertionError(
                f"/healthz never answered {status}: {answer}; {server.process.stderr.read()}"
            )
        await asyncio.sleep(0.05)


async def test_a_batch_of_submits_keeps_its_order(pg_url: str, start_on: StartServer) -> None:
    """The submits of one batch, committed together, run in the batch's order."""
    server = start_on(pg_url, "--time-scale", "0")
    batch = [
        {"jsonrpc": "2.0", "method": "submit", "params": [n % 3 + 1, f"job {n}"], "id": n}
        for n in range(300)
    ]
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + "/rpc", json=batch) as reply,
    ):
        answers = await reply.json()
    assert [answer["id"] for answer in answers] == list(range(300))
    ids = [answer["result"]["id"] for answer in answers]
    found = await until_finished(pg_url, len(ids), timeout=30)
    assert [row.id for row in found] == ids
    assert_one_at_a_time(found)
