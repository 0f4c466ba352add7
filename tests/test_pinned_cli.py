"""CLI behaviours that planted faults once slipped past (issue 14).

The exit statuses are checked on the real `taskrpc` subprocess; the same paths are run
in-process too (`cli.main.main` in a thread), where mutation testing can see them.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from cli.main import ExitStatus, main
from tests.conftest import BIN, stand_in
from tests.threaded import ThreadedServer, server_in_thread

SLOW = 1000.0  # time scale at which no job finishes during a test


@asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A stand-in that takes each request and never answers: (its URL, set once asked)."""
    asked, done = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        asked.set()
        await done.wait()  # until the test ends: then the stand-in can stop at once
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/rpc", hang)
    async with stand_in(app) as url:
        try:
            yield url, asked
        finally:
            done.set()


@asynccontextmanager
async def dropping_server() -> AsyncIterator[str]:
    """A raw TCP listener that reads each request's head and closes the connection."""

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    listener = await asyncio.start_server(drop, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    finally:
        listener.close()
        await listener.wait_closed()


@pytest.fixture
def threaded_server() -> Iterator[ThreadedServer]:
    """A slow server (no job finishes) in a thread; `main` installs signal handlers."""
    with server_in_thread(SLOW) as server:
        yield server


async def _taskrpc(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(BIN / "taskrpc"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.parametrize("command", [["status", "abc"], ["list"], ["types"]])
async def test_ctrl_c_outside_wait_and_submit_exits_130(command: list[str]) -> None:
    """SIGINT while status, list or types waits for the server: exit 130, one line, no traceback."""
    async with silent_server() as (url, asked):
        cli = await _taskrpc("--url", url, *command)
        try:
            await asyncio.wait_for(asked.wait(), 20)
            cli.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(cli.communicate(), 10)
        finally:
            if cli.returncode is None:
                cli.kill()
                await cli.wait()
    assert cli.returncode == ExitStatus.INTERRUPTED
    assert (out, err) == (b"", b"taskrpc: interrupted\n")


@pytest.mark.parametrize("command", [["status", "abc"], ["list"], ["cancel", "abc"]])
async def test_a_dropped_connection_outside_wait_exits_3(command: list[str]) -> None:
    """The server closing the connection mid-request: exit 3 and one line, no traceback."""
    async with dropping_server() as url:
        cli = await _taskrpc("--url", url, *command)
        out, err = await asyncio.wait_for(cli.communicate(), 20)
    assert cli.returncode == ExitStatus.UNREACHABLE, err
    assert out == b""
    assert err.count(b"\n") >= 1
    assert b"Traceback" not in err


async def test_a_dropped_connection_is_exit_3_in_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`main` itself maps a dropped connection to exit 3."""
    async with dropping_server() as url:
        status = await asyncio.to_thread(main, ["--url", url, "status", "abc"])
    assert status == ExitStatus.UNREACHABLE
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (b"ab", "ab"),
        (b"ab\n", "ab"),
        (b"ab\r\n", "ab"),
        (b"ab\n\n", "ab\n"),
        (b"a\nb\n", "a\nb"),
    ],
)
def test_stdin_drops_exactly_one_trailing_newline(
    threaded_server: ThreadedServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    given: bytes,
    sent: str,
) -> None:
    """`submit TYPE -` sends standard input minus one final newline (or CRLF), no more."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(given), encoding="utf-8"))
    status = main(["--url", threaded_server.url, "submit", "reverse", "-"])
    out, err = capsys.readouterr()
    assert status == ExitStatus.OK, err
    assert threaded_server.store.get(out.strip()).data == sent


def _list_json(
    server: ThreadedServer, capsys: pytest.CaptureFixture[str], *args: str
) -> dict[str, object]:
    """`taskrpc list --json ARGS`, in-process: the printed object."""
    status = main(["--url", server.url, "list", "--json", *args])
    assert status == ExitStatus.OK
    return dict(json.loads(capsys.readouterr().out))


def test_list_json_keeps_next_cursor(
    threaded_server: ThreadedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`list --json` prints the page's next_cursor, and it leads to the next page."""
    for n in range(3):
        main(["--url", threaded_server.url, "submit", "reverse", f"t{n}"])
    capsys.readouterr()
    first = _list_json(threaded_server, capsys, "--limit", "2")
    assert first["next_cursor"] == "1"  # the seq of the last job on the page
    second = _list_json(threaded_server, capsys, "--limit", "2", "--cursor", "1")
    assert second["next_cursor"] is None
    assert isinstance(second["jobs"], list)
    assert len(second["jobs"]) == 1
