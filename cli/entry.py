"""The `taskrpc` program: `cli.main.main` run as a one-shot process, started and ended fast.

Two things a long-lived Python process needs and a one-shot command does not, measured on
the bench row "`taskrpc status ID` wall time" (BENCHMARKS.md):

- The cyclic garbage collector. Importing allocates tens of thousands of objects that all
  live until exit, and each full collection walks all of them again: for `status`, several
  collections during start-up. It stays off for the run; a `wait` that runs for hours makes
  a few small objects per long poll, so nothing piles up.
- Tearing the interpreter down: freeing every object of every module one by one, which
  costs as much as a tenth of the command. The command has closed its connection by then;
  the exit functions (`atexit`: coverage's, for one) still run, and the output is flushed,
  before the process ends with `os._exit`.

`cli.main.main` itself returns its status and leaves the process alone, for tests and for
anyone calling it from Python.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from typing import NoReturn


def run() -> NoReturn:
    """Run `taskrpc` with the arguments of this process, then end it with the exit status."""
    gc.disable()
    from cli.main import main

    status = main()
    atexit._run_exitfuncs()  # what a normal exit would run first; os._exit skips it
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
