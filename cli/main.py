"""`taskrpc`: the command line. `main()` is the error boundary; nothing inside it handles errors.

It talks to the server through `cli.sync.SyncClient` (standard library HTTP), imported
only when a command runs, so `--help` is instant and a command starts in a blink; it
never imports aiohttp or Textual. Everything from the server that reaches a person's
terminal (ids, texts, results, errors) passes `backend.display.visible`; pipes and files
get `result` and `wait`'s output exactly.
"""

from __future__ import annotations

import argparse
import enum
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from backend.display import visible
from backend.protocol import (
    DEFAULT_URL,
    LIST_LIMIT,
    InvalidParams,
    InvalidRequest,
    JobObject,
    JobStatus,
    ResultNotReady,
    RpcError,
    Unauthorized,
)
from cli.options import UTF8, add_connection_options, non_negative

if TYPE_CHECKING:
    from cli.sync import SyncClient

SHELLS = ("bash", "zsh", "fish")  # what `taskrpc completion` writes scripts for
LIST_DEFAULT = 20  # jobs per `taskrpc list` page


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
    ExitStatus.UNREACHABLE: "the server could not be reached, went away, or is not taskrpc",
    ExitStatus.NOT_READY: "the result is not ready yet, or wait --timeout ran out",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl+C)",
}


