"""`python -m bench.peers.uvloop_server UVLOOP_FOLDER ARGS…`: taskrpc-server on uvloop's loop.

For the A/B of `make bench-peers` only: the server's code is untouched; uvloop (installed
alone into UVLOOP_FOLDER, see envs.ensure_uvloop) becomes the event loop policy before
`backend.main.main` calls `asyncio.run`. The bench checks /proc/PID/maps that it took.
"""

from __future__ import annotations

import asyncio
import sys


def main() -> int:
    sys.path.insert(0, sys.argv[1])
    import uvloop

    from backend.main import main as server_main

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return server_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
