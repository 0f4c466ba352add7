"""arq's side of `make bench-peers`: the job and its worker (`python jobs_arq.py`).

Runs in .venv-peers/arq with this folder on PYTHONPATH; redis is on 127.0.0.1 at
$PEERS_REDIS_PORT. One job at a time (`max_jobs=1`) like every worker in the comparison, and
`poll_delay` 10 ms instead of arq's default 500 ms: arq polls its queue, starting at most
`max_jobs` jobs per poll, so its drain is bounded by 1 / poll_delay = 100 jobs/s and its idle
latency by the poll too.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from arq import run_worker
from arq.connections import RedisSettings

POLL_DELAY = 0.01  # seconds between the worker's polls of the queue (arq's default is 0.5)


async def reverse(ctx: dict[str, Any], text: str) -> str:
    """The job every system runs: `abc` → `cba`."""
    return text[::-1]


def redis_settings() -> RedisSettings:
    return RedisSettings(host="127.0.0.1", port=int(os.environ["PEERS_REDIS_PORT"]))


class WorkerSettings:
    """arq reads its worker's options from a class like this one."""

    functions = [reverse]  # noqa: RUF012 - arq's settings are class attributes by design
    redis_settings = redis_settings()
    max_jobs = 1
    poll_delay = POLL_DELAY
    handle_signals = True


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    run_worker(WorkerSettings)


if __name__ == "__main__":
    main()
