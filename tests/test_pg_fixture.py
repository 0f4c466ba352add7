"""The throw-away PostgreSQL cluster the cluster tests run on (tests/pg.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.pg import SHARED, Cluster

ROOT = Path(__file__).resolve().parent.parent


def test_missing_postgres_fails_with_how_to_install(tmp_path: Path) -> None:
    """Without initdb anywhere, a cluster test fails and says how to install PostgreSQL."""
    nowhere = {"path": str(tmp_path), "pattern": str(tmp_path / "*" / "bin" / "initdb")}
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y postgresql"):
        Cluster.create(**nowhere)


async def test_each_test_gets_an_empty_database(pg_url: str) -> None:
    """The database a test gets exists, is empty, and runs as a role that may end sessions."""
    connection = await asyncpg.connect(pg_url)
    try:
        tables = await connection.fetchval(
            "SELECT count(*) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        superuser = await connection.fetchval(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        )
    finally:
        await connection.close()
    assert tables == 0
    assert superuser


def test_attach_finds_a_running_cluster_by_its_folder(pg_cluster: Cluster) -> None:
    """A session sharing a cluster reaches it through the folder `start` wrote its port in."""
    shared = Cluster.attach(pg_cluster.folder)
    assert (shared.port, shared.dsn("x")) == (pg_cluster.port, pg_cluster.dsn("x"))


def test_a_shared_cluster_that_is_not_there_fails_saying_so(tmp_path: Path) -> None:
    """TASKRPC_TEST_PG_CLUSTER naming a folder without a cluster: the session's PostgreSQL
    tests fail with a line naming the variable, not with a traceback from deep inside."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "empty"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, SHARED: str(tmp_path)},
    )
    assert done.returncode == 1, done.stdout
    assert f"{SHARED}={tmp_path} names no running test cluster" in done.stdout


def test_shared_pg_runs_a_command_on_one_cluster_and_removes_it() -> None:
    """tools/shared_pg.py: the command sees the cluster's folder (with its port) and exits
    with its own status; the cluster is gone afterwards."""
    script = "import os, sys; print(os.environ['" + SHARED + "']); sys.exit(3)"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "shared_pg.py"), sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    folder = Path(done.stdout.strip())
    assert folder.name.startswith("taskrpc-pg-")
    assert "shared PostgreSQL cluster on 127.0.0.1:" in done.stderr
    assert not folder.exists()
