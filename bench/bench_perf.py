"""Issue 13 §2: the event loop, the cost of logging, and the job record's size.

- `status` calls/s on uvloop against asyncio's loop, each beside the bare aiohttp handler
  on the same loop (so the ≥ 0.8 x bare bar is kept per loop);
- the drain (submit 10 000 jobs → all done) at the default log level against `warning`;
- bytes per queued job as `tracemalloc` counts them, in-process (no allocator slack).
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from typing import Any

from backend.store import Limits, MemoryStore
from bench.common import LoadResult, Row, Rpc, Server, job_file, log, median, rpc_body, run_load

ROUNDS = 3
DURATION = 1.5
DRAIN_JOBS = 10_000
DRAIN_BATCH = 100
DRAIN_ROUNDS = 6  # the drain is the noisiest row: more rounds, order alternated
MEMORY_JOBS = 100_000
TEXT_CHARS = 10  # the comparison: arq's 381 B per queued job at a 10-character text
ARQ_BYTES = 381  # measured by `make bench-peers` (redis INFO used_memory), 381-397 B


def rows() -> list[Row]:
    return [*loops(), drain_by_log_level(), memory_per_job()]


def loops() -> list[Row]:
    """`status` calls/s, 10 connections, on uvloop and on asyncio's loop, rounds interleaved."""
    rates: dict[str, list[LoadResult]] = {}
    for loop in ("asyncio", "uvloop"):
        rates[loop], rates[f"bare {loop}"] = [], []
    with (
        Server.taskrpc("--db", ":memory:", "--time-scale", "1000", "--loop", "asyncio") as plain,
        Server.taskrpc("--db", ":memory:", "--time-scale", "1000", "--loop", "uvloop") as fast,
    ):
        bodies = {}
        for name, server in (("asyncio", plain), ("uvloop", fast)):
            rpc = Rpc(server.port)
            rpc.call("submit", type="reverse", data="hello")
            job: dict[str, Any] = rpc.call("submit", type="reverse", data="hello world")
            bodies[name] = rpc_body("status", {"id": job["id"]})
            rpc.close()
        with (
            job_file(job) as path,
            Server.bare(path, "--loop", "asyncio") as bare_plain,
            Server.bare(path, "--loop", "uvloop") as bare_fast,
        ):
            servers = {
                "asyncio": plain,
                "uvloop": fast,
                "bare asyncio": bare_plain,
                "bare uvloop": bare_fast,
            }
            for round_ in range(ROUNDS):
                log(f"status on uvloop and asyncio, with the bare handler, round {round_ + 1}")
                for name, server in servers.items():
                    body = bodies[name.removeprefix("bare ")]
                    rates[name].append(run_load(server, body, connections=10, duration=DURATION))
    rate = {name: median([r.rate for r in runs]) for name, runs in rates.items()}
    cpu = {name: median([r.server_cpu_us for r in runs]) for name, runs in rates.items()}
    out = [
        Row(
            "status calls/s, uvloop vs asyncio loop (10 conn.)",
            f"{rate['uvloop']:,.0f}/s",
            f"{rate['asyncio']:,.0f}/s asyncio",
            rate["uvloop"] / rate["asyncio"],
            "≥ 1.05 x (keeps uvloop)",
            rate["uvloop"] >= 1.05 * rate["asyncio"],
            f"server CPU/call {cpu['uvloop']:.0f} µs vs {cpu['asyncio']:.0f} µs; memory-only",
        )
    ]
    for loop in ("uvloop", "asyncio"):
        ratio = rate[loop] / rate[f"bare {loop}"]
        out.append(
            Row(
                f"status calls/s vs bare aiohttp, both on {loop} (10 conn.)",
                f"{rate[loop]:,.0f}/s",
                f"{rate[f'bare {loop}']:,.0f}/s bare",
                ratio,
                "≥ 0.8 x bare",
                ratio >= 0.8,
                f"server CPU/call {cpu[loop]:.0f} µs vs bare {cpu[f'bare {loop}']:.0f} µs",
            )
        )
    return out


