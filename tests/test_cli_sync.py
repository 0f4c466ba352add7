"""The client library's details a script relies on: default page size, error attributes and
words, and HTTP framings (the transports `cli.sync` and `cli.http1`, and `cli.client`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from backend.protocol import JobStatus
from cli.client import Client
from cli.rpc import Calls
from cli.sync import NotTaskrpc, SyncClient, Unreachable
from tests.conftest import stand_in
from tests.test_cli_api import RawHttp, Recorder, ok, raw_types, recording, types_at
from tests.threaded import ThreadedServer, server_in_thread


@pytest.fixture
def slow() -> Iterator[ThreadedServer]:
    """A server where no job finishes during a test."""
    with server_in_thread(1000.0) as server:
        yield server


def test_a_page_is_100_jobs_by_default(slow: ThreadedServer) -> None:
    """jobs() without a limit: the 100 newest, and a cursor to the rest (both clients); the
    async client's status filter."""
    with SyncClient(slow.url) as client:
        for n in range(101):
            client.submit("reverse", f"t{n}")
        jobs, counts, cursor = client.jobs()
        built, _, _ = client.run(Calls.list())
    assert len(jobs) == len(built) == 100
    assert sum(counts.values()) == 101
    assert cursor is not None

    async def pages() -> tuple[int, list[str]]:
        async with Client(slow.url) as client:
            jobs, _, _ = await client.jobs()
            running, _, _ = await client.jobs(JobStatus.RUNNING)
            return len(jobs), [job["status"] for job in running]

    assert asyncio.run(pages()) == (100, ["running"])


def test_unreachable_says_why_in_lower_case() -> None:
    """Unreachable carries the URL and the system's reason, as a clause: '(connection refused)'."""
    with SyncClient("http://127.0.0.1:9") as client, pytest.raises(Unreachable) as caught:
        client.types()
    assert str(caught.value) == (
        "cannot reach http://127.0.0.1:9 — is taskrpc-server running? (connection refused)"
    )
    assert caught.value.url == "http://127.0.0.1:9"


async def test_not_taskrpc_names_the_url() -> None:
    """NotTaskrpc carries the URL that answered, for a script to report."""
    async with stand_in(recording(Recorder())) as url:
        with pytest.raises(NotTaskrpc) as caught:
            await asyncio.to_thread(types_at, f"{url}/other")
    assert caught.value.url == f"{url}/other"


async def test_chunks_ended_by_a_bare_newline_are_read() -> None:
    """A chunked answer whose lines end in LF alone (tolerated, as http.client does) is read."""
    body = ok("[3]", 1)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\n%s\n0\n\n" % (
        len(body),
        body,
    )
    assert await raw_types(RawHttp(chunked)) == [[3]]
