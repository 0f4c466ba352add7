"""What a server URL must be: checked once, for `--url` and for `SyncClient`.

A leaf (standard library only, no network modules), so `taskrpc --help` stays light.
"""

from __future__ import annotations

from urllib.parse import urlsplit


class Target:
    """Where a URL points: the scheme's choice of TLS, the host, the port, the path."""

    __slots__ = ("host", "https", "path", "port")

    def __init__(self, https: bool, host: str, port: int | None, path: str) -> None:
        self.https = https
        self.host = host
        self.port = port
        self.path = path


def target(url: str) -> Target:
    """`url` taken apart; ValueError, with a message for a person, if no request can use it.

    A path may not hold a space or a control character: the request line would break
    (`cli.http1` writes it as is).
    """
    not_http = ValueError(f"{url!r} is not an http:// URL of a taskrpc server")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. `http://[::1`
        raise not_http from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise not_http
    try:
        port = parts.port
    except ValueError:  # not a number below 65536
        raise ValueError(f"{url!r} has a bad port") from None
    if any(char <= " " or char == "\x7f" for char in parts.path):
        raise ValueError(f"{url!r} has a space or a control character in its path")
    return Target(parts.scheme == "https", parts.hostname, port, parts.path)
