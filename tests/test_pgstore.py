"""The PostgreSQL store: its schema, start-up refusals, credentials and submit order."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from backend.pgsql import LOCK_SPACE, ORDER_LOCK, SCHEMA_VERSION
from backend.pgstore import PgStore, redact
from backend.protocol import JobStatus
from backend.store import Limits
from tests.conftest import BIN, ServerProcess, spawn_server
from tests.pg import PASSWORD
from tests.pg import free_port as unused_port


def start_refused(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `taskrpc-server ARGS`, which must stop by itself; returns what it said."""
    return subprocess.run(
        [str(BIN / "taskrpc-server"), "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **(env or {})},
    )


async def until_healthz_names(server: ServerProcess, runner: str) -> None:
    """Poll /healthz until it names `runner` as the runner (it looks once a second)."""
    deadline = time.monotonic() + 5
    while True:
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + "/healthz") as reply,
        ):
            said = await reply.json()
        if said.get("runner") == runner:
            return
        assert time.monotonic() < deadline, said
        await asyncio.sleep(0.05)


async def execute(url: str, statement: str) -> None:
    """Run one statement on the database."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def test_first_start_creates_the_schema_and_a_newer_one_is_refused(pg_url: str) -> None:
    """The first server creates the schema; a database of a newer taskrpc is refused with one
    line and exit 2, and left as it was."""
    server = spawn_server("--db", pg_url, "--log-level", "warning")
    try:
        assert "this server is the runner" in server.line
        await until_healthz_names(server, server.url)
        assert redact(pg_url) in server.line
        assert PASSWORD not in server.line
    finally:
        server.reap()
    await execute(pg_url, f"UPDATE taskrpc.meta SET schema_version = {SCHEMA_VERSION + 1}")
    refused = start_refused("--db", pg_url)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "Traceback" not in refused.stderr
    assert "written by a newer taskrpc" in refused.stderr
    connection = await asyncpg.connect(pg_url)
    try:
        assert await connection.fetchval("SELECT schema_version FROM taskrpc.meta") == 2
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"port": "PORT"}, "connection refused"),
        ({"password": "wrong"}, 'password authentication failed for user "taskrpc"'),
    ],
)
async def test_an_unusable_database_is_refused_with_one_line(
    pg_url: str, change: dict[str, str], says: str
) -> None:
    """A database that cannot be reached or logged into: exit 2 and one line saying why."""
    parts = urlsplit(pg_url)
    port = str(unused_port()) if "port" in change else str(parts.port)
    password = change.get("password", PASSWORD)
    url = f"postgresql://taskrpc:{password}@127.0.0.1:{port}{parts.path}"
    refused = start_refused("--db", url)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "Traceback" not in refused.stderr
    assert says in refused.stderr
    assert password not in refused.stderr


async def test_the_password_may_come_from_pgpassword(pg_url: str) -> None:
    """A URL without a password works when PGPASSWORD holds it, as with psql."""
    parts = urlsplit(pg_url)
    url = f"postgresql://taskrpc@127.0.0.1:{parts.port}{parts.path}"
    server = spawn_server("--db", url, "--log-level", "warning", env={"PGPASSWORD": PASSWORD})
    try:
        assert "this server is the runner" in server.line
    finally:
        server.reap()


async def test_a_submit_draws_its_number_only_when_no_other_submit_is_uncommitted(
    pg_url: str,
) -> None:
    """While another transaction holds the order lock, a submit waits: so sequence order is
    commit order, and the runner can never see job 7 before job 6."""
    store = PgStore(pg_url, Limits(time_scale=0))
    await store.open()
    holder = await asyncpg.connect(pg_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_SPACE, ORDER_LOCK)
            submit = asyncio.create_task(store.submit("reverse", "waits"))
            deadline = time.monotonic() + 10
            while not await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND objid = $1",
                ORDER_LOCK,
            ):
                assert time.monotonic() < deadline, "the submit never asked for the order lock"
                assert not submit.done(), "the submit committed without the order lock"
                await asyncio.sleep(0.01)
            assert not submit.done()
        job = await submit
        assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
    finally:
        await holder.close()
        store.close()
        await store.shutdown()
