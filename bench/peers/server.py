"""`python -m bench.peers.server [--uvloop FOLDER] ARGS…`: taskrpc-server for `make bench-peers`.

The server's own `main` with ARGS, plus two things the bench needs and the server must not
have: on Linux it asks for SIGTERM when the bench dies (so `kill -9` of the bench leaves no
server behind), and with `--uvloop` it runs on uvloop's event loop (installed alone into
FOLDER, see envs.ensure_uvloop) for the A/B, leaving backend/ untouched. The bench checks
/proc/PID/maps that uvloop took.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal this process gets when its parent dies


def main() -> int:
    args = sys.argv[1:]
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the bench died before prctl took
            return 1
    if args[:1] == ["--uvloop"]:
        sys.path.insert(0, args[1])
        args = args[2:]
        import uvloop  # type: ignore[import-not-found]  # in FOLDER, not in .venv

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from backend.main import main as server_main

    return server_main(args)


if __name__ == "__main__":
    sys.exit(main())
