"""`python -m bench peers` (`make bench-peers`): taskrpc side by side with RQ, arq and Celery.

The peers run from their own virtual environments under `.venv-peers/` (pinned in the
`requirements-*.txt` files here), against a private `redis-server` on a free loopback port.
`run.py` drives the rounds and prints the table; `driver.py` is one client process (it runs
under any of the venvs); `jobs_rq.py`, `jobs_arq.py` and `jobs_celery.py` are each peer's
job, `text[::-1]`, and its worker. See BENCHMARKS.md for the method and what is unfair.
"""
