"""The aiohttp application: the gate, the routes, and the worker's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from backend import ws
from backend.connections import GatedSite, connection_cap, quiet_accept_errors, raise_fd_limit
from backend.envelope import dumps, error
from backend.gate import HTTP_LOG, TOKEN_SHOWN, Gate, too_large
from backend.journal import MEMORY, resolve
from backend.journaled import JournaledStore
from backend.pgstore import PgStore, is_postgres
from backend.protocol import HEALTH_PATH, JSON_TYPE, RPC_PATH, ErrorCode
from backend.rpc import Api
from backend.settings import Settings
from backend.store import Limits, MemoryStore, Store
from backend.worker import Worker

logger = logging.getLogger("taskrpc.app")

SHUTDOWN_GRACE = 1.0  # seconds in-flight requests get to finish once the server stops

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
API = web.AppKey("api", Api)
WORKER = web.AppKey("worker", asyncio.Task[None])


def create_app(settings: Settings) -> web.Application:
    """Build the server for `settings`; the worker starts and stops with the app."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[Gate.from_settings(settings).middleware()],
        # A compressed body is refused by the gate; never inflate one, even while refusing it.
        # Requests aiohttp cannot parse are logged through a filter: one line, rate-limited.
        handler_args={"auto_decompress": False, "logger": HTTP_LOG},
    )
    store = make_store(settings)
    app[SETTINGS] = settings
    app[STORE] = store
    app[API] = Api(store, max_wait=settings.max_wait, max_batch=settings.max_batch)
    app.router.add_post(RPC_PATH, rpc)
    app.router.add_get(HEALTH_PATH, health)
    app.cleanup_ctx.append(_worker)
    app.on_shutdown.append(_wake_waiters)
    ws.setup(
        app,
        store,
        app[API],
        settings.token,
        settings.max_body_bytes,
        max_sockets=settings.max_subscribers,
    )
    return app


async def start(settings: Settings) -> tuple[web.AppRunner, str]:
    """Build the app and listen as `settings` say; returns the runner and the URL it serves.

    `await runner.cleanup()` stops it gracefully. Handlers are cancelled when their client
    goes away, so a dropped long poll frees its task at once. Connections pass a gate
    (`backend.connections`): a cap below the file-descriptor limit, which is first raised
    as far as it goes, and a deadline for the first request head.
    """
    fd_limit = raise_fd_limit()
    app = create_app(settings)
    restore = quiet_accept_errors(asyncio.get_running_loop())

    async def put_back_handler(app: web.Application) -> None:
        restore()

    app.on_cleanup.append(put_back_handler)
    runner = web.AppRunner(
        app,
        # handle_signals stays False (aiohttp's default): serve() handles SIGINT and SIGTERM.
        handler_cancellation=True,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        shutdown_timeout=SHUTDOWN_GRACE,
        keepalive_timeout=settings.keepalive_timeout,
    )
    await runner.setup()
    site = GatedSite(
        runner,
        settings.host,
        settings.port,
        limit=connection_cap(settings.max_connections, fd_limit),
        head_timeout=settings.head_timeout,
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    url = served_url(settings.host, runner.addresses[0][1])
    runner.app[STORE].serving(url)
    return runner, url


def served_url(host: str, port: int) -> str:
    """The URL a server listening on `host` and `port` serves (an IPv6 address in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def rpc(request: web.Request) -> web.Response:
    """POST /rpc: one JSON-RPC request or batch (the gate has checked the head)."""
    settings = request.app[SETTINGS]
    try:
        if request.content.is_eof():
            # The whole body is here already (the usual small one): no deadline to set, and
            # no timer, took the server's CPU per status call from 114 to 106 µs (A/B,
            # bench row "status calls/s").
            body = await request.read()
        else:
            # aiohttp never fails the read of a chunked body whose framing breaks once the
            # handler reads it (nor of one that stalls): without a deadline it would wait
            # for as long as the client keeps the connection.
            async with asyncio.timeout(settings.body_timeout):
                body = await request.read()
    except TimeoutError:
        return await _body_too_slow(request, settings.body_timeout)
    except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the limit
        return too_large(settings.max_body_bytes)
    except web.RequestPayloadError as exc:  # a body that broke its own framing
        broken = error(ErrorCode.PARSE_ERROR, "Parse error", f"the body could not be read: {exc}")
        return web.Response(status=400, body=dumps(broken), content_type=JSON_TYPE)
    answer = await request.app[API].handle(body)
    if answer is None:
        return web.Response(status=204)
    return web.Response(body=dumps(answer), content_type=JSON_TYPE)


async def _body_too_slow(request: web.Request, seconds: float) -> web.Response:
    """408, then close the connection at once: what may follow cannot be framed.

    aiohttp would otherwise keep reading an unfinished body for its lingering time (10 s)
    before it closes; the answer is sent first, and closing flushes it.
    """
    late = error(
        ErrorCode.PARSE_ERROR,
        "Parse error",
        f"the body did not arrive within {seconds:g} s (--body-timeout)",
    )
    response = web.Response(status=408, body=dumps(late), content_type=JSON_TYPE)
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


async def health(request: web.Request) -> web.Response:
    """GET /healthz: is the server up; with the token, how long is the queue, what runs.

    Without the token (a load balancer's probe) it says only "ok" or, with 503, "error".
    """
    shown = request[TOKEN_SHOWN]
    if request.app[WORKER].done():
        details = {"worker": "stopped"} if shown else {}
        return web.json_response({"status": "error", **details}, status=503)
    store = request.app[STORE]
    if not store.available:  # a shared database lost: a probe must see this too
        lost = {"storage": "unavailable", **store.cluster()} if shown else {}
        return web.json_response({"status": "error", **lost}, status=503)
    if not shown:
        return web.json_response({"status": "ok"})
    running = store.running
    return web.json_response(
        {
            "status": "ok",
            "queued": store.queued,
            "running": running is not None,
            "running_id": running.id if running is not None else None,
            "waiting": store.waiting,  # `wait` calls parked now, against --max-waiters
            **store.cluster(),
        }
    )


def make_store(settings: Settings) -> Store:
    """The store `--db` asks for: a PostgreSQL database shared with other servers, a journaled
    file by default, memory only for `:memory:`."""
    if settings.db is not None and is_postgres(settings.db):
        return PgStore(settings.db, limits(settings))
    path = resolve(settings.db, os.environ)
    if path == MEMORY:
        return MemoryStore(limits(settings))
    return JournaledStore(path, limits(settings))


def limits(settings: Settings) -> Limits:
    """The part of the settings the store obeys."""
    return Limits(
        time_scale=settings.time_scale,
        max_text_chars=settings.max_text_chars,
        max_result_chars=settings.max_result_chars,
        max_queued=settings.max_queued,
        max_finished=settings.max_finished,
        max_kept_chars=settings.max_kept_chars,
        max_waiters=settings.max_waiters,
        max_queued_chars=settings.max_queued_chars,
        max_attempts=settings.max_attempts,
    )


async def _worker(app: web.Application) -> AsyncIterator[None]:
    """Open the store and run the one worker for as long as the app runs."""
    store = app[STORE]
    await store.open()
    task = asyncio.create_task(Worker(store).run(), name="taskrpc-worker")
    task.add_done_callback(_report_crash)
    app[WORKER] = task
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await store.shutdown()
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        raise asyncio.CancelledError  # we are being cancelled ourselves: do not swallow it


async def _wake_waiters(app: web.Application) -> None:
    app[STORE].close()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.critical("the worker stopped", exc_info=task.exception())
