"""cli.urls: a server URL taken apart without urllib.parse, as urllib.parse takes it apart."""

from __future__ import annotations

import pytest

from cli.urls import target


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://127.0.0.1:8765", (False, "127.0.0.1", 8765, "")),
        ("https://h", (True, "h", None, "")),
        ("HTTP://Host.Example:80/x", (False, "host.example", 80, "/x")),
        ("http://h:", (False, "h", None, "")),
        ("http://h:65535/a/b?c=d e#f", (False, "h", 65535, "/a/b")),
        ("http://h?x/y", (False, "h", None, "")),
        ("http://h#f/x", (False, "h", None, "")),
        ("http://user:secret@h:1/p", (False, "h", 1, "/p")),
        ("http://[::1]:8080/rpc", (False, "::1", 8080, "/rpc")),
        ("http://[fe80::1%25eth0]:1", (False, "fe80::1%25eth0", 1, "")),
        # every character an IPv6 literal may hold, in one address
        (
            "http://[a0b1:c2d3:e4f5:A6B7:C8D9:EF00:1.2.3.4]",
            (False, "a0b1:c2d3:e4f5:a6b7:c8d9:ef00:1.2.3.4", None, ""),
        ),
        ("http://EXAMPLE.COM", (False, "example.com", None, "")),
        ("http://h/x://y", (False, "h", None, "/x://y")),
    ],
)
def test_a_url_is_taken_apart(url: str, parts: tuple[bool, str, int | None, str]) -> None:
    """TLS or not, the host (lowercased, without brackets or user), the port, the path."""
    where = target(url)
    assert (where.https, where.host, where.port, where.path) == parts


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("foo", "is not an http:// URL"),
        ("ftp://h", "is not an http:// URL"),
        ("http:/h", "is not an http:// URL"),
        ("http://", "is not an http:// URL"),
        ("http://:80", "is not an http:// URL"),
        ("http://[::1", "is not an http:// URL"),
        ("http://::1]", "is not an http:// URL"),
        ("http://[xyz]", "is not an http:// URL"),
        ("http://[::1]x", "is not an http:// URL"),
        ("http://[1.2.3.4]", "is not an http:// URL"),
        ("http://[::1g]", "is not an http:// URL"),
        ("http://h]", "is not an http:// URL"),
        ("http:///rpc", "is not an http:// URL"),
        ("http://?q", "is not an http:// URL"),
        ("http://[::1]:1]", "has a bad port"),
        ("http://h:x", "has a bad port"),
        ("http://h:+1", "has a bad port"),
        ("http://h:1:2", "has a bad port"),
        ("http://h:65536", "has a bad port"),
        ("http://h:\u0661", "has a bad port"),  # an Arabic-Indic digit: a digit, but not ASCII
        ("http://h/a b", "has a space or a control character"),
        ("http://h/a\r\nX: y", "has a space or a control character"),
        ("http://h/\x7f", "has a space or a control character"),
        ("http://h/é", "has a character that is not ASCII in its path: percent-encode it$"),
        ("http://h/путь", "has a character that is not ASCII in its path: percent-encode it$"),
    ],
)
def test_a_url_no_request_can_use_is_refused(url: str, says: str) -> None:
    """A URL that is not http(s), has no host, a bad port or a path that breaks the request
    line is a ValueError that says which."""
    with pytest.raises(ValueError, match=says):
        target(url)
