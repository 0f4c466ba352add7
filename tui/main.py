"""`taskrpc-tui`: parse options, optionally start a server in-process, run the dashboard.

`main()` is the error boundary: an expected failure prints one line, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence

from backend.protocol import DEFAULT_URL, ENV_PREFIX


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dashboard; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)  # logs would tear the screen
    try:
        asyncio.run(_run(args.url, args.token, local=args.local, time_scale=args.time_scale))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"taskrpc-tui: cannot start the local server: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _run(url: str, token: str | None, *, local: bool, time_scale: float) -> None:
    from cli.client import Client
    from tui.app import Dashboard

    async with contextlib.AsyncExitStack() as stack:
        if local:
            url = await stack.enter_async_context(local_server(time_scale))
            token = None
        client = await stack.enter_async_context(Client(url, token))
        await Dashboard(client).run_async()


@contextlib.asynccontextmanager
async def local_server(time_scale: float = 1.0) -> AsyncIterator[str]:
    """A taskrpc server in this process on a free loopback port; yields its URL."""
    from aiohttp import web

    from backend.app import create_app
    from backend.settings import Settings

    app = create_app(Settings(host="127.0.0.1", port=0, time_scale=time_scale))
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskrpc-tui",
        description="The taskrpc dashboard: a live job table you drive from the keyboard.",
        epilog="examples:\n"
        "  taskrpc-tui --local      # a server in this process, and its dashboard\n"
        "  taskrpc-tui --url http://127.0.0.1:8765",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(f"{ENV_PREFIX}URL", DEFAULT_URL),
        help=f"server URL (env {ENV_PREFIX}URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(f"{ENV_PREFIX}TOKEN"),
        help=f"bearer token, if the server wants one (env {ENV_PREFIX}TOKEN)",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="start a server inside this process on a free loopback port and show it",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=float(os.environ.get(f"{ENV_PREFIX}TIME_SCALE", "1")),
        help="with --local: multiplies every job's delay (env TASKRPC_TIME_SCALE, default 1)",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
