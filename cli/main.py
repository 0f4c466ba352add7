"""`taskrpc`: the command line. `main()` is the error boundary; nothing inside it handles errors.

It imports the network client only when a command runs, so `--help` is instant,
and never imports Textual.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import io
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from backend.protocol import (
    LIST_LIMIT,
    InvalidParams,
    InvalidRequest,
    JobObject,
    JobStatus,
    ResultNotReady,
    RpcError,
    Unauthorized,
)
from cli.options import add_connection_options, non_negative

if TYPE_CHECKING:
    from cli.client import Client

LONG_POLL = 25.0  # seconds one `wait` call may block on the server


class ExitStatus(enum.IntEnum):
    """What `taskrpc` exits with (EXIT_MEANINGS says when)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    UNREACHABLE = 3
    NOT_READY = 4
    INTERRUPTED = 130


EXIT_MEANINGS = {
    ExitStatus.OK: "ok",
    ExitStatus.ERROR: "error: unknown id, the job failed or was cancelled, queue full…",
    ExitStatus.USAGE: "usage: bad arguments, input the server refused, a missing or wrong token",
    ExitStatus.UNREACHABLE: "the server could not be reached, or went away",
    ExitStatus.NOT_READY: "the result is not ready yet, or wait --timeout ran out",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl+C)",
}


class Failure(Exception):
    """An expected failure: one line on stderr and an exit status."""

    def __init__(self, message: str, status: ExitStatus = ExitStatus.ERROR) -> None:
        super().__init__(message)
        self.status = status


