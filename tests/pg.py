"""A throw-away PostgreSQL cluster for the tests: `initdb` in a temporary folder, `pg_ctl` on a
free loopback port, removed at the end.

`make mutate` runs every mutant as a pytest session of its own: there a cluster started once
outside the sessions (tools/shared_pg.py) is named by `TASKRPC_TEST_PG_CLUSTER` (its folder),
and each session uses it instead of starting one. Each test still gets a new empty database.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster belongs to a system
user made for it (`taskrpc-pg`). When PostgreSQL is not installed, the tests that need it fail
with a line that says how to install it; they are never skipped.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

PG_USER = "taskrpc-pg"  # the system user that owns test clusters when the tests run as root
SUPERUSER = "taskrpc"  # the database role the tests connect as
PASSWORD = "test-secret"
INSTALL_HINT = (
    "PostgreSQL is needed for the cluster tests and was not found (no initdb on PATH nor in "
    "/usr/lib/postgresql/*/bin): install it, e.g. `apt-get install -y postgresql` on Debian or "
    "Ubuntu, `brew install postgresql` on macOS (.ci/run does this by itself)"
)
DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin/initdb"
SHARED = "TASKRPC_TEST_PG_CLUSTER"  # the folder of a running cluster the sessions share
_names = itertools.count()


def find_bin(path: str | None = None, pattern: str = DEBIAN_BINARIES) -> Path | None:
    """The folder holding initdb and pg_ctl: on `path` (default PATH), else the newest
    install that matches `pattern` (Debian and Ubuntu keep them off PATH)."""
    found = shutil.which("initdb", path=path)
    if found is not None:
        folder = Path(found).resolve().parent
        if (folder / "pg_ctl").exists():
            return folder
    versions = sorted(glob.glob(pattern), key=_major_version)
    return Path(versions[-1]).parent if versions else None


def _major_version(initdb: str) -> int:
    """15 for /usr/lib/postgresql/15/bin/initdb."""
    folder = Path(initdb).parts[-3]
    return int(folder) if folder.isdigit() else 0


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _owner() -> pwd.struct_passwd | None:
    """The user the cluster runs as: None for ourselves, a system user when we are root."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(PG_USER)
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell=/bin/false", PG_USER],
        capture_output=True,
        check=False,  # another test run may have made it at the same moment: look again
    )
    return pwd.getpwnam(PG_USER)


@dataclass
class Cluster:
    """One PostgreSQL server on 127.0.0.1:`port`, its data in `folder`."""

    bin: Path
    folder: Path
    port: int
    owner: pwd.struct_passwd | None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def dsn(self, database: str = "postgres") -> str:
        """The URL the servers under test get with `--db`."""
        return f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def attach(cls, folder: Path) -> Cluster:
        """The running cluster `create` made in `folder` and `start` started (its port is in
        `folder`/port): for sessions that share one (`TASKRPC_TEST_PG_CLUSTER`)."""
        folder_bin = find_bin()
        if folder_bin is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        try:
            port = int((folder / "port").read_text())
        except (OSError, ValueError) as exc:
            pytest.fail(f"{SHARED}={folder} names no running test cluster: {exc}", pytrace=False)
        return cls(folder_bin, folder, port, _owner())

    @classmethod
    def create(cls, *, path: str | None = None, pattern: str = DEBIAN_BINARIES) -> Cluster:
        """initdb a new cluster in a temporary folder (not started), with the initdb found on
        `path` or by `pattern` (see `find_bin`)."""
        folder_bin = find_bin(path, pattern)
        if folder_bin is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        owner = _owner()
        folder = Path(tempfile.mkdtemp(prefix="taskrpc-pg-"))
        if owner is not None:
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        password_file = folder / "password"
        password_file.write_text(PASSWORD)
        if owner is not None:
            os.chown(password_file, owner.pw_uid, owner.pw_gid)
        cluster = cls(folder_bin, folder, free_port(), owner)
        cluster._run(
            "initdb",
            "--pgdata",
            str(cluster.data),
            "--username",
            SUPERUSER,
            "--pwfile",
            str(password_file),
            "--auth",
            "scram-sha-256",
            "--no-sync",  # a throw-away cluster: no fsync, here or in the settings below
            "--encoding",
            "UTF8",
            "--locale",
            "C",
        )
        return cluster

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = " ".join(
            (
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories='{self.folder}'",
                "-c fsync=off",  # commits still reach the OS: a stopped server keeps them
                "-c max_connections=200",
            )
        )
        (self.folder / "port").write_text(str(self.port))  # for `attach`
        self._run(
            "pg_ctl",
            "start",
            "--pgdata",
            str(self.data),
            "--wait",
            "--log",
            str(self.folder / "server.log"),
            "-o",
            options,
        )

    def stop(self) -> None:
        """Stop the server at once (clients see their connections end)."""
        self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "immediate", "--wait")

    def destroy(self) -> None:
        """Stop the server if it runs and delete its folder."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        """The server's log, for a failing test's message."""
        try:
            return (self.folder / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def _run(self, program: str, *args: str) -> None:
        owner = self.owner
        done = subprocess.run(
            [str(self.bin / program), *args],
            capture_output=True,
            text=True,
            check=False,
            user=None if owner is None else owner.pw_uid,
            group=None if owner is None else owner.pw_gid,
            extra_groups=None if owner is None else [],
            cwd=self.folder,  # the owner must be able to enter it
            timeout=60,
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, done.args, done.stdout, done.stderr + self.log()
            )


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    """A started cluster, destroyed at the end."""
    cluster = Cluster.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One PostgreSQL server shared by the whole test session: its own, or the one
    `TASKRPC_TEST_PG_CLUSTER` names (left running: its starter stops it)."""
    shared = os.environ.get(SHARED)
    if shared:
        yield Cluster.attach(Path(shared))
        return
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
async def pg_url(pg_cluster: Cluster) -> AsyncIterator[str]:
    """The URL of a new, empty database on the shared cluster, dropped after the test."""
    url = await new_database(pg_cluster)
    yield url
    await drop_database(pg_cluster, url)


async def new_database(cluster: Cluster) -> str:
    """Create an empty database on `cluster`; returns its URL."""
    name = f"test_{os.getpid()}_{next(_names)}"
    await _admin(cluster, f'CREATE DATABASE "{name}"')
    return cluster.dsn(name)


async def drop_database(cluster: Cluster, url: str) -> None:
    """Drop the database `new_database` made, ending its sessions."""
    name = url.rsplit("/", 1)[1]
    await _admin(cluster, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(cluster: Cluster, statement: str) -> None:
    """Run one statement on the cluster's default database."""
    connection = await asyncpg.connect(cluster.dsn())
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
