"""The PostgreSQL store in this process (so that `make mutate` sees it): failover, fencing, a
lost database, interrupted runs given up, a graceful stop, and the helpers that word errors.

tests/test_pg_cluster.py checks the same behaviours end to end with server processes; these
are their in-process counterparts, on a real database, one new one per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from backend import pgsql
from backend.app import STORE
from backend.jobs import JOB_TYPES
from backend.journal import Refused
from backend.pgstore import PgStore, _reason, is_postgres, redact
from backend.protocol import (
    HEALTH_PATH,
    AlreadyFinished,
    JobNotFound,
    JobStatus,
    StorageUnavailable,
)
from backend.store import Limits
from backend.worker import Worker
from tests.conftest import FAST, servers, until
from tests.pg import PASSWORD

OpenStore = Callable[..., Awaitable[PgStore]]
REVERSE = next(t for t in JOB_TYPES if t.name == "reverse")


@pytest.fixture
async def open_store(pg_url: str) -> AsyncIterator[OpenStore]:
    """Open PgStores on the test's database, each with a worker; all stopped at the end."""
    opened: list[tuple[PgStore, asyncio.Task[None]]] = []

    async def open_one(name: str, limits: Limits | None = None, *, work: bool = True) -> PgStore:
        store = PgStore(pg_url, limits or Limits(time_scale=FAST), name=name)
        await store.open()
        opened.append((store, start_worker(store) if work else asyncio.create_task(idle())))
        return store

    yield open_one
    for store, worker in opened:
        store.close()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await store.shutdown()


def start_worker(store: PgStore) -> asyncio.Task[None]:
    """The store's worker, running."""
    return asyncio.create_task(Worker(store).run())


async def idle() -> None:
    """A worker that takes nothing."""
    await asyncio.Event().wait()


def status_of(store: PgStore, job_id: str) -> JobStatus | None:
    """The job's status in the store's mirror; None while no notification brought it."""
    try:
        return store.get(job_id).status
    except JobNotFound:
        return None


async def sql(url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    """Run one statement on the database (as the superuser the tests connect as)."""
    connection = await asyncpg.connect(url)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(statement, *args)
        return rows
    finally:
        await connection.close()


END_SESSIONS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


async def end_sessions(url: str, where: str) -> int:
    """pg_terminate_backend every other session of the database matching `where`."""
    return len(await sql(url, f"{END_SESSIONS} AND ({where})"))


async def row_of(url: str, job_id: str) -> asyncpg.Record:
    """The job's row as the database holds it."""
    rows = await sql(url, "SELECT * FROM taskrpc.jobs WHERE id = $1", job_id)
    assert len(rows) == 1
    return rows[0]


# -- the helpers ----------------------------------------------------------------------


def test_both_url_schemes_name_postgres_and_a_file_does_not() -> None:
    """`postgresql://` and `postgres://` select PostgreSQL; a path, or the scheme elsewhere,
    does not."""
    assert is_postgres("postgresql://u@h/db")
    assert is_postgres("postgres://u@h/db")
    assert not is_postgres("jobs.db")
    assert not is_postgres("./postgres://x")


def test_redact_hides_the_password_only() -> None:
    """The password becomes *** and nothing else changes; a URL without one is unchanged."""
    assert redact("postgresql://u:s3cret@h:5432/db?x=1") == "postgresql://u:***@h:5432/db?x=1"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact("postgresql://s3cret:s3cret@h/s3cret") == "postgresql://s3cret:***@h/s3cret"


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (TimeoutError(), "it did not answer in time"),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused (is PostgreSQL"),
        (OSError(113, "No Route To Host"), "no route to host"),
        (OSError("bare"), "bare"),
        (ValueError("first line\nsecond line"), "first line"),
        (ValueError("  "), "ValueError"),
    ],
)
def test_a_database_failure_is_worded_in_one_line(error: BaseException, says: str) -> None:
    """Why the database failed, in one line: timeouts, refusals and OS errors in words, else
    the first line of the error, else its kind."""
    reason = _reason(error)
    assert reason.startswith(says)
    assert "\n" not in reason


# -- start-up -------------------------------------------------------------------------


async def test_a_newer_schema_is_refused_and_left_alone(pg_url: str) -> None:
    """A database a newer taskrpc wrote is refused (one line naming both versions) and kept."""
    store = PgStore(pg_url)
    await store.open()
    await store.shutdown()
    await sql(pg_url, f"UPDATE taskrpc.meta SET schema_version = {pgsql.SCHEMA_VERSION + 1}")
    with pytest.raises(Refused, match=r"newer taskrpc \(schema 2; this one knows up to 1\)"):
        await PgStore(pg_url).open()
    rows = await sql(pg_url, "SELECT schema_version FROM taskrpc.meta")
    assert [row["schema_version"] for row in rows] == [pgsql.SCHEMA_VERSION + 1]