Command = Callable[["Client", argparse.Namespace], Awaitable[None]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8")
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_run(args))
    except KeyboardInterrupt:
        print("taskrpc: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:  # e.g. `taskrpc list | head -1`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.ERROR
    except Exception as exc:
        if args.traceback:
            raise
        status, message = _explain(exc)
        print(f"taskrpc: {message}", file=sys.stderr)
        return status
    return ExitStatus.OK


async def _run(args: argparse.Namespace) -> None:
    from cli.client import Client

    async with Client(args.url, args.token) as client:
        await args.command(client, args)


def _explain(exc: Exception) -> tuple[ExitStatus, str]:
    from cli.client import Disconnected, TransportError, Unreachable

    if isinstance(exc, Failure):
        return exc.status, str(exc)
    if isinstance(exc, Unreachable | Disconnected):
        return ExitStatus.UNREACHABLE, str(exc)
    if isinstance(exc, InvalidParams | InvalidRequest | Unauthorized):
        return ExitStatus.USAGE, str(exc)
    if isinstance(exc, ResultNotReady):
        return ExitStatus.NOT_READY, str(exc)
    if isinstance(exc, RpcError | TransportError):
        return ExitStatus.ERROR, str(exc)
    return (
        ExitStatus.ERROR,
        f"unexpected {type(exc).__name__}: {exc} (run with --traceback for details)",
    )


# -- commands -------------------------------------------------------------------------


async def submit(client: Client, args: argparse.Namespace) -> None:
    job = await _submit(client, args)
    _print(args, job, job["id"])


async def _submit(client: Client, args: argparse.Namespace) -> JobObject:
    """Submit; on Ctrl+C while the request is in flight, learn the id rather than lose the job."""
    call = asyncio.ensure_future(client.submit(_job_type(args.type), _text(args.data)))
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        print(
            "taskrpc: interrupted; waiting for the server's answer to learn the job id",
            file=sys.stderr,
            flush=True,
        )
        job = await call
        raise Failure(
            f"interrupted; job {job['id']} was submitted and goes on — "
            f"follow it with: taskrpc wait --id {job['id']}",
            ExitStatus.INTERRUPTED,
        ) from None


async def status(client: Client, args: argparse.Namespace) -> None:
    from cli.render import status_line

    job = await client.status(args.id)
    _print(args, job, status_line(job, time.time()))


async def result(client: Client, args: argparse.Namespace) -> None:
    text = await client.result(args.id)
    _print(args, {"id": args.id, "result": text}, text)


async def wait(client: Client, args: argparse.Namespace) -> None:
    from cli.client import TransportError
    from cli.live import LiveStatus

    if args.id is not None and args.type is not None:
        raise Failure("give either TYPE and DATA, or --id ID, not both", ExitStatus.USAGE)
    if args.id is not None:
        job = await client.status(args.id)
    elif args.type is not None and args.data is not None:
        job = await _submit(client, args)
    else:
        raise Failure(
            "give TYPE and DATA to submit a job, or --id ID to wait for one", ExitStatus.USAGE
        )
    job_id = job["id"]
    print(f"taskrpc: job {job_id} ({job['type']})", file=sys.stderr, flush=True)
    live = LiveStatus(sys.stderr)
    try:
        job = await _follow(client, job, args.timeout, live)
    except asyncio.CancelledError:
        live.close()
        raise Failure(
            f"stopped waiting; job {job_id} goes on — fetch it later with: taskrpc result {job_id}",
            ExitStatus.INTERRUPTED,
        ) from None
    except TransportError as exc:
        live.close()
        raise Failure(
            f"lost the server while waiting for job {job_id}: {exc}; if it still runs, "
            f"wait again with: taskrpc wait --id {job_id}",
            ExitStatus.UNREACHABLE,
        ) from exc
    live.close()
    if job["status"] == JobStatus.FAILED:
        raise Failure(f"job {job_id} failed: {job['error']}")
    if job["status"] == JobStatus.CANCELLED:
        raise Failure(f"job {job_id} was cancelled")
    text = await client.result(job_id)
    _print(args, {**job, "result": text}, text)


async def _follow(client: Client, job: JobObject, timeout: float | None, live: Any) -> JobObject:
    """Show the job's changes until it finishes, using the server's long poll."""
    deadline = None if timeout is None else time.monotonic() + timeout
    live.show(job)
    while not JobStatus(job["status"]).finished:
        left = LONG_POLL if deadline is None else min(LONG_POLL, deadline - time.monotonic())
        if left <= 0:
            live.close()
            raise Failure(
                f"timed out after {timeout:g} s; job {job['id']} is still {job['status']} — "
                f"fetch it later with: taskrpc result {job['id']}",
                ExitStatus.NOT_READY,
            )
        job = await client.wait(job["id"], left, seen=job)
        live.show(job)
    return job


async def cancel(client: Client, args: argparse.Namespace) -> None:
    job = await client.cancel(args.id)
    _print(args, job, f"{job['id']} {job['status']}")


async def list_jobs(client: Client, args: argparse.Namespace) -> None:
    from cli.render import status_line

    wanted = None if args.status is None else JobStatus(args.status)
    jobs, counts, cursor = await client.jobs(wanted, args.limit, args.cursor)
    if args.json:
        _print(args, {"jobs": jobs, "counts": counts, "next_cursor": cursor}, "")
        return
    now = time.time()
    for job in jobs:
        preview = job["preview"] + ("…" if len(job["preview"]) < job["length"] else "")
        print(f"{job['id']}  {job['type']:<7}  {status_line(job, now):<36}  {preview!r}")
    print(", ".join(f"{n} {name}" for name, n in counts.items()), file=sys.stderr)
    if cursor is not None:
        print(f"more: taskrpc list --cursor {cursor}", file=sys.stderr)


async def types(client: Client, args: argparse.Namespace) -> None:
    found = await client.types()
    lines = (f"{t['code']}  {t['name']:<7}  {t['delay']:g} s  {t['description']}" for t in found)
    _print(args, found, "\n".join(lines))


# -- helpers --------------------------------------------------------------------------


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print `data` as JSON with --json, else `text`."""
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        print(text)


def _job_type(word: str) -> int | str:
    return int(word) if word.isascii() and word.isdigit() else word


def _text(arg: str) -> str:
    """DATA as given, or stdin for `-` (one trailing newline dropped); UTF-8 whatever the locale."""
    try:
        if arg == "-":
            text = sys.stdin.buffer.read().decode("utf-8")
            return text.removesuffix("\n").removesuffix("\r")
        return os.fsencode(arg).decode("utf-8")
    except UnicodeDecodeError:
        where = "standard input" if arg == "-" else "DATA"
        raise Failure(f"{where} is not valid UTF-8 text", ExitStatus.USAGE) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskrpc",
        description="Talk to a taskrpc server: submit jobs, follow them, read their results.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_options(parser)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--traceback", action="store_true", help="show the traceback of a failure")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(
        name: str, run: Command, summary: str, example: str, aliases: Sequence[str] = ()
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            aliases=list(aliases),
            help=summary,
            description=summary,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(command=run)
        return sub

    sub = command(
        "submit",
        submit,
        "queue a job and print its id",
        "id=$(taskrpc submit reverse пример)",
        ["task"],
    )
    sub.add_argument("type", metavar="TYPE", help=_TYPES_HELP)
    sub.add_argument("data", metavar="DATA", help="the text; - reads standard input")

    sub = command("status", status, "print a job's status line", "taskrpc status $id")
    sub.add_argument("id", metavar="ID")

    sub = command("result", result, "print a done job's result", "taskrpc result $id")
    sub.add_argument("id", metavar="ID")

    sub = command(
        "wait",
        wait,
        "submit a job (or take --id), show its live status, print its result",
        "taskrpc wait swap пример      # or: taskrpc wait --id $id",
    )
    sub.add_argument("type", metavar="TYPE", nargs="?", help=_TYPES_HELP)
    sub.add_argument("data", metavar="DATA", nargs="?", help="the text; - reads standard input")
    sub.add_argument("--id", help="wait for this existing job instead of submitting one")
    sub.add_argument("--timeout", type=non_negative, help="give up waiting after this many seconds")

    sub = command("list", list_jobs, "list jobs, newest first", "taskrpc list --status queued")
    sub.add_argument(
        "--status", choices=[s.value for s in JobStatus], help="only jobs in this status"
    )
    sub.add_argument(
        "--limit", type=int, default=20, help=f"how many (default 20, at most {LIST_LIMIT})"
    )
    sub.add_argument("--cursor", help="continue after an earlier page (its 'more:' line)")

    sub = command("cancel", cancel, "cancel a queued or running job", "taskrpc cancel $id")
    sub.add_argument("id", metavar="ID")

    command("types", types, "list the job types", "taskrpc types")
    return parser


_TYPES_HELP = "a job type, by code or name: see `taskrpc types`"
_EXAMPLES = """\
examples:
  taskrpc wait reverse пример          # submit, watch, print: ремирп
  id=$(taskrpc submit repeat пример)   # submit only, keep the id
  taskrpc status $id                   # queued — 1 ahead, starts in ~2 s
  taskrpc result $id                   # prints only the result

exit status:
""" + "\n".join(f"  {status.value:>3}  {meaning}" for status, meaning in EXIT_MEANINGS.items())


if __name__ == "__main__":
    sys.exit(main())