class Failure(Exception):
    """An expected failure: one line on stderr (then `detail`, our own text) and an exit status."""

    def __init__(
        self, message: str, status: ExitStatus = ExitStatus.ERROR, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


Command = Callable[["SyncClient", argparse.Namespace], None]
Offline = Callable[[argparse.Namespace], None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding=UTF8)
    options = argv[: argv.index("--")] if "--" in argv else argv  # what precedes operands
    try:
        _run(_parse(argv))
    except KeyboardInterrupt:
        print("taskrpc: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:  # e.g. `taskrpc list | head -1`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.ERROR
    except Exception as exc:
        if "--traceback" in options:
            raise
        status = _status(exc)
        _report(exc, status, as_json="--json" in options)
        return status
    return ExitStatus.OK


def _parse(argv: list[str]) -> argparse.Namespace:
    """The arguments, parsed by a parser that holds only the command `argv` names, if it can.

    Building the parsers of the seven commands a run does not use was 6 % of `taskrpc
    status`'s instructions (bench row "`taskrpc status ID` wall time"). When the word taken
    for the command was not one (an option's value, say), that parser fails and the whole
    one parses again: it is the one that says what is wrong. A parse that succeeds took the
    same path through both parsers, so its result is the same.
    """
    command = _command_named(argv)
    try:
        args = _parser(only=command).parse_args(argv)
    except Failure:
        if command is None:
            raise
        args = _parser().parse_args(argv)
    # DATA of `-` reads standard input, unless it comes after `--` (then it is the text "-").
    args.literal_dash = "--" in argv and "-" in argv[argv.index("--") + 1 :]
    return args


def _run(args: argparse.Namespace) -> None:
    offline: Offline | None = getattr(args, "offline", None)
    if offline is not None:
        offline(args)
        return
    command: Command | None = getattr(args, "command", None)
    if command is None:
        raise Failure("a command is required", ExitStatus.USAGE, _command_list())
    from cli.sync import SyncClient

    with SyncClient(args.url, args.token) as client:
        command(client, args)


def _status(exc: Exception) -> ExitStatus:
    from cli.rpc import Disconnected, NotTaskrpc, Unreachable

    if isinstance(exc, Failure):
        return exc.status
    if isinstance(exc, Unreachable | Disconnected | NotTaskrpc):
        return ExitStatus.UNREACHABLE
    if isinstance(exc, InvalidParams | InvalidRequest | Unauthorized):
        return ExitStatus.USAGE
    if isinstance(exc, ResultNotReady):
        return ExitStatus.NOT_READY
    return ExitStatus.ERROR


def _report(exc: Exception, status: ExitStatus, *, as_json: bool) -> None:
    """One line on stderr (one JSON object with --json); never a traceback."""
    from cli.rpc import TransportError

    if isinstance(exc, Failure | RpcError | TransportError):
        message = str(exc)
    else:
        message = f"unexpected {type(exc).__name__}: {exc} (run with --traceback for details)"
    if as_json:
        code = int(exc.code) if isinstance(exc, RpcError) else None
        data = exc.data if isinstance(exc, RpcError) else getattr(exc, "detail", None) or None
        text = exc.message if isinstance(exc, RpcError) else message
        error = {"error": {"code": code, "message": text, "data": data}, "exit": int(status)}
        print(_dumps(error, sys.stderr), file=sys.stderr)
        return
    print(f"taskrpc: {visible(message)}", file=sys.stderr)
    if isinstance(exc, Failure) and exc.detail:
        print(exc.detail, file=sys.stderr)


# -- commands -------------------------------------------------------------------------


def submit(client: SyncClient, args: argparse.Namespace) -> None:
    job = _submit(client, args)
    _print(args, job, visible(job["id"]))


def _submit(client: SyncClient, args: argparse.Namespace) -> JobObject:
    """Submit; on Ctrl+C while the request is in flight, learn the id rather than lose the job."""
    job_type, text = _job_type(args.type), _data(args)
    with _answer_despite_ctrl_c() as pressed:
        job = client.submit(job_type, text)
    if pressed:
        raise Failure(
            f"interrupted; job {job['id']} was submitted and goes on — "
            f"follow it with: {_again(args, 'wait', '--id', job['id'])}",
            ExitStatus.INTERRUPTED,
        )
    return job


@contextmanager
def _answer_despite_ctrl_c() -> Iterator[list[bool]]:
    """Within: a first Ctrl+C is noted (and said) instead of raised; a second one stops at once."""
    import signal

    pressed: list[bool] = []

    def note(signum: int, frame: object) -> None:
        pressed.append(True)
        print(
            "taskrpc: interrupted; waiting for the server's answer to learn the job id",
            file=sys.stderr,
            flush=True,
        )
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def status(client: SyncClient, args: argparse.Namespace) -> None:
    from cli.render import status_line

    job = client.status(args.id)
    _print(args, job, visible(status_line(job, time.time())))


def result(client: SyncClient, args: argparse.Namespace) -> None:
    text = client.result(args.id)
    _print_result(args, {"id": args.id, "result": text}, text)


def wait(client: SyncClient, args: argparse.Namespace) -> None:
    from cli.live import LiveStatus
    from cli.rpc import TransportError

    job = _job_to_wait_for(client, args)
    job_id = job["id"]
    # Not flushed here: the live status shows the job at once, before any long poll, and
    # flushes the stream.
    print(f"taskrpc: job {visible(job_id)} ({visible(job['type'])})", file=sys.stderr)
    live = LiveStatus(sys.stderr)
    try:
        for change in client.follow(job, args.timeout, on_busy=live.busy):
            live.show(change)
            job = change
    except KeyboardInterrupt:
        raise Failure(
            f"stopped waiting; job {job_id} goes on — "
            f"fetch it later with: {_again(args, 'result', job_id)}",
            ExitStatus.INTERRUPTED,
        ) from None
    except TransportError as exc:
        raise Failure(
            f"lost the server while waiting for job {job_id}: {exc}; if it still runs, "
            f"wait again with: {_again(args, 'wait', '--id', job_id)}",
            ExitStatus.UNREACHABLE,
        ) from exc
    finally:
        live.close()
    _finish(client, args, job)


def _job_to_wait_for(client: SyncClient, args: argparse.Namespace) -> JobObject:
    if args.id is not None:
        if args.type is not None or args.data_option is not None:
            raise Failure("give either TYPE and DATA, or --id ID, not both", ExitStatus.USAGE)
        return client.status(args.id)
    if args.type is None:
        raise Failure(
            "give TYPE and DATA to submit a job, or --id ID to wait for one", ExitStatus.USAGE
        )
    return _submit(client, args)


def _finish(client: SyncClient, args: argparse.Namespace, job: JobObject) -> None:
    """Print the result of the job `wait` followed, or say why there is none."""
    job_id = job["id"]
    if job["status"] == JobStatus.FAILED:
        raise Failure(f"job {job_id} failed: {job['error']}")
    if job["status"] == JobStatus.CANCELLED:
        raise Failure(f"job {job_id} was cancelled")
    if job["status"] != JobStatus.DONE:
        raise Failure(
            f"timed out after {args.timeout:g} s; job {job_id} is still {job['status']} — "
            f"fetch it later with: {_again(args, 'result', job_id)}",
            ExitStatus.NOT_READY,
        )
    text = client.result(job_id)
    _print_result(args, {**job, "result": text}, text)


def cancel(client: SyncClient, args: argparse.Namespace) -> None:
    job = client.cancel(args.id)
    _print(args, job, visible(f"{job['id']} {job['status']}"))


def list_jobs(client: SyncClient, args: argparse.Namespace) -> None:
    from cli.render import status_line

    wanted = None if args.status is None else JobStatus(args.status)
    jobs, counts, cursor = client.jobs(wanted, args.limit, args.cursor)
    if args.json:
        _print_json({"jobs": jobs, "counts": counts, "next_cursor": cursor})
        return
    now = time.time()
    for job in jobs:
        more = "…" if len(job["preview"]) < job["length"] else ""
        line = f"{job['id']}  {job['type']:<7}  {status_line(job, now):<36}  "
        print(visible(f"{line}'{job['preview']}{more}'"))
    print(", ".join(f"{n} {name}" for name, n in counts.items()), file=sys.stderr)
    if cursor is not None:
        words = ["list"] if wanted is None else ["list", "--status", wanted.value]
        if args.limit != LIST_DEFAULT:
            words += ["--limit", str(args.limit)]
        print(f"more: {_again(args, *words, '--cursor', cursor)}", file=sys.stderr)


def types(client: SyncClient, args: argparse.Namespace) -> None:
    found = client.types()
    lines = (f"{t['code']}  {t['name']:<7}  {t['delay']:g} s  {t['description']}" for t in found)
    _print(args, found, visible("\n".join(lines), multiline=True))


def completion(args: argparse.Namespace) -> None:
    import shtab

    print(shtab.complete(_parser(), shell=args.shell))


# -- helpers --------------------------------------------------------------------------


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print `data` as JSON with --json, else `text` (already made visible by the caller)."""
    if args.json:
        _print_json(data)
    else:
        print(text)


def _print_json(data: Any) -> None:
    """`data` as JSON on stdout: --json prints the server's answer, whatever the command."""
    print(_dumps(data, sys.stdout))


def _print_result(args: argparse.Namespace, data: Any, text: str) -> None:
    """A job's result: exact into pipes and files (or with --raw), made visible on a terminal."""
    if args.json:
        _print_json(data)
    elif sys.stdout.isatty() and not args.raw:
        print(visible(text, multiline=True))
    else:
        sys.stdout.write(f"{text}\n")


def _dumps(data: Any, stream: TextIO) -> str:
    """JSON; on a terminal every non-ASCII character is a \\u escape, so none is a command."""
    return json.dumps(data, ensure_ascii=stream.isatty())


def _again(args: argparse.Namespace, *words: str) -> str:
    """A command to run later, as it can be pasted: with --url unless the default; no token."""
    import shlex

    from cli.rpc import base_url

    parts = ["taskrpc"]
    if base_url(args.url) != DEFAULT_URL:
        parts += ["--url", shlex.quote(args.url)]
    line = " ".join([*parts, *map(shlex.quote, words)])
    return f"{line} (with your token)" if args.token else line


def _job_type(word: str) -> int | str:
    return int(word) if word.isascii() and word.isdigit() else word


def _data(args: argparse.Namespace) -> str:
    """DATA as given, or stdin for `-`; UTF-8 whatever the locale."""
    if args.data is not None and args.data_option is not None:
        raise Failure("give DATA or --data TEXT, not both", ExitStatus.USAGE)
    if args.data_option is not None:
        return _utf8(args.data_option, "--data")
    if args.data is None:
        raise Failure("give DATA (the text; - reads standard input)", ExitStatus.USAGE)
    if args.data != "-" or args.literal_dash:
        return _utf8(args.data, "DATA")
    if sys.stdin.isatty():
        print("taskrpc: reading DATA from standard input; end with Ctrl+D", file=sys.stderr)
    try:
        text = sys.stdin.buffer.read().decode(UTF8)
    except UnicodeDecodeError:
        raise Failure("standard input is not valid UTF-8 text", ExitStatus.USAGE) from None
    return text.removesuffix("\n").removesuffix("\r")  # the newline that ends a file or echo


def _utf8(arg: str, where: str) -> str:
    try:
        return os.fsencode(arg).decode(UTF8)
    except UnicodeDecodeError:
        raise Failure(f"{where} is not valid UTF-8 text", ExitStatus.USAGE) from None


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (`main` prints it), not a usage block.

    `commands` lists each command with its summary, for `taskrpc` alone.
    """

    commands: list[tuple[str, str]]

    def error(self, message: str) -> NoReturn:
        raise Failure(f"{message}; see '{self.prog} --help'", ExitStatus.USAGE)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help laid out to the terminal's width, found without `shutil`.

    argparse makes a formatter for every `add_argument` (to check its metavar), and the
    default width imports `shutil` (with zlib, bz2, lzma): ~2.5 ms of every command's
    start-up (bench row "`taskrpc status ID` wall time").
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _columns() - 2)


def _columns() -> int:
    """The terminal's width as `shutil.get_terminal_size` finds it: $COLUMNS, the tty, 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0 and sys.__stdout__ is not None:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def _global_options(parser: argparse.ArgumentParser, *, for_command: bool = False) -> None:
    """The options that work before or after the command.

    Only the main parser defaults them: a command's copy (`for_command`) sets nothing unless
    given, so that it does not undo what was given before the command.
    """
    add_connection_options(parser, defaults=not for_command)
    unset: Any = argparse.SUPPRESS if for_command else False
    parser.add_argument("--json", action="store_true", default=unset, help="print JSON, errors too")
    # `main` looks for --traceback in argv itself (a failed parse must honour it too), so its
    # value in the parsed arguments is never read.
    parser.add_argument("--traceback", action="store_true", help="show the traceback of a failure")


def _command_named(argv: list[str]) -> str | None:
    """The first word of `argv` that names a command, unless a help option comes first
    (the main parser's help lists every command)."""
    for word in argv:
        if word in _COMMANDS:
            return word
        if word == "--" or word.startswith(("-h", "--h")):
            return None
    return None


def _parser(only: str | None = None) -> _Parser:
    """The command line's parser; with `only`, it knows that one command and no other."""
    parser = _Parser(
        prog="taskrpc",
        description="Talk to a taskrpc server: submit jobs, follow them, read their results.",
        epilog=_EXAMPLES,
        formatter_class=_Formatter,
    )
    _global_options(parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    parser.commands = []
    for name, aliases, run, summary, example, arguments in _COMMAND_TABLE:
        parser.commands.append((name, summary))
        if only is not None and only != name and only not in aliases:
            continue
        sub = commands.add_parser(
            name,
            aliases=list(aliases),
            help=summary,
            description=summary,
            epilog=f"example:\n  {example}",
            formatter_class=_Formatter,
        )
        _global_options(sub, for_command=True)
        arguments(sub)
        sub.set_defaults(**{"offline" if run is completion else "command": run})
    return parser


def _no_arguments(sub: argparse.ArgumentParser) -> None:
    """A command without arguments of its own (`types`)."""


def _submit_arguments(sub: argparse.ArgumentParser) -> None:
    _job_arguments(sub, required=True)


def _id_argument(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("id", metavar="ID")


def _result_arguments(sub: argparse.ArgumentParser) -> None:
    _id_argument(sub)
    _raw_option(sub)


def _wait_arguments(sub: argparse.ArgumentParser) -> None:
    _job_arguments(sub, required=False)
    sub.add_argument("--id", help="wait for this existing job instead of submitting one")
    sub.add_argument("--timeout", type=non_negative, help="give up waiting after this many seconds")
    _raw_option(sub)


def _completion_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("shell", metavar="SHELL", choices=SHELLS, help=" or ".join(SHELLS))


def _job_arguments(sub: argparse.ArgumentParser, *, required: bool) -> None:
    """TYPE and DATA (or --data) for submit and wait."""
    sub.add_argument("type", metavar="TYPE", nargs=None if required else "?", help=_TYPES_HELP)
    sub.add_argument(
        "data", metavar="DATA", nargs="?", help="the text; - reads standard input (-- - sends '-')"
    )
    sub.add_argument("--data", dest="data_option", metavar="TEXT", help="the text, taken as is")


def _raw_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--raw",
        action="store_true",
        help="on a terminal too, write the result as is (control characters included)",
    )


def _list_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--status", choices=[s.value for s in JobStatus], help="only jobs in this status"
    )
    sub.add_argument(
        "--limit",
        type=int,
        default=LIST_DEFAULT,
        help=f"how many (default {LIST_DEFAULT}, at most {LIST_LIMIT})",
    )
    sub.add_argument("--cursor", help="continue after an earlier page (its 'more:' line)")


def _command_list() -> str:
    """What `taskrpc` alone prints: the commands, as `git` does."""
    lines = ["usage: taskrpc [OPTIONS] COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<11} {summary}" for name, summary in _parser().commands]
    lines.append("\nsee 'taskrpc --help' for options, 'taskrpc COMMAND --help' for one command")
    return "\n".join(lines)


_TYPES_HELP = "a job type, by code or name: see `taskrpc types`"
_EXAMPLES = """\
examples:
  taskrpc wait reverse пример          # submit, watch, print: ремирп
  id=$(taskrpc submit repeat пример)   # submit only, keep the id
  taskrpc status $id                   # queued — 1 ahead, starts in ~2 s
  taskrpc result $id                   # prints only the result
  taskrpc completion bash              # a completion script (bash, zsh, fish)

exit status:
""" + "\n".join(f"  {status.value:>3}  {meaning}" for status, meaning in EXIT_MEANINGS.items())


Arguments = Callable[[argparse.ArgumentParser], None]
# name, aliases, what runs it, summary (help), example, its arguments; in --help's order
_COMMAND_TABLE: list[tuple[str, tuple[str, ...], Command | Offline, str, str, Arguments]] = [
    (
        "submit",
        ("task",),
        submit,
        "queue a job and print its id",
        "id=$(taskrpc submit reverse пример)",
        _submit_arguments,
    ),
    ("status", (), status, "print a job's status line", "taskrpc status $id", _id_argument),
    ("result", (), result, "print a done job's result", "taskrpc result $id", _result_arguments),
    (
        "wait",
        (),
        wait,
        "submit a job (or take --id), show its live status, print its result",
        "taskrpc wait swap пример      # or: taskrpc wait --id $id",
        _wait_arguments,
    ),
    (
        "list",
        (),
        list_jobs,
        "list jobs, newest first",
        "taskrpc list --status queued",
        _list_arguments,
    ),
    ("cancel", (), cancel, "cancel a queued or running job", "taskrpc cancel $id", _id_argument),
    ("types", (), types, "list the job types", "taskrpc types", _no_arguments),
    (
        "completion",
        (),
        completion,
        "print a shell completion script",
        'eval "$(taskrpc completion bash)"   # in ~/.bashrc',
        _completion_arguments,
    ),
]
_COMMANDS = frozenset(word for name, aliases, *_ in _COMMAND_TABLE for word in (name, *aliases))


if __name__ == "__main__":
    sys.exit(main())
