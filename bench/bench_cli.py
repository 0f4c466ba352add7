"""`taskrpc status ID` wall time against `python -c pass`, alone and four at once.

The commands run side by side (interleaved) in the same run, so machine load hits them
alike; the ratio is what the target is about (issue 12: ≤ 2.5 x). A third, reported,
is the floor (`bench/cli_floor.py`): the same call with only what issue 12 requires
(argparse, jsonrpcclient, a socket), nothing of ours.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import ROOT, Row, Rpc, Server, log, median

# Both commands run as an installed program does: with bytecode caches. Without this, a
# PYTHONDONTWRITEBYTECODE=1 environment recompiles the package on every run (~16 ms).
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
RUNS = 20
PARALLEL = 4
TARGET = 2.5  # x `python -c pass`, median of RUNS


def _wall(argv: Sequence[str], copies: int = 1) -> float:
    """Seconds until `copies` simultaneous runs of `argv` have all finished."""
    start = time.perf_counter()
    running = [
        subprocess.Popen(
            argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(copies)
    ]
    for process in running:
        if process.wait(timeout=60) != 0:
            raise RuntimeError(f"{argv} exited {process.returncode}")
    return time.perf_counter() - start


def _side_by_side(commands: Sequence[Sequence[str]], copies: int) -> list[float]:
    """Median wall time of each command, the commands interleaved, in milliseconds."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(RUNS):
        for command, taken in zip(commands, times, strict=True):
            taken.append(_wall(command, copies))
    return [median(taken) * 1e3 for taken in times]


def rows() -> list[Row]:
    script = Path(sys.executable).with_name("taskrpc")
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    with Server.taskrpc("--time-scale", "1000") as server:
        rpc = Rpc(server.port)
        job = rpc.call("submit", type="reverse", data="hello world")
        rpc.close()
        arguments = ["--url", f"http://127.0.0.1:{server.port}", "status", job["id"]]
        commands = [
            [*cli, *arguments],
            [sys.executable, "-c", "pass"],
            [sys.executable, "-c", "from bench.cli_floor import main; main()", *arguments],
        ]
        for command in commands:
            _wall(command)  # first run: cold caches
        log(f"CLI: taskrpc status ID, python -c pass, the floor: {RUNS} runs each, interleaved")
        ours_ms, bare_ms, floor_ms = _side_by_side(commands, 1)
        log(f"CLI: taskrpc status ID and python -c pass, {PARALLEL} at once")
        parallel = _side_by_side(commands[:2], PARALLEL)
    ratio = ours_ms / bare_ms
    return [
        Row(
            f"`taskrpc status ID` wall time, median of {RUNS}",
            f"{ours_ms:.0f} ms",
            f"{bare_ms:.0f} ms python -c pass",
            ratio,
            f"≤ {TARGET:g} x",
            ratio <= TARGET,
            f"{ours_ms - bare_ms:.0f} ms over bare interpreter start-up; "
            f"{ours_ms - floor_ms:.0f} ms over the floor (next row)",
        ),
        Row(
            f"floor: argparse + jsonrpcclient + socket, one call, median of {RUNS}",
            f"{floor_ms:.0f} ms",
            f"{bare_ms:.0f} ms python -c pass",
            floor_ms / bare_ms,
            "report",
            None,
            "bench/cli_floor.py: what issue 12 requires, nothing of ours",
        ),
        Row(
            f"`taskrpc status ID`, {PARALLEL} at once, median of {RUNS}",
            f"{parallel[0]:.0f} ms",
            f"{parallel[1]:.0f} ms {PARALLEL} x python -c pass",
            parallel[0] / parallel[1],
            "report",
            None,
            "wall time until all four have exited",
        ),
    ]
