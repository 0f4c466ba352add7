"""`python -m bench` (or `make bench`): run every benchmark, print one row per target.

Progress goes to stderr; the table goes to stdout. Each ratio is against a baseline
measured in this same run. The whole run is bounded to a few minutes on 2 cores.
`python -m bench peers` (`make bench-peers`) is apart: taskrpc against RQ, arq and Celery.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import platform
import sys
import time
from collections.abc import Callable

from bench import (
    bench_cli,
    bench_floods,
    bench_http,
    bench_journal,
    bench_memory,
    bench_perf,
    bench_pg,
    bench_worker,
)
from bench.common import Row, log

DASHBOARD = "bench.bench_tui"  # written separately; it must expose `rows() -> list[Row]`


def _http() -> list[Row]:
    rows, _ = bench_http.status_and_submit()
    return rows + bench_http.latency_busy_vs_idle()


def _dashboard() -> list[Row]:
    if importlib.util.find_spec(DASHBOARD) is None:
        return [
            Row(
                "dashboard: load 10 000 jobs; burst of 1 000 changes",
                "not run",
                "—",
                None,
                "< 2 s and < 0.25 s",
                None,
                f"{DASHBOARD} does not exist yet",
            )
        ]
    module = importlib.import_module(DASHBOARD)
    rows: list[Row] = module.rows()
    return rows


SUITES: dict[str, Callable[[], list[Row]]] = {
    "http": _http,
    "worker": bench_worker.rows,
    "memory": bench_memory.rows,
    "journal": bench_journal.rows,
    "cli": bench_cli.rows,
    "floods": bench_floods.rows,
    "perf": bench_perf.rows,
    "dashboard": _dashboard,
    "cluster": bench_pg.rows,
}


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    header = ["what", "measured", "baseline", "ratio", "target", "met", "notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        met = "—" if row.met is None else ("yes" if row.met else "**NO**")
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}"
        cells = [row.what, row.value, row.baseline, ratio, row.target, met, row.note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:2] == ["peers"]:  # not a suite of `make bench`: its own options, venvs, redis
        from bench.peers.run import main as peers

        return peers(sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", help=f"run only these of {', '.join(SUITES)}")
    args = parser.parse_args()
    unknown = set(args.suites) - SUITES.keys()
    if unknown:
        parser.error(
            f"unknown suite(s) {', '.join(sorted(unknown))}; choose from {', '.join(SUITES)}"
        )
    start = time.monotonic()
    rows: list[Row] = []
    for name in args.suites or SUITES:
        log(f"suite {name}")
        rows += SUITES[name]()
    elapsed = time.monotonic() - start
    print(table(rows))
    print(
        f"\n{platform.python_implementation()} {platform.python_version()}, "
        f"{elapsed:.0f} s in all. Ratios are against baselines measured in this run; "
        "absolute figures on a shared machine are noise."
    )
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
