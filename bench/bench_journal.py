"""The SQLite journal against memory only, measured side by side in one run.

Submits (batched, and single calls from 10 connections), `status` calls/s against the bare
aiohttp handler, the gap between two jobs, the restart time with 100 000 queued and 10 000
finished jobs, and memory per queued job.

`status` is asked of both servers in the state the submit rounds leave them in (about
100 000 queued jobs, the first running), and the memory-only server is the control: the
journaled server's CPU per call against it is what "no disk read on the path" means; the
ratio against the bare handler is the request path's (the same for both servers).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backend.journal import Journal
from backend.journaled import JournaledStore
from backend.store import Limits, MemoryStore
from bench.bench_worker import cycle
from bench.common import (
    HOST,
    ROOT,
    LoadResult,
    Row,
    Rpc,
    Server,
    batch_body,
    job_file,
    log,
    median,
    rpc_body,
    run_load,
)

ROUNDS = 3  # memory and journal alternate, so drift on a shared machine hits both
DURATION = 2.5
BATCH = 100
GAP_JOBS = 500
RESTART_QUEUED = 100_000
RESTART_FINISHED = 10_000
MEMORY_JOBS = 100_000
TEXT = "hello world"


def rows() -> list[Row]:
    """Every journal row."""
    return [*_throughput(), _gap(), _restart(), _memory()]


def _throughput() -> list[Row]:
    batched: dict[str, list[LoadResult]] = {"memory": [], "journal": []}
    single: dict[str, list[LoadResult]] = {"memory": [], "journal": []}
    status: dict[str, list[LoadResult]] = {"bare": [], "memory": [], "journal": []}
    flags = ("--time-scale", "1000", "--max-queued", "10000000")
    with (
        Server.taskrpc(*flags, "--db", ":memory:") as memory,
        Server.taskrpc(*flags) as journal,
    ):
        asks = {
            name: _status_body(server)
            for name, server in (("memory", memory), ("journal", journal))
        }
        submit = rpc_body("submit", {"type": "reverse", "data": TEXT})
        batch = batch_body("submit", {"type": 1, "data": TEXT}, BATCH)
        rpc = Rpc(journal.port)
        job = rpc.post(json.loads(asks["journal"]))["result"]
        rpc.close()
        with job_file(job) as path, Server.bare(path) as bare:
            asks["bare"] = asks["journal"]
            servers = {"bare": bare, "memory": memory, "journal": journal}
            for round_ in range(ROUNDS):
                log(f"journal vs memory: submits and status, round {round_ + 1}/{ROUNDS}")
                for name, server in (("memory", memory), ("journal", journal)):
                    batched[name].append(run_load(server, batch, connections=4, duration=DURATION))
                    single[name].append(run_load(server, submit, connections=10, duration=DURATION))
                for name in status:
                    status[name].append(
                        run_load(servers[name], asks[name], connections=10, duration=DURATION)
                    )
        queued = {
            name: _queued(server) for name, server in (("memory", memory), ("journal", journal))
        }
    state = (
        f"asked for the 2nd job of a queue of {queued['journal']:,} (memory-only: "
        f"{queued['memory']:,}) with the 1st running, after the submit rounds"
    )
    return [
        _ratio_row(
            f"journal: submit jobs/s, batches of {BATCH} (4 conn.)",
            batched,
            ("journal", "memory"),
            BATCH,
            0.7,
        ),
        _ratio_row(
            "journal: submit jobs/s, single calls (10 conn.)",
            single,
            ("journal", "memory"),
            1,
            0.5,
        ),
        _ratio_row(
            "journal: status calls/s (10 conn.)", status, ("journal", "bare"), 1, 0.8, state
        ),
        _cpu_row(
            "journal: status, server CPU per call vs memory-only, same state (10 conn.)",
            status,
            0.9,
        ),
    ]


def _status_body(server: Server) -> bytes:
    """A `status` call for the 2nd job of `server`, queued behind a 1st that runs "forever"."""
    rpc = Rpc(server.port)
    rpc.call("submit", type="reverse", data="hello")  # runs 1000 x its delay: the next one waits
    job = rpc.call("submit", type="reverse", data=TEXT)
    rpc.close()
    return rpc_body("status", {"id": job["id"]})


def _queued(server: Server) -> int:
    rpc = Rpc(server.port)
    queued: int = rpc.health()["queued"]
    rpc.close()
    return queued


def _cpu_row(what: str, runs: dict[str, list[LoadResult]], target: float) -> Row:
    """ "No disk read on the path": the journaled server's CPU per `status` call against the
    memory-only one's in the same state. CPU per call, not calls/s: on a loaded machine the
    rates of two servers measured one after the other differ by more than their code does."""
    ours = median([r.server_cpu_us for r in runs["journal"]])
    base = median([r.server_cpu_us for r in runs["memory"]])
    rates = {name: median([r.rate for r in runs[name]]) for name in ("journal", "memory")}
    return Row(
        what,
        f"{ours:.0f} µs",
        f"{base:.0f} µs memory",
        base / ours,
        f"≥ {target} x memory (calls per CPU second)",
        base / ours >= target,
        f"{rates['journal']:,.0f} vs {rates['memory']:,.0f} calls/s; the same code answers "
        "both, from memory",
    )


def _ratio_row(
    what: str,
    runs: dict[str, list[LoadResult]],
    names: tuple[str, str],
    per_call: int,
    target: float,
    note: str = "",
) -> Row:
    ours, base = names
    ratio = median([o.rate / b.rate for o, b in zip(runs[ours], runs[base], strict=True)])
    errors = sum(r.errors for name in names for r in runs[name])
    return Row(
        what,
        f"{median([r.rate for r in runs[ours]]) * per_call:,.0f}/s",
        f"{median([r.rate for r in runs[base]]) * per_call:,.0f}/s {base}",
        ratio,
        f"≥ {target} x {base}",
        ratio >= target and errors == 0,
        f"p50 {median([r.p50_ms for r in runs[ours]]):.2f} ms vs "
        f"{median([r.p50_ms for r in runs[base]]):.2f} ms; server CPU/"
        f"{'job' if per_call > 1 else 'call'} "
        f"{median([r.server_cpu_us for r in runs[ours]]) / per_call:.0f} µs vs "
        f"{median([r.server_cpu_us for r in runs[base]]) / per_call:.0f} µs"
        + (f"; {errors} errors" if errors else "")
        + (f"; {note}" if note else ""),
    )


async def _both_cycles() -> tuple[tuple[list[float], float], tuple[list[float], float]]:
    limits = Limits(time_scale=0.0)
    memory = await cycle(MemoryStore(limits), GAP_JOBS)
    with tempfile.TemporaryDirectory() as folder:
        store = JournaledStore(str(Path(folder) / "gap.db"), limits)
        await store.open()
        try:
            journal = await cycle(store, GAP_JOBS)
        finally:
            store.close()
            await store.shutdown()
    return memory, journal


def _gap() -> Row:
    log(f"journal: gap between jobs, {GAP_JOBS} jobs, in-process")
    (memory_gaps, memory_cycle), (gaps, cycle) = asyncio.run(_both_cycles())
    gap_ms = median(gaps) * 1000
    return Row(
        "journal: gap job done → next running (as clients see it)",
        f"{gap_ms:.3f} ms median",
        f"{median(memory_gaps) * 1000:.3f} ms memory",
        None,
        "median ≤ 2 ms",
        gap_ms <= 2.0,
        f"the end and the next start share one commit; the worker's whole cycle per job is "
        f"{cycle * 1000:.2f} ms journaled vs {memory_cycle * 1000:.3f} ms memory-only "
        "(one fsync per job)",
    )


def _build(path: Path) -> None:
    """A journal of RESTART_QUEUED queued and RESTART_FINISHED done jobs, written directly."""
    journal = Journal(str(path))
    journal.open()
    connection = journal.connection
    assert connection is not None
    now = time.time()
    finished = (
        (n, f"d{n:015d}", "reverse", TEXT, 2.0, "done", now, now, now, TEXT[::-1], None, 1)
        for n in range(RESTART_FINISHED)
    )
    queued = (
        (n, f"q{n:015d}", "reverse", TEXT, 2.0, "queued", now, None, None, None, None, 0)
        for n in range(RESTART_FINISHED, RESTART_FINISHED + RESTART_QUEUED)
    )
    insert = "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    connection.execute("BEGIN")
    connection.executemany(insert, finished)
    connection.executemany(insert, queued)
    connection.execute("COMMIT")
    asyncio.run(journal.stop())


def _serving_after(*flags: str) -> float:
    """Seconds from starting `taskrpc-server FLAGS` to its first answered `status` call."""
    began = time.perf_counter()
    with Server.taskrpc("--time-scale", "1000", *flags) as server:
        rpc = Rpc(server.port)
        rpc.call("list", limit=1)
        took = time.perf_counter() - began
        rpc.close()
    return took


def _restart() -> Row:
    log(f"journal: restart with {RESTART_QUEUED:,} queued and {RESTART_FINISHED:,} finished")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.db"
        _build(path)
        size = path.stat().st_size
        full = median([_serving_after("--db", str(path)) for _ in range(ROUNDS)])
    empty = median([_serving_after("--db", ":memory:") for _ in range(ROUNDS)])
    python = _python_start()
    return Row(
        f"journal: restart, {RESTART_QUEUED:,} queued + {RESTART_FINISHED:,} finished",
        f"{full:.2f} s to serving",
        f"{empty:.2f} s empty",
        full / empty,
        "≤ 3 s",
        full <= 3.0,
        f"file {size / 2**20:.1f} MiB; python -c pass {python:.2f} s; "
        "from process start to the first answered call",
    )


def _python_start() -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, cwd=ROOT)
    return time.perf_counter() - began


def _memory() -> Row:
    per_job: dict[str, float] = {}
    for name, flags in (("memory", ("--db", ":memory:")), ("journal", ())):
        log(f"journal: memory per queued job, {MEMORY_JOBS:,} queued, {name}")
        argv = ("--time-scale", "1000", "--max-queued", str(MEMORY_JOBS + 10), *flags)
        with Server.taskrpc(*argv) as server:
            rpc = Rpc(server.port)
            run_load(server, rpc_body("status", {"id": "x" * 16}), connections=1, duration=0.5)
            before = server.rss()
            rpc.submit_many("reverse", TEXT, MEMORY_JOBS, batch=500)
            per_job[name] = (server.rss() - before) / MEMORY_JOBS
            rpc.close()
    return Row(
        f"journal: memory per queued job, {MEMORY_JOBS:,} queued",
        f"{per_job['journal']:,.0f} B/job",
        f"{per_job['memory']:,.0f} B/job memory",
        per_job["journal"] / per_job["memory"],
        "< 1 KiB per job",
        per_job["journal"] < 1024,
        f"RSS growth over {MEMORY_JOBS:,} submits of {len(TEXT)}-char texts ({HOST})",
    )
