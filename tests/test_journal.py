"""The SQLite journal: restart resumes, retention leaves the file, one server per file, bad files
are refused untouched, old files are migrated, a full disk is -32009 and recovers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.journal import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    SWITCH_INTERVAL,
    Refused,
    default_path,
    resolve,
)
from backend.journaled import JournaledStore
from backend.protocol import ErrorCode, JobStatus, StorageUnavailable
from backend.settings import Settings
from backend.store import Job, Limits
from backend.worker import Worker
from cli.client import Client
from tests.conftest import BIN, FAST, StartServer, spawn_server, until
from tui.main import local_server

FIXTURES = Path(__file__).parent / "fixtures"


def rows(
    path: Path, sql: str = "SELECT id, status, attempts FROM jobs ORDER BY seq"
) -> list[tuple]:  # type: ignore[type-arg]
    """Read the file as a person would, with sqlite3."""
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[list[JournaledStore]]:
    """Journaled stores the test opens; each is closed and shut down at the end."""
    stores: list[JournaledStore] = []
    yield stores
    for store in stores:
        store.close()
        await store.shutdown()


async def open_store(stores: list[JournaledStore], path: Path, **limits: float) -> JournaledStore:
    store = JournaledStore(str(path), Limits(**{"time_scale": FAST, **limits}))  # type: ignore[arg-type]
    await store.open()
    stores.append(store)
    return store


# -- restart ----------------------------------------------------------------------------------


async def test_restart_resumes_order_ids_times_and_results(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """After a stop, queued jobs come back in order with their ids and times; results stay."""
    path = tmp_path / "jobs.db"
    first = await open_store(opened, path)
    worker = asyncio.create_task(Worker(first).run())
    done = await first.submit("reverse", "finished before the stop")
    await first.wait(done, 10)
    assert done.status is JobStatus.DONE
    first.limits = Limits(time_scale=100.0)  # the rest wait behind a long job
    long = await first.submit("repeat", "long")
    queued = [await first.submit("swap", f"queued {n}") for n in range(5)]
    await until(lambda: long.status is JobStatus.RUNNING)
    worker.cancel()
    first.close()
    await first.shutdown()
    opened.remove(first)

    second = await open_store(opened, path)
    again = [second.get(job.id) for job in (done, long, *queued)]
    assert [job.seq for job in again] == sorted(job.seq for job in again)
    assert second.result(done.id) == "finished before the stop"[::-1]
    assert [job.submitted_at for job in again] == [
        job.submitted_at for job in (done, long, *queued)
    ]
    assert [job.data for job in again[2:]] == [f"queued {n}" for n in range(5)]
    assert again[1].status is JobStatus.QUEUED  # the interrupted job: back at the head
    assert [second.position(job) for job in again[1:]] == list(range(6))
    new = await second.submit("reverse", "after the restart")
    assert new.seq > max(job.seq for job in again)  # seq (and ids) never reused


async def test_a_job_interrupted_max_attempts_times_fails(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """A running job is rerun after each restart; after max_attempts interruptions it fails."""
    path = tmp_path / "jobs.db"
    job_id = ""
    for attempt in (1, 2):
        store = await open_store(opened, path, time_scale=100.0, max_attempts=2)
        if not job_id:
            job_id = (await store.submit("reverse", "kills the server")).id
            await store.submit("swap", "behind it")
        assert await store.take() is store.get(job_id)
        assert store.get(job_id).attempts == attempt
        store.close()
        await store.shutdown()  # as SIGTERM: the job goes back to the queue
        opened.remove(store)
    store = await open_store(opened, path, time_scale=100.0, max_attempts=2)
    job = store.get(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error == "interrupted 2 times"
    assert (await store.take()).data == "behind it"


async def test_retention_deletes_from_the_file_and_it_does_not_grow(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """Forgotten jobs leave the file, and its pages are given back (incremental vacuum)."""
    path = tmp_path / "jobs.db"
    store = await open_store(opened, path, time_scale=0.0, max_finished=10)
    worker = asyncio.create_task(Worker(store).run())
    try:
        for _ in range(6):  # 6 x 50 jobs of 10 000 characters: about 6 MB without deletes
            jobs = await asyncio.gather(*(store.submit("reverse", "x" * 10_000) for _ in range(50)))
            await store.wait(jobs[-1], 30)
    finally:
        worker.cancel()
    await until(lambda: len(rows(path)) == 10, what="deletes to reach the file")
    kept = {job_id for job_id, _, _ in rows(path)}
    assert kept == {job.id for job in store.newest()}
    page_size, pages = rows(path, "SELECT * FROM pragma_page_size, pragma_page_count")[0]
    assert page_size * pages < 1_500_000, f"the file holds {pages} pages of {page_size} bytes"


# -- one server per file ----------------------------------------------------------------------


def test_a_second_server_on_the_file_is_refused(tmp_path: Path) -> None:
    """A second server on the same file exits 2 with one line naming the first (pid, URL)."""
    path = tmp_path / "jobs.db"
    first = spawn_server("--db", str(path))
    try:
        done = subprocess.run(
            [str(BIN / "taskrpc-server"), "--port", "0", "--db", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        first.reap()
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"pid {first.process.pid}" in done.stderr
    assert f"--url {first.url}" in done.stderr
    assert "--db :memory:" in done.stderr


def lock_line(path: Path) -> str:
    """What the lock file beside the database says."""
    return Path(f"{path}.lock").read_text(encoding="utf-8")


async def test_the_refusal_names_the_holder_while_it_starts_and_once_it_listens(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """The lock file says the holder's pid, and its URL once it listens: a second opening
    of the file in this process is refused with both, exactly."""
    path = tmp_path / "jobs.db"
    first = await open_store(opened, path)
    with pytest.raises(Refused) as starting:
        await open_store(opened, path)
    assert f"(pid {os.getpid()}, still starting); connect to it with --url," in str(starting.value)
    first.journal.announce("http://127.0.0.1:8123")
    with pytest.raises(Refused) as listening:
        await open_store(opened, path)
    assert f"(pid {os.getpid()}, at http://127.0.0.1:8123); " in str(listening.value)
    assert "connect to it with --url http://127.0.0.1:8123, or" in str(listening.value)
    assert lock_line(path) == f"{os.getpid()} http://127.0.0.1:8123\n"
    first.journal.announce("http://[::1]:1")  # shorter: nothing of the longer line is left
    assert lock_line(path) == f"{os.getpid()} http://[::1]:1\n"


# -- bad files --------------------------------------------------------------------------------


def _not_sqlite(path: Path) -> None:
    path.write_text("my shopping list\n" * 100)


def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE photos (name TEXT)")


def _newer(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA application_id = 1952543595")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        connection.execute("CREATE TABLE jobs (seq INTEGER PRIMARY KEY, future TEXT)")


async def _corrupt(path: Path) -> None:
    store = JournaledStore(str(path), Limits(time_scale=100.0))
    await store.open()
    await asyncio.gather(*(store.submit("reverse", "y" * 5000) for _ in range(40)))
    store.close()
    await store.shutdown()
    _scramble(path)


def _scramble(path: Path) -> None:
    """Keep the header page, scramble every other."""
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.seek(4096)
        file.write(bytes(range(256)) * ((size - 4096) // 256))


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_not_sqlite, "not a taskrpc database (not even SQLite)"),
        (_foreign, "an SQLite database of another program"),
        (_newer, "written by a newer taskrpc"),
        (_corrupt, "corrupt or not a taskrpc database"),
    ],
    ids=["not-sqlite", "foreign", "newer", "corrupt"],
)
async def test_a_bad_file_is_refused_with_one_line_and_left_untouched(
    tmp_path: Path, make: object, says: str
) -> None:
    """A file that is not ours, corrupt, or newer: exit 2, one clear line, the file unchanged."""
    path = tmp_path / "jobs.db"
    made = make(path)  # type: ignore[operator]
    if asyncio.iscoroutine(made):
        await made
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(Refused, match="start with --db another path"):
        await JournaledStore(str(path)).open()
    done = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "taskrpc-server"), "--port", "0", "--db", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("taskrpc-server: ")
    assert says in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


async def test_the_previous_schema_is_migrated_in_place(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """A file of schema 1 gains `attempts`; its jobs come back, the running one at the head."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.executescript((FIXTURES / "journal_v1.sql").read_text())
    store = await open_store(opened, path)
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert store.result("aaaaaaaaaaaaaaaa") == "tsrif"
    assert store.get("bbbbbbbbbbbbbbbb").status is JobStatus.CANCELLED
    queued = [store.get(job_id) for job_id in ("cccccccccccccccc", "dddddddddddddddd")]
    assert [store.position(job) for job in queued] == [0, 1]
    assert queued[0].attempts == 0
    assert (await store.take()).id == "cccccccccccccccc"
    assert store.get("cccccccccccccccc").attempts == 1
    assert (await store.submit("swap", "new")).seq == 5


