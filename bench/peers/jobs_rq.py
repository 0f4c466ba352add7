"""RQ's side of `make bench-peers`: the job and its worker (`python jobs_rq.py`).

Runs in .venv-peers/rq-celery with this folder on PYTHONPATH; redis is on 127.0.0.1 at
$PEERS_REDIS_PORT. The worker is RQ's `SimpleWorker` (no fork per job), logging at WARNING like
every worker in the comparison.
"""

from __future__ import annotations

import os

QUEUE = "default"


def reverse(text: str) -> str:
    """The job every system runs: `abc` → `cba`."""
    return text[::-1]


def main() -> None:
    from redis import Redis
    from rq import Queue, SimpleWorker

    connection = Redis(host="127.0.0.1", port=int(os.environ["PEERS_REDIS_PORT"]))
    queue = Queue(QUEUE, connection=connection)
    SimpleWorker([queue], connection=connection).work(logging_level="WARNING")


if __name__ == "__main__":
    main()
