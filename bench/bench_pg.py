"""Several servers on one PostgreSQL database: `status`, batched submits, the gap between two
jobs on the runner, and failover time. PostgreSQL runs as a throw-away cluster (tests/pg.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import Iterator

import asyncpg

from bench.common import Row, Rpc, Server, batch_body, job_file, log, median, rpc_body, run_load

ROUNDS = 3
DURATION = 2.5
BATCH = 100
GAP_JOBS = 500
FAILOVER_ROUNDS = 5


@contextlib.contextmanager
def _cluster() -> Iterator[str]:
    """A started throw-away PostgreSQL; yields its URL."""
    from tests.pg import INSTALL_HINT, find_bin, running_cluster  # initdb as a non-root user

    if find_bin() is None:
        raise RuntimeError(INSTALL_HINT)
    with running_cluster() as cluster:
        yield cluster.dsn()


def _status_and_submit(url: str) -> list[Row]:
    """`status` on a cluster server against the bare handler; batched submits."""
    bare_rates, ours, batched = [], [], []
    # Time scale 1000: the first job sleeps for ages, so the status job stays queued.
    flags = ("--db", url, "--time-scale", "1000", "--max-queued", "10000000")
    with Server.taskrpc(*flags) as runner, Server.taskrpc(*flags) as standby:
        rpc = Rpc(standby.port)
        rpc.call("submit", type="reverse", data="hello")
        job = rpc.call("submit", type="reverse", data="hello world")
        status = rpc_body("status", {"id": job["id"]})
        batch = batch_body("submit", {"type": "reverse", "data": "hello world"}, BATCH)
        with job_file(rpc.call("status", id=job["id"])) as path, Server.bare(path) as bare:
            for round_ in range(ROUNDS):
                log(f"cluster: status and batched submits, round {round_ + 1}/{ROUNDS}")
                bare_rates.append(run_load(bare, status, connections=10, duration=DURATION))
                ours.append(run_load(standby, status, connections=10, duration=DURATION))
                batched.append(run_load(runner, batch, connections=4, duration=DURATION))
        rpc.close()
    ratio = median([o.rate / b.rate for o, b in zip(ours, bare_rates, strict=True)])
    jobs_rate = median([r.rate for r in batched]) * BATCH
    errors = sum(r.errors for r in ours + batched)
    return [
        Row(
            "cluster: status calls/s on a standby, 10 connections",
            f"{median([r.rate for r in ours]):,.0f}/s",
            f"{median([r.rate for r in bare_rates]):,.0f}/s bare",
            ratio,
            "≥ 0.3 x bare",
            ratio >= 0.3 and errors == 0,
            "answered from the server's mirror of the jobs table (no query per call)",
        ),
        Row(
            f"cluster: submit jobs/s, batches of {BATCH} (4 conn.)",
            f"{jobs_rate:,.0f} jobs/s",
            "—",
            None,
            "≥ 5 000 jobs/s",
            jobs_rate >= 5000 and errors == 0,
            f"each submit committed before it is answered; {errors} errors",
        ),
    ]


async def _rows(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


def _gap(url: str) -> Row:
    """Median time from one job's recorded finish to the next one's start, on the runner."""
    log(f"cluster: gap between jobs, {GAP_JOBS} jobs at time scale 0")
    with Server.taskrpc("--db", url, "--time-scale", "0", "--max-queued", "10000000") as server:
        rpc = Rpc(server.port)
        rpc.submit_many("reverse", "hello world", GAP_JOBS)
        deadline = time.monotonic() + 120
        while rpc.call("list", status="done", limit=1)["counts"]["done"] < GAP_JOBS:
            if time.monotonic() > deadline:
                raise RuntimeError("the jobs did not finish in 120 s")
            time.sleep(0.2)
        rpc.close()
    rows = asyncio.run(_rows(url, "SELECT started_at, finished_at FROM taskrpc.jobs ORDER BY seq"))
    gaps = [
        (after["started_at"] - before["finished_at"]) * 1000
        for before, after in itertools.pairwise(rows)
    ]
    value = median(gaps)
    return Row(
        "cluster: gap job done → next running, on the runner, scale 0",
        f"{value:.2f} ms median",
        "—",
        None,
        "median ≤ 5 ms",
        value <= 5,
        f"p90 {sorted(gaps)[len(gaps) * 9 // 10]:.2f} ms; times from the database's clock",
    )


def _failover(url: str) -> Row:
    """Median of kill -9 of the runner → its interrupted job starts again on a standby."""
    times: list[float] = []
    flags = ("--db", url, "--time-scale", "1")
    servers = [Server.taskrpc(*flags), Server.taskrpc(*flags)]
    try:
        for round_ in range(FAILOVER_ROUNDS):
            log(f"cluster: failover, round {round_ + 1}/{FAILOVER_ROUNDS}")
            runner = next(s for s in servers if Rpc(s.port).health().get("role") == "runner")
            job = Rpc(runner.port).call("submit", type="repeat", data="interrupted")
            while Rpc(runner.port).call("status", id=job["id"])["status"] != "running":
                time.sleep(0.01)
            runner.process.send_signal(signal.SIGKILL)
            killed = time.time()
            servers.remove(runner)
            runner.stop()
            query = "SELECT started_at FROM taskrpc.jobs WHERE id = $1 AND attempts = 2"
            while not (found := asyncio.run(_rows(url, query, job["id"]))):
                time.sleep(0.02)
            times.append(found[0]["started_at"] - killed)
            Rpc(servers[0].port).call("cancel", id=job["id"])
            servers.append(Server.taskrpc(*flags))
    finally:
        for server in servers:
            server.stop()
    value = median(times)
    return Row(
        f"cluster: failover, runner kill -9 → its job reruns on a standby, median of {len(times)}",
        f"{value:.2f} s",
        "—",
        None,
        "≤ 3 s",
        value <= 3,
        f"each: {', '.join(f'{t:.2f}' for t in times)} s (standbys try the lock once a second)",
    )


def rows() -> list[Row]:
    """Every cluster row, each on a fresh database of one throw-away PostgreSQL."""
    try:
        with _cluster() as url:
            found = _status_and_submit(url)
        with _cluster() as url:
            found.append(_gap(url))
        with _cluster() as url:
            found.append(_failover(url))
    except Exception as exc:  # PostgreSQL missing, most likely: one row says so
        return [Row("cluster rows", "not run", "—", None, "—", None, str(exc).splitlines()[0])]
    return found
