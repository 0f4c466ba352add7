"""The gate: what every HTTP request must pass before a handler runs or a body is read.

One middleware runs the checks in this order, and the first that fails answers:

1. Host: without a token, only requests addressed to this machine's names (localhost,
   127.0.0.1, [::1], the --host address, --allow-host names) are served, so a web page
   cannot reach the server by rebinding its own domain to 127.0.0.1 (403).
2. Origin: a request or WebSocket upgrade from a web page on another site is refused,
   token or not (403). Clients that send no Origin (the CLI, the dashboard, curl) pass.
3. The token: `Authorization: Bearer <token>` (401). A WebSocket may send it as its first
   message instead, and `/healthz` without it says only whether the server is up.
4. Encoding, type and size: a compressed body (any Content-Encoding but identity) is 415
   and never inflated; a POST whose Content-Type is not application/json is 415 (a page
   can send text/plain or a form without asking first); a body over the limit is 413.

Every refusal is an HTTP error whose body is a JSON-RPC error naming the rule. Nothing
after a failed step runs, and the body is never read.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from backend.envelope import dumps, error
from backend.protocol import HEALTH_PATH, JSON_TYPE, WS_PATH, ErrorCode, bearer
from backend.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Check = Callable[[web.Request], web.Response | None]

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ANY = "*"
TOKEN_SHOWN = web.RequestKey("token_shown", bool)  # did the request carry the right token?
# A Host header: a name or a bracketed IPv6 address, then an optional port; nothing else.
_HOST = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[^\[\]:@/\\\s]+)(?::[0-9]*)?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Gate:
    """The rules of one server, from its settings."""

    hosts: frozenset[str]  # names a request may be addressed to, and a page's Origin be on
    any_host: bool  # --allow-host '*': no Host check
    origins: frozenset[str]  # --allow-origin URLs, normalized
    any_origin: bool  # --allow-origin '*'
    token: str | None
    max_body: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Gate:
        """The gate `settings` describe."""
        named = {_bare(name) for name in settings.allow_hosts if name != ANY}
        return cls(
            hosts=LOCAL_NAMES | {_bare(settings.host)} | named,
            any_host=ANY in settings.allow_hosts,
            origins=frozenset(_origin(url) for url in settings.allow_origins if url != ANY),
            any_origin=ANY in settings.allow_origins,
            token=settings.token,
            max_body=settings.max_body_bytes,
        )

    def middleware(self) -> Middleware:
        """The aiohttp middleware that runs the checks in order before the handler."""
        checks: tuple[Check, ...] = (self._host, self._origin, self._token, self._body)

        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            for check in checks:
                refusal = check(request)
                if refusal is not None:
                    return refusal
            return await handler(request)

        return gate

    def _host(self, request: web.Request) -> web.Response | None:
        if self.token is not None or self.any_host:
            return None  # a page cannot know the token: with one, the name does not matter
        given = request.headers.get(hdrs.HOST)
        found = _HOST.fullmatch(given) if given else None  # no Host (HTTP/1.0) names nothing
        if found is not None and _bare(found["name"]) in self.hosts:
            return None
        return _refuse(
            403,
            f"Host {given!r} is not one of this server's names: without a token it answers "
            "only requests sent to localhost, 127.0.0.1, [::1] or its --host address; "
            "start it with --allow-host NAME to allow another",
        )

    def _origin(self, request: web.Request) -> web.Response | None:
        given = request.headers.get(hdrs.ORIGIN)
        if given is None or self.any_origin:
            return None  # not a browser, or every site allowed
        try:
            host = urlsplit(given).hostname
        except ValueError:
            host = None
        if host in self.hosts or _origin(given) in self.origins:
            return None
        return _refuse(
            403,
            f"Origin {given!r} is another web site: pages from it may not use this server; "
            "start it with --allow-origin URL to let a browser app in",
        )

    def _token(self, request: web.Request) -> web.Response | None:
        # No Authorization header: any stand-in but the bearer token is refused alike.
        authorization = request.headers.get(hdrs.AUTHORIZATION, "")  # pragma: no mutate
        shown = self.token is None or same_secret(authorization, bearer(self.token))
        request[TOKEN_SHOWN] = shown
        if shown or _upgrade(request) or _health(request):
            return None  # the socket asks for the token itself; /healthz says less
        return web.Response(
            status=401,
            body=dumps(
                error(
                    ErrorCode.UNAUTHORIZED,
                    "missing or wrong token: send the header 'Authorization: Bearer <token>'",
                )
            ),
            content_type=JSON_TYPE,
            headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="taskrpc"'},
        )

    def _body(self, request: web.Request) -> web.Response | None:
        codings = [
            coding.strip().lower()
            for header in request.headers.getall(hdrs.CONTENT_ENCODING, ())
            for coding in header.split(",")
        ]
        if any(coding not in ("identity", "") for coding in codings):
            return _refuse(
                415,
                f"Content-Encoding {', '.join(codings)!r} is not accepted: "
                "send the body uncompressed (or 'identity')",
            )
        # No Content-Type: any stand-in but JSON's is refused alike.
        content_type = request.headers.get(hdrs.CONTENT_TYPE, "")  # pragma: no mutate
        media = content_type.split(";")[0].strip().lower()
        if request.method == "POST" and media != JSON_TYPE:
            return _refuse(
                415,
                f"Content-Type {request.headers.get(hdrs.CONTENT_TYPE)!r} is not accepted: "
                "send 'Content-Type: application/json'",
            )
        length = request.content_length
        if length is not None and length > self.max_body:
            return too_large(self.max_body)  # refused before reading a byte of it
        return None


def too_large(limit: int) -> web.Response:
    """HTTP 413 for a body over `limit` bytes."""
    return _refuse(413, f"request body is larger than the server's limit of {limit} bytes")


def same_secret(given: str, expected: str) -> bool:
    """Compare a secret in constant time, whatever characters `given` holds."""
    return hmac.compare_digest(_utf8(given), _utf8(expected))


def _utf8(text: str) -> bytes:
    """`text` as UTF-8, lone surrogates too (a header decoded with surrogateescape has them)."""
    return text.encode(errors="surrogatepass")  # str.encode's codec is always UTF-8


class MalformedRequests(logging.Filter):
    """Malformed HTTP from the network: one WARNING line at most every `interval` seconds.

    aiohttp logs each request it cannot parse as an ERROR with a traceback; anyone can send
    them, so they are turned into one short line, and the rest of each interval are counted.
    Every other record passes unchanged.
    """

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__()
        self.interval = interval
        self._next = 0.0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a parse error into one line, or drop it if one was logged just now."""
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        if now < self._next:
            self._dropped += 1
            return False
        self._next = now + self.interval
        reason = ascii(str(exc.message).splitlines()[0] if exc.message else type(exc).__name__)
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "malformed HTTP request from %s: %s (status %s)%s"
        more = f"; {self._dropped} more not logged" if self._dropped else ""
        record.args = (remote, reason[1:-1][:200], exc.code, more)
        record.levelno = min(record.levelno, logging.WARNING)  # aiohttp's debug lines stay so
        record.levelname = logging.getLevelName(record.levelno)
        record.exc_info, record.exc_text = None, None
        self._dropped = 0
        return True


HTTP_LOG = logging.getLogger("taskrpc.http")  # aiohttp's server log, through the filter
HTTP_LOG.addFilter(MalformedRequests())


def _refuse(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=dumps(error(ErrorCode.INVALID_REQUEST, message)),
        content_type=JSON_TYPE,
    )


def _bare(name: str) -> str:
    """A host name as compared: lower case, an IPv6 address without its brackets."""
    return name.strip().lower().removeprefix("[").removesuffix("]")


def _origin(url: str) -> str:
    """An origin as compared: lower case, no trailing slash."""
    return url.strip().lower().rstrip("/")


def _upgrade(request: web.Request) -> bool:
    return request.path == WS_PATH and request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def _health(request: web.Request) -> bool:
    return request.path == HEALTH_PATH and request.method in ("GET", "HEAD")