async def test_the_schema_is_made_once_and_a_second_server_keeps_the_jobs(pg_url: str) -> None:
    """Opening an existing database migrates nothing and loads its jobs; one meta row."""
    first = PgStore(pg_url, Limits(time_scale=FAST))
    await first.open()
    job = await first.submit("reverse", "kept")
    await first.shutdown()
    second = PgStore(pg_url, Limits(time_scale=FAST))
    await second.open()
    try:
        assert second.get(job.id).data == "kept"
        rows = await sql(pg_url, "SELECT schema_version FROM taskrpc.meta")
        assert [row["schema_version"] for row in rows] == [pgsql.SCHEMA_VERSION]
    finally:
        await second.shutdown()


async def test_an_unreachable_database_is_refused_without_its_password(pg_url: str) -> None:
    """A wrong password: Refused, one line, the URL redacted."""
    url = pg_url.replace(f":{PASSWORD}@", ":wrong-one@")
    with pytest.raises(Refused) as refused:
        await PgStore(url).open()
    said = str(refused.value)
    assert said.startswith(f"cannot use the database {redact(url)}: password authentication")
    assert "wrong-one" not in said


# -- the runner -----------------------------------------------------------------------


async def test_failover_reruns_the_job_and_the_old_runner_records_nothing(
    pg_url: str, open_store: OpenStore
) -> None:
    """The runner's lock session ends mid-job: it steps down at once (the job waits again in
    its mirror), a server takes the lock within the election interval and reruns the job
    (attempt 2) to the end; the standby names the runner all along."""
    first = await open_store("first", Limits(time_scale=0.5))
    second = await open_store("second", Limits(time_scale=0.5))
    assert (first.role, second.role) == ("runner", "standby")
    assert (first.runner, second.runner) == ("first", "first")
    seen: list[JobStatus] = []
    first.subscribe(lambda changed: seen.append(changed.status))
    job = await first.submit("reverse", "abc")
    await until(lambda: first.get(job.id).status is JobStatus.RUNNING, what="the job to start")
    assert await end_sessions(pg_url, "application_name = 'taskrpc first'") == 1
    await until(lambda: first.role == "standby", what="the runner to step down")
    assert first.runner is None  # until it looks again (it reconnects first: 0.5 s)
    assert seen[:3] == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.QUEUED]
    assert first.get(job.id).started_at is None
    await until(lambda: status_of(second, job.id) is JobStatus.DONE, what="the rerun to end")
    done = second.get(job.id)
    assert (done.result, done.attempts) == ("cba", 2)
    row = await row_of(pg_url, job.id)
    runner = first if row["runner"] == "first" else second
    assert runner.role == "runner"
    await until(lambda: second.runner == runner.name, what="the standby to name the runner")
    assert first.get(job.id).status is JobStatus.DONE


async def test_an_interrupted_job_is_failed_after_max_attempts(
    pg_url: str, open_store: OpenStore
) -> None:
    """A job whose runs were interrupted max_attempts times fails, saying so; one short of it
    runs (its last attempt)."""
    store = await open_store("only", Limits(time_scale=FAST, max_attempts=3), work=False)
    given_up = await store.submit("reverse", "given up")
    runs = await store.submit("reverse", "runs")
    await sql(pg_url, "UPDATE taskrpc.jobs SET attempts = 3 WHERE id = $1", given_up.id)
    await sql(pg_url, "UPDATE taskrpc.jobs SET attempts = 2 WHERE id = $1", runs.id)
    worker = start_worker(store)
    try:
        await until(lambda: store.get(runs.id).status is JobStatus.DONE, what="the runs job")
    finally:
        worker.cancel()
    failed = store.get(given_up.id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, "interrupted 3 times")
    assert failed.finished_at is not None
    assert (store.get(runs.id).attempts, store.get(runs.id).result) == (3, "snur")


async def test_a_graceful_stop_puts_the_running_job_back(pg_url: str) -> None:
    """Shutting down mid-job puts it back at the head of the queue, not started, no runner,
    and closes every session of the store."""
    store = PgStore(pg_url, Limits(time_scale=1.0), name="stopping")
    await store.open()
    worker = asyncio.create_task(Worker(store).run())
    job = await store.submit("reverse", "back")
    await until(lambda: store.get(job.id).status is JobStatus.RUNNING, what="the job to start")
    store.close()
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    await store.shutdown()
    row = await row_of(pg_url, job.id)
    assert (row["status"], row["runner"], row["started_at"]) == ("queued", None, None)
    assert row["attempts"] == 1
    sessions = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
    deadline = time.monotonic() + 5
    while (await sql(pg_url, sessions))[0]["n"] > 1:  # its own sessions end with it
        assert time.monotonic() < deadline, "the stopped store left sessions open"
        await asyncio.sleep(0.01)


