"""The aiohttp application: routes, the token check, and the worker's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from backend import ws
from backend.protocol import HEALTH_PATH, RPC_PATH, WS_PATH, ErrorCode, bearer
from backend.rpc import Api, dumps
from backend.settings import Settings
from backend.store import Limits, MemoryStore, Store
from backend.worker import Worker
from backend.ws import same_secret

logger = logging.getLogger("taskrpc.app")

SHUTDOWN_GRACE = 1.0  # seconds in-flight requests get to finish once the server stops

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
API = web.AppKey("api", Api)
WORKER = web.AppKey("worker", asyncio.Task[None])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(settings: Settings) -> web.Application:
    """Build the server for `settings`; the worker starts and stops with the app."""
    middlewares = [_token_check(settings.token)] if settings.token is not None else []
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    store = MemoryStore(limits(settings))
    app[SETTINGS] = settings
    app[STORE] = store
    app[API] = Api(store, max_wait=settings.max_wait, max_batch=settings.max_batch)
    app.router.add_post(RPC_PATH, rpc)
    app.router.add_get(HEALTH_PATH, health)
    app.cleanup_ctx.append(_worker)
    app.on_shutdown.append(_wake_waiters)
    ws.setup(app, store, app[API], settings.token, settings.max_body_bytes)
    return app


async def start(settings: Settings) -> tuple[web.AppRunner, str]:
    """Build the app and listen as `settings` say; returns the runner and the URL it serves.

    `await runner.cleanup()` stops it gracefully. Handlers are cancelled when their client
    goes away, so a dropped long poll frees its task at once.
    """
    runner = web.AppRunner(
        create_app(settings),
        handle_signals=False,
        handler_cancellation=True,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        shutdown_timeout=SHUTDOWN_GRACE,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except BaseException:
        await runner.cleanup()
        raise
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return runner, f"http://{host}:{runner.addresses[0][1]}"


async def rpc(request: web.Request) -> web.Response:
    """POST /rpc: one JSON-RPC request or batch."""
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)  # refused before reading a byte of it
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    answer = await request.app[API].handle(body)
    if answer is None:
        return web.Response(status=204)
    return web.Response(body=dumps(answer), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    """GET /healthz: is the server up, how long is the queue, is a job running."""
    store = request.app[STORE]
    running = store.running
    if request.app[WORKER].done():
        return web.json_response({"status": "error", "worker": "stopped"}, status=503)
    return web.json_response(
        {
            "status": "ok",
            "queued": store.queued,
            "running": running is not None,
            "running_id": running.id if running is not None else None,
        }
    )


def _error_body(code: ErrorCode, message: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": None})


def _too_large(limit: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit,
        text=_error_body(
            ErrorCode.INVALID_REQUEST,
            f"request body is larger than the server's limit of {limit} bytes",
        ),
        content_type="application/json",
    )


def _token_check(token: str) -> Middleware:
    expected = bearer(token)

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == WS_PATH and request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)  # the socket checks a header or its first message
        if not same_secret(request.headers.get("Authorization", ""), expected):
            raise web.HTTPUnauthorized(
                text=_error_body(
                    ErrorCode.UNAUTHORIZED,
                    "missing or wrong token: send the header 'Authorization: Bearer <token>'",
                ),
                content_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="taskrpc"'},
            )
        return await handler(request)

    return check


def limits(settings: Settings) -> Limits:
    """The part of the settings the store obeys."""
    return Limits(
        time_scale=settings.time_scale,
        max_text_chars=settings.max_text_chars,
        max_result_chars=settings.max_result_chars,
        max_queued=settings.max_queued,
        max_finished=settings.max_finished,
        max_kept_chars=settings.max_kept_chars,
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
