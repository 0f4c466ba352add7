"""What a server URL must be: checked once, for `--url` and for `SyncClient`.

A leaf (standard library only, no network modules), so `taskrpc --help` stays light. It
takes the URL apart itself rather than with `urllib.parse`, which imports `ipaddress`: the
two are 5 % of `taskrpc status`'s start-up (bench row "`taskrpc status ID` wall time"), for
a URL of the form `http[s]://[user@]host[:port][/path][?query][#fragment]`.
"""

from __future__ import annotations

_IPV6 = frozenset("0123456789abcdefABCDEF:.")  # what an IPv6 address literal is made of


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

    `http://user@Host:8765/base?q#f` -> https False, host `host`, port 8765, path `/base`.
    A path may not hold a space or a control character: the request line would break
    (`cli.http1` writes it as is); nor a character that is not ASCII (it has no one encoding).
    """
    not_http = ValueError(f"{url!r} is not an http:// URL of a taskrpc server")
    scheme, slashes, rest = url.partition("://")
    if not slashes or scheme.lower() not in ("http", "https"):
        raise not_http
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    host, port = _host_port(rest[:end].rpartition("@")[2])
    if host is None:
        raise not_http
    if port is not None and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError(f"{url!r} has a bad port")
    path = rest[end:].partition("?")[0].partition("#")[0]
    if any(char <= " " or char == "\x7f" for char in path):
        raise ValueError(f"{url!r} has a space or a control character in its path")
    if not path.isascii():  # the request line is bytes: which encoding would the server guess?
        raise ValueError(
            f"{url!r} has a character that is not ASCII in its path: percent-encode it"
        )
    return Target(scheme.lower() == "https", host, None if port is None else int(port), path)


def _host_port(where: str) -> tuple[str | None, str | None]:
    """`host:port` -> (`host`, `port`), `[::1]:80` -> (`::1`, `80`); None for what is missing
    or malformed (the host of `[::1`, the port of `host:`)."""
    if where.startswith("["):
        address, bracket, after = where[1:].partition("]")
        numbers = address.partition("%")[0]  # `fe80::1%25eth0`: an address, then its zone
        if not bracket or ":" not in numbers or not set(numbers) <= _IPV6:
            return None, None
        if after and not after.startswith(":"):
            return None, None
        host, port = address, after[1:]
    else:
        host, _, port = where.partition(":")
        if "]" in host:
            return None, None
    return host.lower() or None, port or None
