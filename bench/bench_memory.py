"""Memory per queued job with 100 000 queued, and `status` latency at 100 000 jobs vs 100."""

from __future__ import annotations

from bench.common import LoadResult, Row, Rpc, Server, log, rpc_body, run_load

JOBS = 100_000
FEW = 100
TEXT = "hello world"
LATENCY_DURATION = 1.5
ROUNDS = 3


def rows() -> list[Row]:
    few_runs: list[LoadResult] = []
    many_runs: list[LoadResult] = []
    with (
        Server.taskrpc("--time-scale", "1000", "--max-queued", str(JOBS)) as server,
        Server.taskrpc("--time-scale", "1000") as few_server,
    ):
        rpc, few_rpc = Rpc(server.port), Rpc(few_server.port)
        # Warm the request path (an unknown id is an error answer) before the baseline RSS.
        for warm in (server, few_server):
            run_load(warm, rpc_body("status", {"id": "x" * 16}), connections=1, duration=0.5)
        before = server.rss()
        log(f"memory: submitting {JOBS:,} jobs")
        ids = rpc.submit_many("reverse", TEXT, JOBS, batch=500)
        after = server.rss()
        few_ids = few_rpc.submit_many("reverse", TEXT, FEW)
        # Two servers, one with FEW jobs and one with JOBS, measured in turns, so that the
        # machine's drift hits both alike.
        for round_ in range(ROUNDS):
            log(f"status latency, {FEW} vs {JOBS:,} jobs, round {round_ + 1}/{ROUNDS}")
            few_runs.append(_status_latency(few_server, few_ids[-1]))
            many_runs.append(_status_latency(server, ids[-1]))
        health = rpc.health()
        rpc.close()
        few_rpc.close()
    few, many = _median_run(few_runs), _median_run(many_runs)
    per_job = (after - before) / JOBS
    ratio = many.p50_ms / few.p50_ms
    return [
        Row(
            f"memory per queued job, {JOBS:,} queued ({len(TEXT)}-char texts)",
            f"{per_job:,.0f} B/job",
            f"{before / 2**20:.1f} MiB RSS before",
            None,
            "< 1 KiB per job",
            per_job < 1024,
            f"RSS {before / 2**20:.1f} → {after / 2**20:.1f} MiB; {health['queued']:,} queued",
        ),
        Row(
            f"status p50 latency at {JOBS:,} jobs vs {FEW} (1 client)",
            f"{many.p50_ms:.3f} ms",
            f"{few.p50_ms:.3f} ms",
            ratio,
            "≤ 1.2 x",
            ratio <= 1.2 and not (many.errors or few.errors),
            _p99(many, few),
        ),
    ]


def _p99(many: LoadResult, few: LoadResult) -> str:
    return f"p99 {many.p99_ms:.3f} ms vs {few.p99_ms:.3f} ms"


def _status_latency(server: Server, job_id: str) -> LoadResult:
    """One client asking for one job's status, back to back."""
    body = rpc_body("status", {"id": job_id})
    return run_load(server, body, connections=1, duration=LATENCY_DURATION)


def _median_run(runs: list[LoadResult]) -> LoadResult:
    """The run with the median p50 latency."""
    return sorted(runs, key=lambda run: run.p50_ms)[len(runs) // 2]
