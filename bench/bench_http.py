"""HTTP benchmarks: `status` and `submit` throughput, and `status` latency under a busy worker."""

from __future__ import annotations

import math
import time
from typing import Any

from bench.common import (
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

ROUNDS = 3  # baseline and target alternate, so drift on a shared machine hits both
DURATION = 2.5  # seconds measured per run, after a 0.5 s warm-up
BATCH = 100
LATENCY_CLIENTS = 50
LARGEST_REPEAT = 1413  # n(n+1)/2 <= 1 000 000, the default max result length
BUSY_BACKLOG = 2500  # largest-repeat jobs queued before a busy run; checked after it


def _queued_status_job(rpc: Rpc) -> dict[str, Any]:
    """A queued job behind a sleeping one (time scale 1000): the worker is idle."""
    rpc.call("submit", type="reverse", data="hello")
    job: dict[str, Any] = rpc.call("submit", type="reverse", data="hello world")
    return job


def _cpu_note(target: list[LoadResult], base: list[LoadResult]) -> str:
    ours = median([r.server_cpu_us for r in target])
    bare = median([r.server_cpu_us for r in base])
    return f"server CPU/call {ours:.0f} µs vs bare {bare:.0f} µs (x{bare / ours:.2f} as calls/s)"


def status_and_submit() -> tuple[list[Row], dict[int, float]]:
    """Rows for `status` at 10 and 100 connections and `submit`, single and batched."""
    rows: list[Row] = []
    bare_rates: dict[int, list[LoadResult]] = {10: [], 100: []}
    ours: dict[int, list[LoadResult]] = {10: [], 100: []}
    single: list[LoadResult] = []
    batched: list[LoadResult] = []
    dispatch_only: list[LoadResult] = []
    with Server.taskrpc("--time-scale", "1000", "--max-queued", "10000000") as server:
        rpc = Rpc(server.port)
        job = _queued_status_job(rpc)
        status = rpc_body("status", {"id": job["id"]})
        submit = rpc_body("submit", {"type": "reverse", "data": "hello world"})
        batch = batch_body("submit", {"type": "reverse", "data": "hello world"}, BATCH)
        # The same pipeline with a method that creates nothing: what dispatch alone allows.
        types = batch_body("types", {}, BATCH)
        with job_file(rpc.call("status", id=job["id"])) as path, Server.bare(path) as bare:
            for round_ in range(ROUNDS):
                for connections in (10, 100):
                    log(f"status, {connections} connections, round {round_ + 1}/{ROUNDS}")
                    bare_rates[connections].append(
                        run_load(bare, status, connections=connections, duration=DURATION)
                    )
                    ours[connections].append(
                        run_load(server, status, connections=connections, duration=DURATION)
                    )
                log(f"submit, single and batched; batched types, round {round_ + 1}/{ROUNDS}")
                single.append(run_load(server, submit, connections=10, duration=DURATION))
                batched.append(run_load(server, batch, connections=4, duration=DURATION))
                dispatch_only.append(run_load(server, types, connections=4, duration=DURATION))
        rpc.close()
    for connections in (10, 100):
        ratios = [
            o.rate / b.rate for o, b in zip(ours[connections], bare_rates[connections], strict=True)
        ]
        ratio = median(ratios)
        errors = sum(r.errors for r in ours[connections])
        rows.append(
            Row(
                f"status calls/s, {connections} connections",
                f"{median([r.rate for r in ours[connections]]):,.0f}/s",
                f"{median([r.rate for r in bare_rates[connections]]):,.0f}/s bare",
                ratio,
                "≥ 0.8 x bare",
                ratio >= 0.8 and errors == 0,
                _cpu_note(ours[connections], bare_rates[connections])
                + (f"; {errors} errors" if errors else ""),
            )
        )
    bare10 = median([r.rate for r in bare_rates[10]])
    single_rate = median([r.rate for r in single])
    rows.append(
        Row(
            "submit jobs/s, single calls (10 conn.)",
            f"{single_rate:,.0f}/s",
            f"{bare10:,.0f}/s bare",
            single_rate / bare10,
            "report",
            None,
            _cpu_note(single, bare_rates[10]) + _errors(single),
        )
    )
    jobs_rate = median([r.rate for r in batched]) * BATCH
    rows.append(
        Row(
            f"submit jobs/s, batches of {BATCH} (4 conn.)",
            f"{jobs_rate:,.0f} jobs/s",
            f"{bare10:,.0f}/s bare",
            jobs_rate / bare10,
            "≥ 20 000 jobs/s",
            jobs_rate >= 20_000 and not any(r.errors for r in batched),
            f"server CPU/job {median([r.server_cpu_us for r in batched]) / BATCH:.0f} µs; "
            f"batches of {BATCH} `types` calls (no job made) "
            f"{median([r.rate for r in dispatch_only]) * BATCH:,.0f} calls/s, "
            f"{median([r.server_cpu_us for r in dispatch_only]) / BATCH:.0f} µs CPU each"
            + _errors(batched + dispatch_only),
        )
    )
    return rows, {c: median([r.rate for r in bare_rates[c]]) for c in (10, 100)}


def _errors(results: list[LoadResult]) -> str:
    errors = sum(r.errors for r in results)
    return f"; {errors} errors" if errors else ""


def _fill(rpc: Rpc, backlog: int) -> None:
    text = "a" * LARGEST_REPEAT
    queued = rpc.health()["queued"]
    if queued < backlog:
        rpc.submit_many("repeat", text, backlog - queued, batch=100)


def latency_busy_vs_idle() -> list[Row]:
    """`status` latency, 50 clients, with the worker idle and running the largest `repeat`."""
    idle: list[LoadResult] = []
    busy: list[LoadResult] = []
    drained = 0
    with Server.taskrpc("--time-scale", "1000") as idle_server:
        idle_rpc = Rpc(idle_server.port)
        idle_body = rpc_body("status", {"id": _queued_status_job(idle_rpc)["id"]})
        for round_ in range(ROUNDS):
            log(f"status latency, {LATENCY_CLIENTS} clients, idle and busy, round {round_ + 1}")
            idle.append(
                run_load(idle_server, idle_body, connections=LATENCY_CLIENTS, duration=DURATION)
            )
            # A fresh server per busy run: its worker must not burn CPU during idle runs.
            with Server.taskrpc("--time-scale", "0", "--max-finished", "20") as busy_server:
                rpc = Rpc(busy_server.port)
                _fill(rpc, BUSY_BACKLOG)
                target = rpc.call("submit", type="reverse", data="hello world")
                _fill(rpc, BUSY_BACKLOG)
                time.sleep(0.2)
                if rpc.health()["running"] is not True:
                    raise RuntimeError("the busy server's worker is not running a job")
                body = rpc_body("status", {"id": target["id"]})
                busy.append(
                    run_load(busy_server, body, connections=LATENCY_CLIENTS, duration=DURATION)
                )
                health = rpc.health()
                if not health["running"] or health["queued"] == 0:
                    drained += 1
                rpc.close()
        idle_rpc.close()
    rows = []
    note = "worker ran out of jobs during a busy run!" if drained else "worker busy throughout"
    for name, attr in (("p50", "p50_ms"), ("p99", "p99_ms")):
        busy_ms = median([getattr(r, attr) for r in busy])
        idle_ms = median([getattr(r, attr) for r in idle])
        ratios = [getattr(b, attr) / getattr(i, attr) for b, i in zip(busy, idle, strict=True)]
        ratio = median(ratios)
        p99 = name == "p99"
        rows.append(
            Row(
                f"status {name} latency, {LATENCY_CLIENTS} clients, largest repeat running",
                f"{busy_ms:.2f} ms busy",
                f"{idle_ms:.2f} ms idle",
                ratio,
                "≤ 2 x idle" if p99 else "report",
                (ratio <= 2.0 and not drained) if p99 else None,
                (
                    f"{note}; calls/s busy {median([r.rate for r in busy]):,.0f} "
                    f"vs idle {median([r.rate for r in idle]):,.0f}"
                )
                + _errors(busy + idle),
            )
        )
    if any(math.isnan(r.p99_ms) for r in busy + idle):
        raise RuntimeError("a latency run measured no request")
    return rows
