"""Memory per queued job with 100 000 queued, and `status` latency at 100 000 jobs vs 100."""

from __future__ import annotations

from bench.common import LoadResult, Row, Rpc, Server, log, rpc_body, run_load

JOBS = 100_000
FEW = 100
TEXT = "hello world"
LATENCY_DURATION = 2.0


def rows() -> list[Row]:
    with Server.taskrpc("--time-scale", "1000", "--max-queued", str(JOBS)) as server:
        rpc = Rpc(server.port)
        # Warm the request path (an unknown id is an error answer) before the baseline RSS.
        run_load(server, rpc_body("status", {"id": "x" * 16}), connections=1, duration=0.5)
        before = server.rss()
        log(f"memory: submitting {JOBS:,} jobs")
        ids = rpc.submit_many("reverse", TEXT, FEW)
        few = run_load(
            server, rpc_body("status", {"id": ids[-1]}), connections=1, duration=LATENCY_DURATION
        )
        ids += rpc.submit_many("reverse", TEXT, JOBS - FEW, batch=500)
        after = server.rss()
        many = run_load(
            server, rpc_body("status", {"id": ids[-1]}), connections=1, duration=LATENCY_DURATION
        )
        health = rpc.health()
        rpc.close()
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
