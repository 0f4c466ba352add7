"""A minimal HTTP/1.1 client connection on a socket: what `cli.sync` needs, nothing more.

Why not `http.client`: importing it imports `email.parser` and `ssl`, ~16 ms of every
command's start-up on this machine, more than the rest of `taskrpc status` together (bench
row "`taskrpc status ID` wall time", BENCHMARKS.md). The client posts small JSON bodies to
one path and reads JSON answers, so this is all it takes: a POST with a Content-Length body,
keep-alive, and an answer framed by Content-Length, by chunked transfer coding, or by the end
of the connection. `ssl` is imported only for an https:// URL.
"""

from __future__ import annotations

import io
import socket
import sys
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from io import BufferedReader

    from _typeshed import WriteableBuffer

MAX_LINE = 65536  # bytes in a status, header or chunk-size line (as http.client allows)
MAX_HEADERS = 100  # header lines in one answer (as http.client allows)
_NO_BODY = (204, 304)  # answers that never carry a body
_HEX = b"0123456789abcdefABCDEF"
_HEAD_CODEC = "latin-1"  # an HTTP head is bytes: latin-1 maps each byte to one character
# A socket with a timeout makes Python poll() before every send and recv: two system calls
# more per call. Where a `struct timeval` is two 8-byte fields (64-bit Linux and macOS), the
# kernel keeps the timeout instead (SO_RCVTIMEO, SO_SNDTIMEO) on a blocking socket: 101 →
# 91 µs of client CPU per status call (A/B, bench row "status calls/s, same Python client").
_KERNEL_TIMEOUTS = sys.platform in ("linux", "darwin") and sys.maxsize > 2**32
_TIMEVAL_FIELD = 8  # bytes in each of those two fields


class NotHttp(Exception):
    """The peer answered with something that is not HTTP/1.x."""


class Closed(ConnectionError):
    """The peer closed the connection without answering (e.g. an idle keep-alive one)."""


class Answer:
    """An HTTP answer: its status, its whole body, and whether the connection ends with it."""

    __slots__ = ("body", "close", "status")

    def __init__(self, status: int, body: bytes, close: bool) -> None:
        self.status = status
        self.body = body
        self.close = close


