"""The SQL of the PostgreSQL store: the schema and its migrations, the advisory locks, and
each change as one function over a connection, so that `backend/pgstore.py` reads as the
store's logic.

Changes to many rows are one statement each (one round trip): the change, then `NOTIFY`
of every changed row as `id:version`. Submits take a transaction-level advisory lock before
they draw from the sequence, so sequence order is commit order. The runner's statements
start with `fence`: they run only in a session that holds the runner lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from backend.journal import Refused
from backend.protocol import JobStatus
from backend.store import Job

SCHEMA_VERSION = 1
CHANNEL = "taskrpc_jobs"  # NOTIFY channel; the payload: `id:version,…` (0: deleted)
LOCK_SPACE = 0x7461736B  # "task": the first key of every advisory lock we take
RUNNER_LOCK = 1  # held, session-level, by the runner
ORDER_LOCK = 2  # held, transaction-level, while submits draw from the sequence and commit
MIGRATE_LOCK = 3  # held while one server creates or migrates the schema
QUERY_TIMEOUT = 5.0  # seconds any one statement may take
GROUP_MAX = 1000  # submits (or cancels) in one statement
NOTIFY_IDS = 300  # `id:version` entries in one NOTIFY payload (PostgreSQL allows 8000 bytes)
APPLICATION = "taskrpc "  # + the server's name: the application_name of its lock session
_COLUMNS = (
    "id, seq, type, data, delay, status, attempts, submitted_at, started_at, finished_at, "
    "result, error, runner, version"
)
_NOW = "extract(epoch from clock_timestamp())"  # the database's clock: one clock for all servers
_FINISHED = [s.value for s in JobStatus if s.finished]
_FENCE = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid = pg_backend_pid() AND classid = $1 AND objid = $2 AND objsubid = 2)"
)
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE SEQUENCE taskrpc.seq AS bigint MINVALUE 0 START 0",
        f"""CREATE TABLE taskrpc.jobs (
            id text PRIMARY KEY,
            seq bigint NOT NULL UNIQUE,
            type smallint NOT NULL,
            data text NOT NULL,
            delay double precision NOT NULL,
            status text NOT NULL DEFAULT 'queued'
                CHECK (status IN ({", ".join(f"'{s.value}'" for s in JobStatus)})),
            attempts integer NOT NULL DEFAULT 0,
            submitted_at double precision NOT NULL,
            started_at double precision,
            finished_at double precision,
            result text,
            error text,
            runner text,
            version bigint NOT NULL DEFAULT 1
        )""",
        "CREATE INDEX jobs_waiting ON taskrpc.jobs (seq) WHERE status IN ('queued', 'running')",
    ),
}
Connection = asyncpg.Connection | PoolConnectionProxy  # a connection of its own, or a pool's
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class LostLock(Exception):
    """The runner's session no longer holds the runner lock."""