def _drain(server: Server) -> tuple[float, float]:
    """(jobs/s, server CPU µs per job) from the first submit of DRAIN_JOBS (batches of 100)
    to the last one done."""
    rpc = Rpc(server.port)
    cpu = server.cpu_seconds()
    start = time.perf_counter()
    ids = rpc.submit_many("reverse", "hello worl", DRAIN_JOBS, batch=DRAIN_BATCH)
    last = rpc.call("wait", id=ids[-1], timeout=60)
    elapsed = time.perf_counter() - start
    cpu = server.cpu_seconds() - cpu
    rpc.close()
    if last["status"] != "done":
        raise RuntimeError(f"the drain did not finish: {last['status']}")
    return DRAIN_JOBS / elapsed, cpu / DRAIN_JOBS * 1e6


def drain_by_log_level() -> Row:
    """The drain at the default level (info: one line per job) against `warning` (none).

    The order alternates round by round (info first, then warning first): on a shared
    machine the second of two back-to-back runs was often the slower.
    """
    rates: dict[str, list[float]] = {"info": [], "warning": []}
    cpus: dict[str, list[float]] = {"info": [], "warning": []}
    for round_ in range(DRAIN_ROUNDS):
        log(f"drain of {DRAIN_JOBS:,} jobs at info and at warning, round {round_ + 1}")
        levels = ("info", "warning") if round_ % 2 == 0 else ("warning", "info")
        for level in levels:
            flags = ("--db", ":memory:", "--time-scale", "0", "--max-finished", str(DRAIN_JOBS))
            with Server.taskrpc(*flags, "--log-level", level) as server:
                rate, cpu = _drain(server)
            rates[level].append(rate)
            cpus[level].append(cpu)
    ratios = [i / w for i, w in zip(rates["info"], rates["warning"], strict=True)]
    ratio = median(ratios)
    return Row(
        f"drain {DRAIN_JOBS:,} jobs at log level info (the default) vs warning",
        f"{median(rates['info']):,.0f} jobs/s",
        f"{median(rates['warning']):,.0f} jobs/s warning",
        ratio,
        "≥ 0.9 x warning",
        ratio >= 0.9,
        f"median of {DRAIN_ROUNDS} rounds' ratios ({', '.join(f'{r:.2f}' for r in ratios)}); "
        f"server CPU/job {median(cpus['info']):.0f} µs vs {median(cpus['warning']):.0f} µs; "
        "memory-only, time scale 0, batches of 100, log to a file",
    )


async def _traced_bytes_per_job(jobs: int) -> float:
    store = MemoryStore(Limits(max_queued=jobs))
    await store.submit("reverse", "x" * TEXT_CHARS)  # first-use allocations out of the count
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1, jobs):
            # A fresh text, as a parsed request brings it: counted if the store keeps it (or
            # what it keeps instead), freed if not.
            await store.submit("reverse", f"{n:0{TEXT_CHARS}d}")
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / (jobs - 1)


def memory_per_job() -> Row:
    """Bytes each queued job holds in a MemoryStore (record, id, text, indexes), tracemalloc."""
    log(f"memory: {MEMORY_JOBS:,} queued jobs under tracemalloc")
    per_job = asyncio.run(_traced_bytes_per_job(MEMORY_JOBS))
    return Row(
        f"memory per queued job, tracemalloc, {MEMORY_JOBS:,} queued ({TEXT_CHARS}-char texts)",
        f"{per_job:,.0f} B/job",
        f"{ARQ_BYTES} B arq",
        per_job / ARQ_BYTES,
        "≤ arq's",
        per_job <= ARQ_BYTES,
        "in-process MemoryStore, the text included; the server's RSS row adds allocator slack; "
        "arq's figure is redis's used_memory from `make bench-peers`",
    )
