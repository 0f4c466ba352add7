"""Options shared by `taskrpc` and `taskrpc-tui`: where the server is, and its token."""

from __future__ import annotations

import argparse
import os
from urllib.parse import urlsplit

from backend.protocol import DEFAULT_URL, ENV_PREFIX


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """`--url` (env TASKRPC_URL) and `--token` (env TASKRPC_TOKEN), both checked."""
    parser.add_argument(
        "--url",
        type=url,
        default=os.environ.get(f"{ENV_PREFIX}URL", DEFAULT_URL),
        help=f"server URL (env {ENV_PREFIX}URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        type=token,
        default=os.environ.get(f"{ENV_PREFIX}TOKEN"),
        help=f"bearer token, if the server wants one (env {ENV_PREFIX}TOKEN)",
    )


def url(text: str) -> str:
    """An http(s) URL with a host, or an argparse error."""
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// URL of a taskrpc server")
    return text


def token(text: str) -> str:
    """A token that can travel in an HTTP header, or an argparse error."""
    if not text.isprintable() or not text.isascii():
        raise argparse.ArgumentTypeError("a token is printable ASCII (it travels in a header)")
    return text


def non_negative(text: str) -> float:
    """A number >= 0 (seconds, a time scale), or an argparse error."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {text!r}")
    return value