SELECT_ALL = f"SELECT {_COLUMNS} FROM taskrpc.jobs ORDER BY seq"
SELECT_IDS = f"SELECT {_COLUMNS} FROM taskrpc.jobs WHERE id = ANY($1::text[])"
# Changes to many rows, each one statement and so one round trip: the change, then NOTIFY of
# every changed row (`id:version`, at most NOTIFY_IDS to a payload).
_TELL = f"""
    told AS (
        SELECT pg_notify('{CHANNEL}', string_agg(id || ':' || version, ','))
        FROM (SELECT id, version, row_number() OVER () - 1 AS n FROM changed) AS numbered
        GROUP BY n / {NOTIFY_IDS}
    )
    SELECT * FROM changed WHERE (SELECT count(*) FROM told) >= 0
"""
# Submits take the order lock first: sequence order must be commit order (one submitting
# transaction at a time), so the runner never sees job 7 before job 6. Rows go in given order.
_INSERT = f"""
    WITH ordered AS (SELECT pg_advisory_xact_lock({LOCK_SPACE}, {ORDER_LOCK})),
    changed AS (
        INSERT INTO taskrpc.jobs (id, seq, type, data, delay, submitted_at)
        SELECT u.id, nextval('taskrpc.seq'), u.type, u.data, u.delay, {_NOW}
        FROM ordered, unnest($1::text[], $2::smallint[], $3::text[], $4::float8[])
            AS u(id, type, data, delay)
        RETURNING {_COLUMNS}
    ),
    {_TELL}
"""
_CANCEL = f"""
    WITH changed AS (
        UPDATE taskrpc.jobs SET status = 'cancelled', finished_at = {_NOW}, version = version + 1
        WHERE id = ANY($1::text[]) AND status IN ('queued', 'running') RETURNING {_COLUMNS}
    ),
    {_TELL}
"""
_HEAD = """
    SELECT id, status, attempts FROM taskrpc.jobs WHERE status IN ('queued', 'running')
    ORDER BY seq LIMIT 1 FOR UPDATE
"""
_START = f"""
    UPDATE taskrpc.jobs SET status = 'running', attempts = attempts + 1, started_at = {_NOW},
        runner = $2, version = version + 1
    WHERE id = $1 RETURNING {_COLUMNS}
"""
_GIVE_UP = f"""
    UPDATE taskrpc.jobs SET status = 'failed', error = $2, finished_at = {_NOW},
        version = version + 1
    WHERE id = $1 RETURNING id, version
"""
_FINISH = f"""
    UPDATE taskrpc.jobs SET status = $2, result = $3, error = $4, finished_at = {_NOW},
        version = version + 1
    WHERE id = $1 AND status = 'running' AND runner = $5 AND attempts = $6 RETURNING {_COLUMNS}
"""
_PUT_BACK = """
    UPDATE taskrpc.jobs SET status = 'queued', started_at = NULL, runner = NULL,
        version = version + 1
    WHERE id = $1 AND status = 'running' RETURNING id, version
"""
ANNOUNCE = "SELECT set_config('application_name', $1, false)"
_HOLDER = """
    SELECT activity.application_name FROM pg_locks AS lock
    JOIN pg_stat_activity AS activity ON activity.pid = lock.pid
    WHERE lock.locktype = 'advisory' AND lock.granted AND lock.classid = $1 AND lock.objid = $2
        AND lock.objsubid = 2
        AND lock.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
_DELETE = "DELETE FROM taskrpc.jobs WHERE id = ANY($1::text[]) AND status = ANY($2::text[])"


async def migrate(connection: Connection) -> None:
    """Create the schema, or bring an older one up to date; refuse a newer one."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_SPACE, MIGRATE_LOCK)
        await connection.execute("CREATE SCHEMA IF NOT EXISTS taskrpc")
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS taskrpc.meta (schema_version integer NOT NULL)"
        )
        version = await connection.fetchval("SELECT schema_version FROM taskrpc.meta")
        if version is None:
            await connection.execute("INSERT INTO taskrpc.meta VALUES (0)")
            version = 0
        if version > SCHEMA_VERSION:
            raise Refused(
                f"the database was written by a newer taskrpc (schema {version}; this one "
                f"knows up to {SCHEMA_VERSION}): upgrade taskrpc on this server"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                await connection.execute(statement)
        await connection.execute("UPDATE taskrpc.meta SET schema_version = $1", SCHEMA_VERSION)


async def try_lock(connection: Connection) -> bool:
    got: bool = await connection.fetchval(
        "SELECT pg_try_advisory_lock($1, $2)", LOCK_SPACE, RUNNER_LOCK, timeout=QUERY_TIMEOUT
    )
    return got


async def runner_name(connection: Connection) -> str | None:
    """The name the runner's session shows, or None when no server holds the lock."""
    name = await connection.fetchval(_HOLDER, LOCK_SPACE, RUNNER_LOCK, timeout=QUERY_TIMEOUT)
    if isinstance(name, str) and name.startswith(APPLICATION):
        return name.removeprefix(APPLICATION)
    return None


async def fence(connection: Connection) -> None:
    """Inside a transaction: raise `LostLock` unless this session holds the runner lock."""
    if not await connection.fetchval(_FENCE, LOCK_SPACE, RUNNER_LOCK):
        raise LostLock("this session does not hold the runner lock")


async def notify(
    connection: Connection, rows: Sequence[asyncpg.Record], deleted: Sequence[str] = ()
) -> None:
    """Tell every server (at commit) which jobs changed: `id:version` for each changed row,
    `id:0` for each deleted one, so a server that knows that version already reads nothing."""
    changes = [f"{row['id']}:{row['version']}" for row in rows]
    changes += [f"{job_id}:0" for job_id in deleted]
    for start in range(0, len(changes), NOTIFY_IDS):
        payload = ",".join(changes[start : start + NOTIFY_IDS])
        await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


async def insert(connection: Connection, batch: Sequence[Sequence[Any]]) -> list[asyncpg.Record]:
    """Queue (id, type code, text, delay) jobs, in order; returns their rows."""
    columns = list(zip(*batch, strict=True))
    return await connection.fetch(_INSERT, *map(list, columns))


async def cancel(connection: Connection, batch: Sequence[Sequence[Any]]) -> list[asyncpg.Record]:
    """Cancel the (id,) jobs that are queued or running; returns the rows it changed."""
    return await connection.fetch(_CANCEL, [job_id for (job_id,) in batch])


async def take(connection: Connection, runner: str, max_attempts: int) -> asyncpg.Record | None:
    """Mark the oldest waiting job running; fail one interrupted too often and look again."""
    async with connection.transaction():
        await fence(connection)
        while True:
            head = await connection.fetchrow(_HEAD)
            if head is None:
                return None
            if head["attempts"] >= max_attempts:  # each run was interrupted (crash, or stop)
                error = f"interrupted {head['attempts']} times"
                await notify(connection, await connection.fetch(_GIVE_UP, head["id"], error))
                continue
            row = await connection.fetchrow(_START, head["id"], runner)
            await notify(connection, [] if row is None else [row])
            return row


async def finish(
    connection: Connection,
    run: tuple[Job, str, int],
    outcome: tuple[JobStatus, str | None, str | None],
    forget: list[str],
) -> asyncpg.Record | None:
    """Record the outcome of this run (unless a cancel came first), and delete what retention
    drops. `run` is (job, runner, attempts): a row another runner took since is left alone."""
    job, runner, attempts = run
    status, result, error = outcome
    async with connection.transaction():
        await fence(connection)
        row = await connection.fetchrow(
            _FINISH, job.id, status.value, result, error, runner, attempts
        )
        if forget:
            await connection.execute(_DELETE, forget, _FINISHED)
        await notify(connection, [] if row is None else [row], forget)
    return row


async def put_back(connection: Connection, job_id: str) -> None:
    """Graceful stop: the running job goes back to the head of the queue (fenced)."""
    async with connection.transaction():
        await fence(connection)
        await notify(connection, await connection.fetch(_PUT_BACK, job_id))


Statement = Callable[[Connection, Sequence[Sequence[Any]]], Awaitable[list[asyncpg.Record]]]
Query = Callable[[Callable[[Connection], Awaitable[list[asyncpg.Record]]]], Awaitable[Any]]


class Group:
    """Calls that arrive together share one statement, so one commit (group commit).

    Each call adds an item whose first field is a job id, and gets that job's row back (None
    when the statement changed no row of it). Items go to the database in the order they came.
    """

    def __init__(self, query: Query, statement: Statement) -> None:
        self._query = query
        self._statement = statement
        self._waiting: list[tuple[Sequence[Any], asyncio.Future[asyncpg.Record | None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def add(self, item: Sequence[Any]) -> asyncpg.Record | None:
        """The row of `item`'s job once the statement that carried it committed."""
        future: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="taskrpc-pg-group")
        return await future

    def stop(self) -> None:
        """The store is shutting down."""
        if self._flusher is not None:
            self._flusher.cancel()

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:GROUP_MAX], self._waiting[GROUP_MAX:]
            await self._commit(batch)

    async def _commit(
        self, batch: list[tuple[Sequence[Any], asyncio.Future[asyncpg.Record | None]]]
    ) -> None:
        items = [item for item, _ in batch]
        try:
            rows = await self._query(lambda connection: self._statement(connection, items))
        except Exception as exc:  # -32009, or a bug: every caller hears of it, none hangs
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        by_id = {row["id"]: row for row in rows}
        for item, future in batch:
            if not future.done():
                future.set_result(by_id.get(item[0]))
