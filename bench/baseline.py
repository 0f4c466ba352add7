"""The baseline: a bare aiohttp handler that parses the JSON body, does one dict lookup
and returns JSON. Run as `python -m bench.baseline --port 0 --job-file FILE`; it prints
`listening on http://127.0.0.1:PORT` like taskrpc-server does. It runs on the event loop
taskrpc-server would (`--loop`, or TASKRPC_LOOP, as the server reads it).

The job it answers with is read from FILE (a real job object fetched from the server
under test), so both send responses of the same size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

from aiohttp import web

from backend.loops import LOOPS, choose

JOBS = web.AppKey("jobs", dict[str, Any])


async def rpc(request: web.Request) -> web.Response:
    body = await request.read()
    call = json.loads(body)
    params = call.get("params")
    key = params.get("id") if isinstance(params, dict) else None
    job = request.app[JOBS].get(key) if isinstance(key, str) else None
    answer = {"jsonrpc": "2.0", "result": job, "id": call.get("id")}
    return web.Response(
        body=json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode(),
        content_type="application/json",
    )


async def serve(port: int, job: dict[str, Any]) -> None:
    app = web.Application()
    app[JOBS] = {job["id"]: job}
    app.router.add_post("/rpc", rpc)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"bare aiohttp listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--job-file", type=Path, required=True)
    # The same loop as taskrpc-server's, from the same setting: the ratio compares handlers.
    parser.add_argument("--loop", choices=LOOPS, default=os.environ.get("TASKRPC_LOOP", "auto"))
    args = parser.parse_args()
    job: dict[str, Any] = json.loads(args.job_file.read_text())
    _, factory = choose(args.loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.port, job))


if __name__ == "__main__":
    main()
