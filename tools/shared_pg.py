"""Run a command with one throw-away PostgreSQL cluster that every pytest session it starts
shares; the cluster is removed when the command ends, however it ends.

`make mutate` runs every mutant as a pytest session of its own: without this, each session
would initdb and start a cluster (seconds) for its PostgreSQL tests. The sessions find the
cluster through `TASKRPC_TEST_PG_CLUSTER` (tests/pg.py) and each test still gets a new empty
database on it.

Usage: python tools/shared_pg.py COMMAND [ARG...]   (exits with the command's status)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: find tests/

import pytest

from tests.pg import SHARED, running_cluster


class _Stopped(Exception):
    """SIGTERM or SIGHUP reached this process: stop the command, then the cluster."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped(signum)


def run(command: list[str]) -> int:
    """Start a cluster, run `command` with `TASKRPC_TEST_PG_CLUSTER` naming it, remove it."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    started = time.monotonic()
    with running_cluster() as cluster:
        print(
            f"shared PostgreSQL cluster on 127.0.0.1:{cluster.port} "
            f"(started in {time.monotonic() - started:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        child = subprocess.Popen(command, env={**os.environ, SHARED: str(cluster.folder)})
        try:
            return child.wait()
        except (KeyboardInterrupt, _Stopped):  # Ctrl+C reached the child too; a TERM did not
            child.send_signal(signal.SIGINT)
            try:
                return child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                return child.wait()


def main() -> int:
    """Entry point: the command's exit status, or 2 with a usage line."""
    if len(sys.argv) < 2:
        print("usage: python tools/shared_pg.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    try:
        return run(sys.argv[1:])
    except pytest.fail.Exception as exc:  # PostgreSQL is not installed: how to install it
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
