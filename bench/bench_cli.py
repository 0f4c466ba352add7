"""`taskrpc status ID` wall time against `python -c pass`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, Row, Rpc, Server, log, median

RUNS = 20


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, timeout=30)
    return time.perf_counter() - start


def rows() -> list[Row]:
    script = Path(sys.executable).with_name("taskrpc")
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    with Server.taskrpc("--time-scale", "1000") as server:
        rpc = Rpc(server.port)
        job = rpc.call("submit", type="reverse", data="hello world")
        rpc.close()
        log(f"CLI: taskrpc status ID and python -c pass, {RUNS} runs each, interleaved")
        command = [*cli, "--url", f"http://127.0.0.1:{server.port}", "status", job["id"]]
        _wall(command)  # first run: cold caches
        ours, bare = [], []
        for _ in range(RUNS):
            ours.append(_wall(command))
            bare.append(_wall([sys.executable, "-c", "pass"]))
    ours_ms, bare_ms = median(ours) * 1e3, median(bare) * 1e3
    return [
        Row(
            f"`taskrpc status ID` wall time, median of {RUNS}",
            f"{ours_ms:.0f} ms",
            f"{bare_ms:.0f} ms python -c pass",
            ours_ms / bare_ms,
            "report",
            None,
            f"{ours_ms - bare_ms:.0f} ms over bare interpreter start-up",
        )
    ]
