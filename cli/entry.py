"""The `taskrpc` program: `cli.main.main` run as a one-shot process that ends fast.

A normal interpreter exit tears everything down, freeing every object of every module
one by one: 10 % of `taskrpc status`'s instructions (bench row "`taskrpc status ID` wall
time", BENCHMARKS.md), for a process about to vanish. The command has closed its
connection by then; the exit functions (`atexit`: coverage's, for one) still run and the
output is flushed, then the process ends with `os._exit`.

`cli.main.main` itself returns its status and leaves the process alone, for tests and for
anyone calling it from Python.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn


def run() -> NoReturn:
    """Run `taskrpc` with the arguments of this process, then end it with the exit status."""
    from cli.main import main

    status = main()
    atexit._run_exitfuncs()  # what a normal exit runs first; os._exit would skip it
    os._exit(_flushed(status))


def _flushed(status: int) -> int:
    """`status`, once standard output and error are written out; 1 if the reader has left."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except OSError:  # e.g. `taskrpc list | head -1`: the reader left (as main() says)
            status = status or 1
    return status


if __name__ == "__main__":
    run()