# -- the mirror -----------------------------------------------------------------------


async def test_a_lost_database_answers_unavailable_then_reloads_what_changed(
    pg_url: str, open_store: OpenStore
) -> None:
    """Every session of a store ends and it cannot reconnect: it answers StorageUnavailable;
    once it can, its mirror is what the database holds (a job added, one deleted meanwhile)."""
    store = await open_store("cut", work=False)
    deleted = await store.submit("reverse", "deleted meanwhile")
    waiting = asyncio.create_task(store.wait(deleted, timeout=30))
    name = pg_url.rsplit("/", 1)[1]
    cluster_url = pg_url.removesuffix(name) + "postgres"
    admin = await asyncpg.connect(pg_url)
    try:
        await sql(cluster_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.fetch(END_SESSIONS)
        await until(lambda: not store.available, what="the store to notice")
        with pytest.raises(StorageUnavailable):  # the wait in progress is told at once
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(StorageUnavailable, match="cannot be reached"):
            await store.submit("reverse", "refused")
        with pytest.raises(StorageUnavailable):
            list(store.newest())
        added = await pgsql.insert(admin, [("added-meanwhile", REVERSE.code, "added", 0.0)])
        await admin.execute("DELETE FROM taskrpc.jobs WHERE id = $1", deleted.id)
    finally:
        await admin.close()
        await sql(cluster_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    await until(lambda: store.available, what="the store to reconnect")
    assert [job.id for job in store.newest()] == [added[0]["id"]]
    assert store.get("added-meanwhile").data == "added"


async def test_a_standby_mirror_follows_every_change_of_the_runner(
    pg_url: str, open_store: OpenStore
) -> None:
    """What the runner does (start, finish, retention's deletes) and what the standby does
    (submit, cancel) reach the other server's mirror, with no query from it."""
    runner = await open_store("runner", Limits(time_scale=FAST, max_finished=1))
    # The standby submits: its time scale makes each job last 0.5 s, long enough for the
    # standby to read the row while it runs.
    standby = await open_store("standby", Limits(time_scale=0.25, max_finished=1))
    statuses: list[JobStatus] = []
    forgotten: list[str] = []
    standby.subscribe(lambda job: statuses.append(job.status), lambda job: forgotten.append(job.id))
    first = await standby.submit("reverse", "first")
    await until(lambda: standby.get(first.id).status is JobStatus.DONE, what="the first job")
    assert statuses == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE]
    assert standby.get(first.id).result == "tsrif"
    second = await standby.submit("reverse", "second")
    await until(lambda: forgotten == [first.id], what="retention to drop the first job")
    with pytest.raises(JobNotFound):
        standby.get(first.id)
    await until(lambda: standby.get(second.id).status is JobStatus.DONE, what="the second job")
    assert runner.get(second.id).result == "dnoces"
    assert standby.counts()["done"] == 1


async def test_a_cancel_through_the_standby_stops_the_runners_job(
    open_store: OpenStore,
) -> None:
    """A cancel through the standby lands on the runner's running job; a second one is
    refused as already finished."""
    runner = await open_store("runner", Limits(time_scale=1.0))
    standby = await open_store("standby", Limits(time_scale=1.0))
    job = await runner.submit("reverse", "long")
    await until(lambda: status_of(standby, job.id) is JobStatus.RUNNING, what="the job to run")
    cancelled = await standby.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    await until(lambda: runner.running is None, what="the runner to stop the job")
    assert runner.get(job.id).status is JobStatus.CANCELLED
    with pytest.raises(AlreadyFinished):
        await standby.cancel(job.id)


async def test_a_failed_group_commit_fails_each_submit_in_it_and_frees_their_room(
    pg_url: str, open_store: OpenStore
) -> None:
    """Submits that share a commit that fails all get StorageUnavailable, none hangs, and the
    queue limit stops counting them."""
    store = await open_store("only", Limits(time_scale=FAST, max_queued=3), work=False)
    await sql(pg_url, "ALTER TABLE taskrpc.jobs ADD CONSTRAINT no_bad CHECK (data <> 'bad')")
    tries = [store.submit("reverse", text) for text in ("ok", "bad", "fine")]
    outcomes = await asyncio.wait_for(asyncio.gather(*tries, return_exceptions=True), 10)
    assert [type(outcome) for outcome in outcomes] == [StorageUnavailable] * 3
    assert "no_bad" in str(outcomes[1])
    jobs = [await store.submit("reverse", f"room {n}") for n in range(3)]
    assert [job.status for job in jobs] == [JobStatus.QUEUED] * 3


async def test_find_reads_a_job_no_notification_brought(pg_url: str, open_store: OpenStore) -> None:
    """A job committed without a notification is unknown to `get` but read by `find`."""
    store = await open_store("only", work=False)
    await sql(
        pg_url,
        "INSERT INTO taskrpc.jobs (id, seq, type, data, delay, submitted_at)"
        " VALUES ('quiet', nextval('taskrpc.seq'), $1, 'silent', 0, 0)",
        REVERSE.code,
    )
    with pytest.raises(JobNotFound):
        store.get("quiet")
    found = await store.find("quiet")
    assert (found.id, found.data, found.status) == ("quiet", "silent", JobStatus.QUEUED)
    assert store.get("quiet") is found
    with pytest.raises(JobNotFound):
        await store.find("nowhere")


async def test_location_and_serving_name_the_runner(pg_url: str, open_store: OpenStore) -> None:
    """`location` names the database without its password and this server's role; the URL
    given to `serving` is the name the other servers see."""
    store = await open_store("before", work=False)
    assert store.location == f"in {redact(pg_url)}, this server is the runner"
    assert PASSWORD not in store.location
    store.serving("http://127.0.0.1:1234")
    standby = await open_store("standby", work=False)
    assert standby.location.endswith("this server is the standby")
    await until(lambda: standby.runner == "http://127.0.0.1:1234", what="the runner's new name")
    assert store.runner == "http://127.0.0.1:1234"


async def test_many_submits_at_once_reach_the_standby_in_order(open_store: OpenStore) -> None:
    """1 100 submits in one burst: two group commits, notifications of 300 ids, reads of 500:
    the standby's mirror holds every job, in submission order."""
    runner = await open_store("runner", work=False)
    standby = await open_store("standby", work=False)
    jobs = await asyncio.gather(*(runner.submit("reverse", f"n{n}") for n in range(1100)))
    await until(lambda: standby.queued == 1100, what="every job in the standby's mirror")
    assert [job.id for job in standby.newest()] == [job.id for job in reversed(jobs)]
    assert [job.seq for job in jobs] == sorted(job.seq for job in jobs)


async def test_the_runners_statements_are_fenced(pg_url: str, open_store: OpenStore) -> None:
    """A session that does not hold the runner lock can neither start, finish nor put back a
    job: each raises LostLock and changes nothing."""
    store = await open_store("runner", work=False)
    job = await store.submit("reverse", "fenced")
    connection = await asyncpg.connect(pg_url)
    try:
        with pytest.raises(pgsql.LostLock):
            await pgsql.take(connection, "intruder", 3)
        with pytest.raises(pgsql.LostLock):
            await pgsql.finish(connection, (job, "intruder", 1), (JobStatus.DONE, "x", None), [])
        with pytest.raises(pgsql.LostLock):
            await pgsql.put_back(connection, job.id)
    finally:
        await connection.close()
    row = await row_of(pg_url, job.id)
    assert (row["status"], row["attempts"], row["version"]) == ("queued", 0, 1)


async def test_a_listing_walk_survives_jobs_leaving_its_status(open_store: OpenStore) -> None:
    """`newest` walks the mirror lazily: jobs cancelled mid-walk shrink the index under it, and
    the walk goes on with the jobs that are left."""
    store = await open_store("only", work=False)
    jobs = [await store.submit("reverse", f"q{n}") for n in range(3)]
    walk = store.newest(JobStatus.QUEUED)
    assert next(walk) is jobs[2]
    for job in jobs[1:]:
        await store.cancel(job.id)
    assert list(walk) == [jobs[0]]


async def test_the_runner_sees_its_own_result_at_once(open_store: OpenStore) -> None:
    """Once `finish` returns, the runner's mirror holds the outcome (no wait for NOTIFY)."""
    store = await open_store("only", work=False)
    job = await store.submit("reverse", "now")
    taken = await asyncio.wait_for(store.take(), 10)
    assert taken is job
    assert store.get(job.id).status is JobStatus.RUNNING
    await store.finish(taken, JobStatus.DONE, result="won")
    assert (store.get(job.id).status, store.get(job.id).result) == (JobStatus.DONE, "won")


async def test_a_runner_that_cannot_record_gives_up_its_lock_session(
    pg_url: str, open_store: OpenStore
) -> None:
    """A result the database refuses: the runner steps down and ends its lock session (the
    lock goes with it), then takes the lock again on a new session and reruns the job, until
    max_attempts fails it."""
    store = await open_store("only", Limits(time_scale=FAST, max_attempts=2), work=False)
    await sql(pg_url, "ALTER TABLE taskrpc.jobs ADD CONSTRAINT no_bad CHECK (result <> 'bad')")
    pid = "SELECT pid FROM pg_stat_activity WHERE application_name = 'taskrpc only'"
    first_session = [row["pid"] for row in await sql(pg_url, pid)]
    job = await store.submit("reverse", "dab")
    worker = start_worker(store)
    try:
        await until(lambda: store.role == "standby", what="the runner to step down")
        assert store.runner is None
        await until(lambda: status_of(store, job.id) is JobStatus.FAILED, what="the job failed")
    finally:
        worker.cancel()
    assert store.get(job.id).error == "interrupted 2 times"
    second_session = [row["pid"] for row in await sql(pg_url, pid)]
    assert len(first_session) == len(second_session) == 1
    assert first_session != second_session


async def test_results_exactly_at_the_kept_characters_limit_are_all_kept(
    pg_url: str, open_store: OpenStore
) -> None:
    """Finished results totalling exactly max_kept_chars are all kept; one character more
    and the oldest goes, from the mirror and from the database."""
    store = await open_store("only", Limits(time_scale=FAST, max_kept_chars=6))
    first = await store.submit("reverse", "abc")
    second = await store.submit("reverse", "def")
    await until(lambda: store.get(second.id).status is JobStatus.DONE, what="the second job")
    assert store.get(first.id).result == "cba"
    third = await store.submit("reverse", "g")
    await until(lambda: status_of(store, third.id) is JobStatus.DONE, what="the third job")
    assert status_of(store, first.id) is None
    assert status_of(store, second.id) is JobStatus.DONE
    rows = await sql(pg_url, "SELECT id FROM taskrpc.jobs ORDER BY seq")
    assert [row["id"] for row in rows] == [second.id, third.id]  # deleted from the database


async def test_an_error_and_a_late_result_are_recorded_as_they_should(
    pg_url: str, open_store: OpenStore
) -> None:
    """A failed run's error reaches the database; a result recorded after a cancel landed
    leaves the job cancelled, quietly."""
    store = await open_store("only", work=False)
    failing = await store.submit("reverse", "fails")
    taken = await asyncio.wait_for(store.take(), 10)
    await store.finish(taken, JobStatus.FAILED, error="ValueError: boom")
    row = await row_of(pg_url, failing.id)
    assert (row["status"], row["error"], row["result"]) == ("failed", "ValueError: boom", None)
    late = await store.submit("reverse", "late")
    taken = await asyncio.wait_for(store.take(), 10)
    await store.cancel(late.id)
    await store.finish(taken, JobStatus.DONE, result="etal")
    assert store.get(late.id).status is JobStatus.CANCELLED
    row = await row_of(pg_url, late.id)
    assert (row["status"], row["result"]) == ("cancelled", None)


async def test_a_runner_lock_held_by_another_program_names_no_runner(
    pg_url: str, open_store: OpenStore
) -> None:
    """The runner lock held by a session that is not a taskrpc server: the store stays
    standby and names no runner (rather than the other program's name)."""
    holder = await asyncpg.connect(pg_url, server_settings={"application_name": "intruder"})
    try:
        await holder.execute("SELECT pg_advisory_lock($1, $2)", pgsql.LOCK_SPACE, pgsql.RUNNER_LOCK)
        store = await open_store("only", work=False)
        assert (store.role, store.runner) == ("standby", None)
    finally:
        await holder.close()
    await until(lambda: store.role == "runner", what="the store to take the freed lock")
    assert store.runner == "only"


async def test_health_on_postgresql_names_this_servers_role_and_the_runner(
    pg_url: str, tmp_path: Path
) -> None:
    """/healthz of a server on PostgreSQL: 200 "ok" while the database answers, with its
    role and the runner's URL beside the queue."""
    async with servers(tmp_path) as start:
        server = await start(db=pg_url)
        store = server.app[STORE]
        assert isinstance(store, PgStore)
        await until(lambda: store.runner == server.url, what="the server to name itself runner")
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + HEALTH_PATH) as reply,
        ):
            health = await reply.json()
        assert (reply.status, health) == (
            200,
            {
                "status": "ok",
                "queued": 0,
                "running": False,
                "running_id": None,
                "waiting": 0,
                "role": "runner",
                "runner": server.url,
            },
        )
