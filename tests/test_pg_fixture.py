"""The throw-away PostgreSQL cluster the cluster tests run on (tests/pg.py)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.pg import Cluster


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
