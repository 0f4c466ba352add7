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
from typing import TYPE_CHECKING

from backend.protocol import ENV_PREFIX, RpcError, Unauthorized
from backend.settings import OneLineParser
from cli.client import TransportError
from cli.main import ExitStatus
from cli.options import add_connection_options, non_negative

if TYPE_CHECKING:
    from cli.client import Client


TOKEN_CHECK = 3.0  # seconds the start-up token check waits for an answer


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dashboard; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)  # logs would tear the screen
    from backend.journal import Refused

    try:
        asyncio.run(
            _run(args.url, args.token, local=args.local, time_scale=args.time_scale, db=args.db)
        )
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except (Unauthorized, Refused) as exc:  # a refused token (as the CLI says it), a database
        # in use or unusable (as the server says it): one line, the CLI's exit status 2
        print(f"taskrpc-tui: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    except OSError as exc:
        print(f"taskrpc-tui: cannot start the local server: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _run(
    url: str, token: str | None, *, local: bool, time_scale: float, db: str | None
) -> None:
    from backend.journal import MEMORY
    from cli.client import Client
    from tui.app import Dashboard

    async with contextlib.AsyncExitStack() as stack:
        if local:
            url = await stack.enter_async_context(local_server(time_scale, db))
            token = None
        client = await stack.enter_async_context(Client(url, token))
        await check_token(client)
        await Dashboard(client, local=local, kept=db != MEMORY).run_async()


async def check_token(client: Client) -> None:
    """Raise `Unauthorized` if the server refuses the token; a server that cannot be reached
    or does not answer yet is the dashboard's to wait for (it shows "reconnecting")."""
    try:
        await asyncio.wait_for(client.types(), TOKEN_CHECK)
    except Unauthorized:
        raise
    except (TimeoutError, TransportError, RpcError):
        return  # a hung server: the dashboard shows "connecting" and keeps trying


@contextlib.asynccontextmanager
async def local_server(time_scale: float = 1.0, db: str | None = None) -> AsyncIterator[str]:
    """A taskrpc server in this process on a free loopback port; yields its URL.

    It keeps its jobs in `db` (None: the server's default file; `:memory:`: nowhere).
    """
    from backend.app import start
    from backend.settings import Settings

    settings = Settings(host="127.0.0.1", port=0, time_scale=time_scale, db=db)
    runner, url = await start(settings)
    try:
        yield url
    finally:
        await runner.cleanup()


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="taskrpc-tui",
        description="The taskrpc dashboard: a live job table you drive from the keyboard.",
        epilog="examples:\n"
        "  taskrpc-tui --local      # a server in this process, and its dashboard\n"
        "  taskrpc-tui --url http://127.0.0.1:8765\n"
        "  TASKRPC_TOKEN_FILE=~/.taskrpc-token taskrpc-tui",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_options(parser)  # --url, --token, --token-file PATH and their variables
    parser.add_argument(
        "--local",
        action="store_true",
        help="start a server inside this process on a free loopback port and show it",
    )
    parser.add_argument(
        "--time-scale",
        type=non_negative,
        default=os.environ.get(f"{ENV_PREFIX}TIME_SCALE", "1"),
        help="with --local: multiplies every job's delay (env TASKRPC_TIME_SCALE, default 1)",
    )
    parser.add_argument(
        "--db",
        default=os.environ.get(f"{ENV_PREFIX}DB"),
        help="with --local: the SQLite file that keeps the jobs, or :memory: (env TASKRPC_DB; "
        "default: the server's, $XDG_STATE_HOME/taskrpc/taskrpc.db)",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
