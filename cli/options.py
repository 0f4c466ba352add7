"""Options shared by `taskrpc` and `taskrpc-tui`: where the server is, and its token.

The token can come from `--token`, `--token-file PATH`, or the environment
(`TASKRPC_TOKEN`, else `TASKRPC_TOKEN_FILE`). A file or the environment keeps it out
of `ps` and `/proc/PID/cmdline`, where every user of the machine can read a flag.
Whichever way it comes, it lands in `args.token`.
"""

from __future__ import annotations

import argparse
import os

from backend.protocol import DEFAULT_URL, ENV_PREFIX
from cli.urls import target

TOKEN_ENV = f"{ENV_PREFIX}TOKEN"
TOKEN_FILE_ENV = f"{ENV_PREFIX}TOKEN_FILE"
URL_ENV = f"{ENV_PREFIX}URL"
UTF8 = "utf-8"  # what the CLI reads and writes, whatever the locale says


def add_connection_options(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """`--url`, `--token` and `--token-file`, each checked, each with its environment variable.

    With `defaults=False` the options set nothing unless given: for a subcommand's copy
    of options that the main parser already defaults (so they work after the command too).
    """
    env_token = os.environ.get(TOKEN_ENV)
    env_file = os.environ.get(TOKEN_FILE_ENV)
    parser.add_argument(
        "--url",
        type=url,
        default=os.environ.get(URL_ENV, DEFAULT_URL) if defaults else argparse.SUPPRESS,
        help=f"server URL (env {URL_ENV}, default {DEFAULT_URL}); a trailing /rpc is fine",
    )
    # Both write args.token. A string default goes through `type` when the option is not
    # given, so a token file named by the environment is read (and checked) at parse time.
    from_file = defaults and env_token is None and env_file is not None
    parser.add_argument(
        "--token-file",
        dest="token",
        type=read_token_file,
        metavar="PATH",
        default=env_file if from_file else argparse.SUPPRESS,
        help=f"read the bearer token from this file (env {TOKEN_FILE_ENV})",
    )
    parser.add_argument(
        "--token",
        type=token,
        default=argparse.SUPPRESS if from_file or not defaults else env_token,
        help=f"bearer token; visible to other users in `ps`: prefer a file (env {TOKEN_ENV})",
    )


def url(text: str) -> str:
    """An http(s) URL a request can use (`cli.urls.target`), or an argparse error."""
    try:
        target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def token(text: str) -> str:
    """A token that can travel in an HTTP header, or an argparse error."""
    if not text.isprintable() or not text.isascii():
        raise argparse.ArgumentTypeError("a token is printable ASCII (it travels in a header)")
    return text


def read_token_file(path: str) -> str:
    """The token stored in the file at `path` (surrounding whitespace dropped)."""
    try:
        with open(path, encoding=UTF8) as file:
            text = file.read(4096).strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise argparse.ArgumentTypeError(
            f"cannot read the token file {path!r} ({reason}); "
            f"it comes from --token-file or {TOKEN_FILE_ENV}"
        ) from None
    if not text:
        raise argparse.ArgumentTypeError(f"the token file {path!r} is empty")
    return token(text)


def non_negative(text: str) -> float:
    """A number >= 0 (seconds, a time scale), or an argparse error."""
    refused = argparse.ArgumentTypeError(f"must be a number >= 0, not {text!r}")
    try:
        value = float(text)
    except ValueError:
        raise refused from None
    if not value >= 0:  # NaN too
        raise refused
    return value
