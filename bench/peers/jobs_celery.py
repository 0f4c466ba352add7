"""Celery's side of `make bench-peers`: the app, the job and its worker (`python jobs_celery.py`).

Runs in .venv-peers/rq-celery with this folder on PYTHONPATH; redis is on 127.0.0.1 at
$PEERS_REDIS_PORT, database 0 the broker and database 1 the results. The worker is
`--pool solo --concurrency 1` (one job at a time, in the worker's own process), logging at
WARNING; gossip, mingle and heartbeat are off, as they only matter between several workers.
"""

from __future__ import annotations

import os

from celery import Celery

_REDIS = f"redis://127.0.0.1:{os.environ['PEERS_REDIS_PORT']}"
app = Celery("jobs_celery", broker=f"{_REDIS}/0", backend=f"{_REDIS}/1")
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_hijack_root_logger = True


@app.task
def reverse(text: str) -> str:
    """The job every system runs: `abc` → `cba`."""
    return text[::-1]


def main() -> None:
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


if __name__ == "__main__":
    main()