class Connection:
    """One keep-alive connection to `host:port`, opened on the first `send`.

    `send` then `read`, in turns; after an answer with `close` set, or any error, call
    `close()` (the next `send` opens a new connection).
    """

    def __init__(self, host: str, port: int | None, *, https: bool = False) -> None:
        self._host = host
        self._https = https
        default = 443 if https else 80
        self._port = port or default
        name = host.encode("idna").decode("ascii") if not host.isascii() else host
        name = f"[{name}]" if ":" in name else name  # an IPv6 address
        self._host_header = name if self._port == default else f"{name}:{self._port}"
        self._sock: socket.socket | None = None
        self._file: BufferedReader | None = None
        self._kernel_timeouts = _KERNEL_TIMEOUTS and not https
        self._timeout: float | None = None  # the one set on the socket

    def send(self, path: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
        """POST `body` to `path`, connecting first if need be; `timeout` s for each step."""
        sock = self._open(timeout)
        if timeout != self._timeout:
            self._set_timeout(sock, timeout)
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {self._host_header}",
            "Accept-Encoding: identity",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        try:
            sock.sendall("\r\n".join(lines).encode(_HEAD_CODEC) + b"\r\n\r\n" + body)
        except BlockingIOError:  # SO_SNDTIMEO passed
            raise TimeoutError("timed out") from None

    def read(self) -> Answer:
        """The answer to the request just sent (interim 1xx answers skipped)."""
        if self._file is None:
            raise Closed("nothing was sent on this connection")
        status, version = _status_line(self._file)
        while 100 <= status < 200:
            _headers(self._file)
            status, version = _status_line(self._file)
        headers = _headers(self._file)
        connection = headers["connection"].lower()
        close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        if status in _NO_BODY:
            return Answer(status, b"", close)
        if "chunked" in headers["transfer-encoding"].lower():
            return Answer(status, _chunked(self._file), close)
        if "content-length" in headers:
            return Answer(status, _exactly(self._file, _length(headers["content-length"])), close)
        return Answer(status, self._file.read(), True)  # the end of the connection ends it

    def close(self) -> None:
        """Close the connection, if open."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _open(self, timeout: float) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection((self._host, self._port), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)  # as http.client does
            if self._https:
                import ssl

                context = ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=self._host)
                self._file = sock.makefile("rb")
            elif self._kernel_timeouts:
                sock.settimeout(None)  # blocking: the kernel's timeouts are set in send
                self._file = io.BufferedReader(_Receiver(sock))
            else:
                self._file = sock.makefile("rb")
            self._sock, self._timeout = sock, None
        return self._sock

    def _set_timeout(self, sock: socket.socket, timeout: float) -> None:
        if self._kernel_timeouts:
            whole = int(timeout)
            # (timeout - whole) < 1 is exact, and a float below 1 times 10**6 stays below 10**6:
            # micros is at most 999_999. A timeval of 0 s 0 µs would be "never".
            micros = max(int((timeout - whole) * 1_000_000), 1)
            field = _TIMEVAL_FIELD
            timeval = whole.to_bytes(field, sys.byteorder) + micros.to_bytes(field, sys.byteorder)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        else:
            sock.settimeout(timeout)
        self._timeout = timeout


class _Receiver(io.RawIOBase):
    """A blocking socket's bytes for a BufferedReader: a recv past SO_RCVTIMEO is TimeoutError.

    (`socket.makefile` would answer it with None, which a BufferedReader takes for the end.)
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:  # SO_RCVTIMEO passed
            raise TimeoutError("timed out") from None


def _line(file: BufferedReader) -> bytes:
    line = file.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise NotHttp("a line longer than 64 KiB")
    return line


def _status_line(file: BufferedReader) -> tuple[int, str]:
    """The status and the version of `HTTP/1.1 200 OK`."""
    line = _line(file)
    if not line:
        raise Closed("the server closed the connection without answering")
    version, _, rest = line.decode(_HEAD_CODEC).partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not (code.isascii() and code.isdigit()):
        raise NotHttp(f"not an HTTP status line: {line[:40]!r}")
    return int(code), version


def _headers(file: BufferedReader) -> dict[str, str]:
    """The header fields up to the blank line, names lowercased, repeated ones joined; a
    missing one reads as empty."""
    headers: dict[str, str] = defaultdict(str)
    for _ in range(MAX_HEADERS + 1):
        line = _line(file)
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, colon, value = line.decode(_HEAD_CODEC).partition(":")
        if not colon:
            raise NotHttp(f"not an HTTP header line: {line[:40]!r}")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raise NotHttp(f"more than {MAX_HEADERS} header lines")


def _length(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise NotHttp(f"a bad Content-Length: {text[:20]!r}")
    return int(text)


def _exactly(file: BufferedReader, size: int) -> bytes:
    data = file.read(size)
    if len(data) < size:
        raise ConnectionError("the connection closed in the middle of an answer")
    return data


def _chunked(file: BufferedReader) -> bytes:
    """A body in chunked transfer coding: sized chunks, a zero-size one, optional trailers."""
    chunks: list[bytes] = []
    while True:
        line = _line(file)
        if not line:
            raise ConnectionError("the connection closed in the middle of an answer")
        size_text = line.split(b";")[0].strip()
        if not size_text or size_text.strip(_HEX):
            raise NotHttp(f"a bad chunk size: {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            _headers(file)  # trailers, up to the blank line
            return b"".join(chunks)
        chunks.append(_exactly(file, size))
        if _line(file) not in (b"\r\n", b"\n"):
            raise NotHttp("a chunk longer than its size")