async def test_a_new_file_is_ours_in_wal_mode_and_commits_are_synchronous(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """A new file is marked as taskrpc's, vacuums incrementally and keeps a write-ahead log;
    the journal's own connection syncs every commit to disk (FULL)."""
    path = tmp_path / "new.db"
    store = await open_store(opened, path)
    assert rows(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert rows(path, "PRAGMA auto_vacuum") == [(2,)]  # 2: incremental
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    connection = store.journal.connection
    assert connection is not None
    assert connection.execute("PRAGMA synchronous").fetchone() == (2,)  # 2: FULL
    assert connection.isolation_level is None  # no implicit BEGIN: the journal opens its own


# -- a full disk ------------------------------------------------------------------------------


async def test_a_full_disk_is_32009_reads_go_on_and_writes_resume(
    start_server: StartServer, tmp_path: Path
) -> None:
    """With no room left, submit answers -32009; reads still work; with room again, it goes on."""
    path = tmp_path / "full.db"
    server = await start_server(db=str(path), time_scale=100.0)
    store = server.store
    assert isinstance(store, JournaledStore)
    first = (await server.call("submit", ["reverse", "before"]))["result"]["id"]
    await store.journal.limit_pages(2)
    accepted = [first]
    for _ in range(50):
        response = await server.call("submit", ["reverse", "z" * 10_000])
        if "error" in response:
            break
        accepted.append(response["result"]["id"])
    else:
        pytest.fail("the store never filled up")
    assert response["error"]["code"] == ErrorCode.STORAGE_UNAVAILABLE
    assert response["error"]["message"].startswith("storage unavailable")
    assert (await server.call("status", [first]))["result"]["id"] == first
    await store.journal.limit_pages(None)
    later = await server.call("submit", ["swap", "after"])
    accepted.append(later["result"]["id"])
    assert [job_id for job_id, _, _ in rows(path)] == accepted  # on disk, nothing else


# -- the default path -------------------------------------------------------------------------


def test_default_path_follows_xdg() -> None:
    """$XDG_STATE_HOME/taskrpc/taskrpc.db, else ~/.local/state/…; a relative XDG is ignored."""
    assert default_path({"XDG_STATE_HOME": "/s", "HOME": "/h"}) == Path("/s/taskrpc/taskrpc.db")
    assert default_path({"HOME": "/h"}) == Path("/h/.local/state/taskrpc/taskrpc.db")
    assert default_path({"XDG_STATE_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.local/state/taskrpc/taskrpc.db"
    )
    assert Settings.from_args([], environ={}).db is None
    assert Settings.from_args([], environ={"TASKRPC_DB": ":memory:"}).db == ":memory:"


def test_resolve_gives_the_default_path_only_when_no_db_is_named() -> None:
    """The server's database: the one named, else the default path (the in-process half of
    the subprocess test below, which the mutation run leaves out)."""
    environ = {"XDG_STATE_HOME": "/s", "HOME": "/h"}
    assert resolve(None, environ) == "/s/taskrpc/taskrpc.db"
    assert resolve("/x/jobs.db", environ) == "/x/jobs.db"
    assert resolve(":memory:", environ) == ":memory:"


async def test_missing_folders_are_made_and_the_file_is_the_owners_alone(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """A database two folders down is opened: its folder made, 0700; the file new, 0600 (the
    in-process half of the subprocess test below, which the mutation run leaves out)."""
    path = tmp_path / "made" / "here" / "jobs.db"
    await open_store(opened, path)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_default_path_is_used_when_neither_is_set(tmp_path: Path) -> None:
    """With neither --db nor TASKRPC_DB, the server keeps jobs in a new 0600 file of the state
    directory, creating its folder, and names it in its start-up line."""
    assert "TASKRPC_DB" not in os.environ  # the suite's own setting: no test uses the real one
    expected = tmp_path / "taskrpc" / "taskrpc.db"
    server = spawn_server(env={"XDG_STATE_HOME": str(tmp_path)}, own_db=False)
    try:
        assert expected.exists()
        assert stat.S_IMODE(expected.stat().st_mode) == 0o600
        assert stat.S_IMODE(expected.parent.stat().st_mode) == 0o700
        assert server.line.endswith(f"jobs kept in {expected}; Ctrl+C to stop)\n")
    finally:
        server.reap()


def test_the_local_dashboard_takes_db(tmp_path: Path) -> None:
    """`taskrpc-tui --local --db FILE` uses FILE: on a file in use it exits 2 with one line."""
    path = tmp_path / "jobs.db"
    server = spawn_server("--db", str(path))
    try:
        done = subprocess.run(
            [str(BIN / "taskrpc-tui"), "--local", "--db", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        server.reap()
    assert done.returncode == 2
    assert done.stderr.startswith(f"taskrpc-tui: {path} is in use by another taskrpc-server")
    assert done.stderr.count("\n") == 1, done.stderr


async def test_a_batch_of_submits_keeps_its_order_and_shares_commits(
    start_server: StartServer,
) -> None:
    """A batch's submits are queued in the batch's order, each answered, in a few commits."""
    server = await start_server(time_scale=1000.0)
    store = server.store
    assert isinstance(store, JournaledStore)
    commits = store.journal.commits
    batch = [
        {"jsonrpc": "2.0", "method": "submit", "params": ["swap", f"n{n}"], "id": n}
        for n in range(200)
    ]
    status, answers = await server.post(batch)
    assert status == 200
    jobs = [answer["result"] for answer in sorted(answers, key=lambda a: a["id"])]
    seqs = [server.store.get(job["id"]).seq for job in jobs]
    assert seqs == sorted(seqs)
    assert [job["data"] for job in jobs] == [f"n{n}" for n in range(200)]
    assert store.journal.commits - commits <= 20


async def test_make_run_twice_shows_every_job(tmp_path: Path) -> None:
    """The dashboard's local server, quit mid-job and started again: the finished job with its
    result, the interrupted one running again, the queued one after it."""
    path = str(tmp_path / "run.db")
    async with local_server(0.5, path) as url, Client(url) as client:
        done = await client.submit("reverse", "finished")
        await client.wait(done["id"], timeout=10)
        interrupted = await client.submit("reverse", "interrupted")
        queued = await client.submit("swap", "queued")
        await client.wait(interrupted["id"], timeout=10, seen=interrupted)
    async with local_server(0.5, path) as url, Client(url) as client:
        assert await client.result(done["id"]) == "dehsinif"
        again = await client.status(interrupted["id"])
        if again["status"] == "queued":  # its start may still be on its way to the disk
            again = await client.wait(interrupted["id"], timeout=10, seen=again)
        assert (again["status"], again["attempts"]) == ("running", 2)
        assert (await client.status(queued["id"]))["position"] == 1


async def test_a_failing_write_fails_alone_and_the_writer_goes_on(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """A write that raises is -32009 for its own caller; the writer thread keeps committing."""
    store = await open_store(opened, tmp_path / "jobs.db")

    def broken(journal: object) -> None:
        raise RuntimeError("a bug in a write")

    with pytest.raises(StorageUnavailable, match="a bug in a write"):
        await store.journal.write(broken)
    job = await store.submit("reverse", "still written")
    assert [job_id for job_id, _, _ in rows(tmp_path / "jobs.db")] == [job.id]


async def test_a_folder_is_refused(tmp_path: Path) -> None:
    """--db naming a folder is one clear line, and nothing is created beside it."""
    with pytest.raises(Refused, match="is a folder; give --db a file name in it"):
        await JournaledStore(str(tmp_path)).open()
    assert not await asyncio.to_thread(os.path.exists, f"{tmp_path}.lock")


async def test_submits_of_one_turn_are_one_write_in_order_past_a_statement(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """Submits made together are one commit, queued and on disk in their order, even when
    they are more than one INSERT statement carries."""
    path = tmp_path / "jobs.db"
    store = await open_store(opened, path, time_scale=100.0)
    count = store.journal.most_rows(6) + 3  # a full statement and a padded one
    commits = store.journal.commits
    jobs = await asyncio.gather(*(store.submit("swap", f"n{n}") for n in range(count)))
    assert store.journal.commits - commits == 1
    assert [job.seq for job in jobs] == list(range(count))
    assert [job.data for job in store.newest()][::-1] == [f"n{n}" for n in range(count)]
    on_disk = rows(path, "SELECT seq, id, data, status, attempts FROM jobs ORDER BY seq")
    assert on_disk == [(job.seq, job.id, job.data, "queued", 0) for job in jobs]


async def test_a_submit_whose_caller_left_is_still_kept_and_the_others_answered(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """A submit cancelled while its commit is on its way does not fail the submits it shares
    the commit with; its job, on disk, is queued too."""
    path = tmp_path / "jobs.db"
    store = await open_store(opened, path, time_scale=100.0)
    tasks = [asyncio.create_task(store.submit("swap", f"n{n}")) for n in range(3)]
    await asyncio.sleep(0)  # each has joined this turn's write
    tasks[1].cancel()
    async with asyncio.timeout(10):
        first, _, last = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(first, Job)
    assert isinstance(last, Job)
    await until(lambda: store.queued == 3)
    assert [data for (data,) in rows(path, "SELECT data FROM jobs ORDER BY seq")] == [
        "n0",
        "n1",
        "n2",
    ]


async def test_a_failed_insert_frees_its_room_in_the_queue(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """Submits that never reached the disk are -32009 and no longer count against max_queued."""
    store = await open_store(opened, tmp_path / "jobs.db", time_scale=100.0, max_queued=4)
    await store.journal.limit_pages(0)
    results = await asyncio.gather(
        *(store.submit("swap", "z" * 5_000) for _ in range(4)), return_exceptions=True
    )
    assert all(isinstance(result, StorageUnavailable) for result in results)
    await store.journal.limit_pages(None)
    jobs = await asyncio.gather(*(store.submit("swap", "fits") for _ in range(4)))
    assert store.queued == len(jobs) == 4


async def test_the_switch_interval_is_short_while_a_writer_runs(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """A running journal shortens Python's switch interval; the last one stopped puts it back."""
    before = sys.getswitchinterval()
    first = await open_store(opened, tmp_path / "a.db")
    second = await open_store(opened, tmp_path / "b.db")
    assert sys.getswitchinterval() == min(before, SWITCH_INTERVAL)
    for store in (first, second):
        store.close()
        await store.shutdown()
        opened.remove(store)
    assert sys.getswitchinterval() == before


async def test_schema_2_loses_the_id_index_and_keeps_its_jobs_and_seqs(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """A file of schema 2 is rebuilt without the index on `id`: its jobs come back as they
    were, changes find their rows by seq, and seqs given before (even forgotten) stay used."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.executescript((FIXTURES / "journal_v2.sql").read_text())
    store = await open_store(opened, path)
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(path, "SELECT name FROM sqlite_master WHERE type = 'index'") == []
    assert store.result("aaaaaaaaaaaaaaaa") == "tsrif"
    interrupted = await store.take()
    assert (interrupted.id, interrupted.attempts) == ("bbbbbbbbbbbbbbbb", 2)
    await store.finish(interrupted, JobStatus.DONE, result="dnoces")
    await store.cancel("cccccccccccccccc")
    new = await store.submit("swap", "new")
    assert new.seq == 10
    assert rows(path, "SELECT seq, status, attempts FROM jobs ORDER BY seq") == [
        (0, "done", 1),
        (1, "done", 2),
        (2, "cancelled", 1),  # started by the finish before it, then cancelled
        (10, "queued", 0),
    ]


async def test_submits_that_arrive_during_a_commit_share_the_next_one(
    tmp_path: Path, opened: list[JournaledStore]
) -> None:
    """Submits of several turns of the loop made while a commit is on its way are the next
    commit, all of them: each answered, in their order."""
    path = tmp_path / "jobs.db"
    store = await open_store(opened, path, time_scale=100.0)
    started, release = threading.Event(), threading.Event()

    def slow(journal: object) -> None:
        started.set()
        release.wait(10)

    commits = store.journal.commits
    blocker = store.journal.write(slow)
    await asyncio.to_thread(started.wait, 10)
    tasks = []
    for turn in range(3):  # each turn's submits are handed to the thread on their own
        tasks += [asyncio.create_task(store.submit("swap", f"{turn}.{n}")) for n in range(2)]
        for _ in range(3):
            await asyncio.sleep(0)
    release.set()
    async with asyncio.timeout(10):
        await blocker
        jobs = await asyncio.gather(*tasks)
    assert store.journal.commits - commits == 2
    assert [job.data for job in jobs] == [f"{turn}.{n}" for turn in range(3) for n in range(2)]
    assert [job.seq for job in jobs] == sorted(job.seq for job in jobs)
