"""Server settings: one frozen object from flags, then `TASKRPC_*` variables, then defaults."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from backend import __version__
from backend.loops import LOOPS
from backend.protocol import DEFAULT_HOST, DEFAULT_PORT, ENV_PREFIX
from backend.store import Limits

LOG_LEVELS = ("debug", "info", "warning", "error")
_LIMITS = Limits()  # the store's own defaults, so that they are written once


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server can be told. Each field is also `TASKRPC_<FIELD>`."""

    host: str = field(default=DEFAULT_HOST, metadata={"help": "address to listen on"})
    port: int = field(
        default=DEFAULT_PORT, metadata={"help": "port to listen on; 0 picks a free one"}
    )
    time_scale: float = field(
        default=_LIMITS.time_scale,
        metadata={"help": "multiplies every job's delay; 0 means no delay"},
    )
    token: str | None = field(
        default=None, metadata={"help": "require 'Authorization: Bearer TOKEN' on every request"}
    )
    insecure: bool = field(
        default=False, metadata={"help": "allow a non-loopback address without a token"}
    )
    max_body_bytes: int = field(
        default=1024 * 1024, metadata={"help": "largest request body; larger gets HTTP 413"}
    )
    max_batch: int = field(default=1000, metadata={"help": "most requests in one batch"})
    max_text_chars: int = field(
        default=_LIMITS.max_text_chars,
        metadata={"help": "longest job text, in characters (code points)"},
    )
    max_result_chars: int = field(
        default=_LIMITS.max_result_chars, metadata={"help": "longest job result; checked at submit"}
    )
    max_queued: int = field(
        default=_LIMITS.max_queued, metadata={"help": "most jobs waiting at once"}
    )
    max_finished: int = field(
        default=_LIMITS.max_finished,
        metadata={"help": "finished jobs kept; the oldest is forgotten first"},
    )
    max_kept_chars: int = field(
        default=_LIMITS.max_kept_chars,
        metadata={"help": "characters of finished results kept in all; the oldest go first"},
    )
    max_wait: float = field(
        default=300.0, metadata={"help": "longest a single 'wait' call may block, in seconds"}
    )
    log_level: str = field(default="info", metadata={"help": "one of " + ", ".join(LOG_LEVELS)})
    access_log: bool = field(default=False, metadata={"help": "log every HTTP request"})
    loop: str = field(
        default="auto",
        metadata={"help": "event loop: auto (uvloop if installed), uvloop or asyncio"},
    )
    allow_hosts: tuple[str, ...] = field(
        default=(),
        metadata={
            "flag": "--allow-host",
            "help": "without a token, also serve requests addressed to this Host name "
            "(repeatable; '*' turns the Host check off)",
        },
    )
    allow_origins: tuple[str, ...] = field(
        default=(),
        metadata={
            "flag": "--allow-origin",
            "help": "serve browser requests from this origin, e.g. https://app.example "
            "(repeatable; '*' allows every origin)",
        },
    )
    token_file: str | None = field(
        default=None,
        metadata={"help": "read the token from this file (not visible in ps, unlike --token)"},
    )
    max_connections: int = field(
        default=1000,
        metadata={"help": "open connections at once; more are refused (kept below the fd limit)"},
    )
    head_timeout: float = field(
        default=10.0,
        metadata={"help": "seconds a new connection gets to send its first request head"},
    )
    body_timeout: float = field(
        default=30.0,
        metadata={"help": "seconds a request body may take to arrive once its head is in"},
    )
    keepalive_timeout: float = field(
        default=30.0, metadata={"help": "seconds an idle keep-alive connection stays open"}
    )
    max_subscribers: int = field(
        default=100, metadata={"help": "open WebSockets at once; more get HTTP 503"}
    )
    max_waiters: int = field(
        default=10_000, metadata={"help": "'wait' calls in progress at once; more get -32008"}
    )
    max_queued_chars: int = field(
        default=100_000_000,
        metadata={"help": "characters of text of all waiting jobs together; more get -32005"},
    )
    db: str | None = field(
        default=None,
        metadata={
            "help": "SQLite file that keeps every job across restarts; ':memory:' keeps them in "
            "memory only (default: $XDG_STATE_HOME/taskrpc/taskrpc.db, else "
            "~/.local/state/taskrpc/taskrpc.db); postgresql://USER:PASSWORD@HOST:PORT/DBNAME "
            "shares one queue with every server on that database (the password may also come "
            "from PGPASSWORD or ~/.pgpass)"
        },
    )
    max_attempts: int = field(
        default=_LIMITS.max_attempts,
        metadata={"help": "a job whose run was interrupted this many times is marked failed"},
    )

    def __post_init__(self) -> None:
        if self.token_file is not None and self.token is None:
            # Frozen: the token read from the file is set once, here, like any other field.
            object.__setattr__(self, "token", _read_token(self.token_file))
        problems = list(self._problems())
        if problems:
            raise ValueError("; ".join(problems))

    def _problems(self) -> Iterator[str]:
        if not 0 <= self.port <= 65535:
            yield f"port must be 0..65535, not {self.port!r}"
        if not self.time_scale >= 0:
            yield f"time scale must be >= 0, not {self.time_scale!r}"
        for name in (
            "max_body_bytes",
            "max_batch",
            "max_text_chars",
            "max_result_chars",
            "max_queued",
            "max_kept_chars",
            "max_connections",
            "max_subscribers",
            "max_waiters",
            "max_queued_chars",
        ):
            if getattr(self, name) < 1:
                yield f"{name.replace('_', ' ')} must be at least 1"
        if self.max_finished < 1:
            yield "max finished must be at least 1 (a result must stay readable)"
        if self.max_attempts < 1:
            yield "max attempts must be at least 1"
        if self.db == "":
            yield "db must be a file name or :memory:, not empty"
        if not self.max_wait > 0:
            yield "max wait must be > 0"
        for name in ("head_timeout", "body_timeout", "keepalive_timeout"):
            if not getattr(self, name) > 0:
                yield f"{name.replace('_', ' ')} must be > 0"
        if self.log_level not in LOG_LEVELS:
            yield f"log level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}"
        if self.loop not in LOOPS:
            yield f"loop must be one of {', '.join(LOOPS)}, not {self.loop!r}"
        if self.token == "":
            yield "token must not be empty"
        if self.token_file is not None and self.token != _read_token(self.token_file):
            yield "give the token once: --token (TASKRPC_TOKEN) or --token-file, not both"
        if self.token is None and not self.insecure and not is_loopback(self.host):
            yield (
                f"refusing to listen on {self.host!r} without a token: anyone who can reach "
                "it could read every job; set --token, or pass --insecure if you mean it"
            )

    @classmethod
    def from_args(
        cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Parse command-line flags, falling back on the environment, then the defaults."""
        environ = os.environ if environ is None else environ
        parser = _parser()
        namespace = parser.parse_args(argv)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            given = getattr(namespace, f.name)
            env = environ.get(ENV_PREFIX + f.name.upper())
            if given is not None:
                values[f.name] = tuple(given) if isinstance(given, list) else given
            elif env is not None:
                try:
                    values[f.name] = _convert(f.type, env)
                except ValueError:
                    parser.error(f"{ENV_PREFIX}{f.name.upper()}={env!r} is not a valid {f.type}")
        try:
            return cls(**values)
        except ValueError as exc:
            parser.error(str(exc))


def is_loopback(host: str) -> bool:
    """True if `host` names only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_on_command_line(argv: Sequence[str] | None = None) -> bool:
    """True if `argv` (default: this process's) carries --token: every user can read it in ps."""
    namespace, _ = _parser().parse_known_args(argv)
    return namespace.token is not None


def _read_token(path: str) -> str:
    """The token in `path`, surrounding whitespace dropped (as the clients read it)."""
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read(4096).strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot read the token file {path!r}: {reason}") from None
    if not token:
        raise ValueError(f"the token file {path!r} is empty")
    return token


def _convert(kind: object, text: str) -> object:
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError  # from_args names the variable and its value
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "tuple[str, ...]":  # a list: comma-separated
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad option as one line, not a usage block then the error.

    The usage block is some twenty lines of every option: the reason, last, scrolls past.
    """

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}; see '{self.prog} --help'", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="taskrpc-server",
        description="Run the taskrpc job server: JSON-RPC 2.0 over HTTP, one job at a time.",
        epilog=(
            "Every option can also be set as TASKRPC_<OPTION>, e.g. TASKRPC_TIME_SCALE=0.1.\n"
            "example: taskrpc-server --port 0 --time-scale 0.1"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"taskrpc {__version__}")
    for f in dataclasses.fields(Settings):
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        shown = "" if f.name == "db" else f" (default: {f.default})"  # db's help says it
        help_text = f"{f.metadata['help']}{shown}"
        if f.type == "bool":
            parser.add_argument(flag, action="store_const", const=True, help=help_text)
            continue
        if f.type == "tuple[str, ...]":
            help_text = f"{f.metadata['help']}; env: comma-separated"
            parser.add_argument(flag, action="append", dest=f.name, help=help_text)
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        choices = {"log_level": LOG_LEVELS, "loop": LOOPS}.get(f.name)
        parser.add_argument(flag, type=kind, choices=choices, help=help_text)
    return parser


DEFAULTS = Settings()  # the documented defaults, for code that takes them one by one
