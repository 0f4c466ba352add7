"""`taskrpc` run in-process (`cli.main.main`) against a real server in a thread.

test_cli.py and test_cli_errors.py run the real `taskrpc` executable; mutation testing cannot
see into a subprocess (TESTING.md), so the commands, their output and their errors are
checked here through `main` itself, the same entry point the executable calls.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from aiohttp import web

from backend.jobs import JobType
from backend.protocol import DEFAULT_URL
from cli.main import ExitStatus, main
from tests.conftest import FAST, stand_in
from tests.threaded import ThreadedServer, hold_a_wait, server_in_thread

SLOW = 1000.0  # time scale at which no job finishes during a test
TOKEN = "s3cret-token"
ID = re.compile(r"[a-z2-7]{16}")


@pytest.fixture
def fast() -> Iterator[ThreadedServer]:
    """A server where jobs finish in tens of milliseconds."""
    with server_in_thread(FAST) as server:
        yield server


@pytest.fixture
def slow() -> Iterator[ThreadedServer]:
    """A server where no job finishes during a test: the first runs, the others queue."""
    with server_in_thread(SLOW) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TASKRPC_* variable of the developer's shell reaches the parser."""
    for name in ("TASKRPC_URL", "TASKRPC_TOKEN", "TASKRPC_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def taskrpc(capsys: pytest.CaptureFixture[str]) -> Run:
    """`taskrpc ARGS` in-process: (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def submitted(taskrpc: Run, url: str, *args: str) -> str:
    """Submit a job with `taskrpc submit ARGS`; its id."""
    status, out, err = taskrpc("--url", url, "submit", *args)
    assert status == ExitStatus.OK, err
    return out.strip()


def finished(taskrpc: Run, url: str, job_id: str) -> dict[str, Any]:
    """`taskrpc --json wait --id ID`: the finished job, with its result."""
    status, out, err = taskrpc("--url", url, "--json", "wait", "--id", job_id)
    assert status == ExitStatus.OK, err
    job: dict[str, Any] = json.loads(out)
    return job


# -- submit ------------------------------------------------------------------------------


def test_submit_prints_only_the_id(slow: ThreadedServer, taskrpc: Run) -> None:
    """submit (and its alias task) prints the job's id alone; the server holds the text."""
    for command in ("submit", "task"):
        status, out, err = taskrpc("--url", slow.url, command, "reverse", "пример")
        assert (status, err) == (ExitStatus.OK, "")
        assert ID.fullmatch(out.removesuffix("\n")), out
        assert slow.store.get(out.strip()).data == "пример"


def test_submit_json_prints_the_job(slow: ThreadedServer, taskrpc: Run) -> None:
    """submit --json prints the whole job object; a type by code is that type."""
    status, out, _ = taskrpc("--url", slow.url, "--json", "submit", "2", "кот")
    assert status == ExitStatus.OK
    job = json.loads(out)
    assert (job["type"], job["data"], job["status"]) == ("swap", "кот", "queued")
    assert out.isascii() is False  # not a terminal: the text as is, no \u escapes


@pytest.mark.parametrize("word", ["\u0661", "\u0661\u0662", "1.0", "-1"])
def test_a_type_that_is_not_ascii_digits_is_a_name(
    slow: ThreadedServer, taskrpc: Run, word: str
) -> None:
    """Only ASCII digits make a type code; anything else is a name the server refuses."""
    status, out, err = taskrpc("--url", slow.url, "submit", word, "x")
    assert (status, out) == (ExitStatus.USAGE, "")
    assert err.startswith("taskrpc: type must be one of 1, 2, 3")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["reverse", "x", "--data", "y"], "taskrpc: give DATA or --data TEXT, not both\n"),
        (["reverse"], "taskrpc: give DATA (the text; - reads standard input)\n"),
        (["reverse", os.fsdecode(b"\xff")], "taskrpc: DATA is not valid UTF-8 text\n"),
        (["reverse", "--data", os.fsdecode(b"\xff")], "taskrpc: --data is not valid UTF-8 text\n"),
    ],
)
def test_bad_data_is_a_usage_error(
    slow: ThreadedServer, taskrpc: Run, args: list[str], says: str
) -> None:
    """DATA given twice, missing, or not UTF-8: one line, exit 2, nothing submitted."""
    assert taskrpc("--url", slow.url, "submit", *args) == (ExitStatus.USAGE, "", says)
    assert sum(slow.store.counts().values()) == 0


@pytest.mark.parametrize("args", [["--data", "-"], ["--", "-"], ["--data", "пример"]])
def test_data_taken_as_is(slow: ThreadedServer, taskrpc: Run, args: list[str]) -> None:
    """`--data TEXT` and a DATA after `--` are sent as given, a lone `-` included."""
    job_id = submitted(taskrpc, slow.url, "reverse", *args)
    assert slow.store.get(job_id).data == args[-1]


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes, *, tty: bool = False) -> None:
    class Input(io.TextIOWrapper):
        def isatty(self) -> bool:
            return tty

    monkeypatch.setattr(sys, "stdin", Input(io.BytesIO(data), encoding="utf-8"))


def test_stdin_that_is_not_utf8_is_a_usage_error(
    slow: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-` reads standard input as UTF-8 whatever the locale; other bytes are refused."""
    _stdin(monkeypatch, b"\xff\xfe")
    status, _, err = taskrpc("--url", slow.url, "submit", "reverse", "-")
    assert (status, err) == (ExitStatus.USAGE, "taskrpc: standard input is not valid UTF-8 text\n")


def test_stdin_on_a_terminal_says_how_to_end(
    slow: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a terminal on standard input, `-` says how to end the text, then sends it."""
    _stdin(monkeypatch, "пример\n".encode(), tty=True)
    status, out, err = taskrpc("--url", slow.url, "submit", "reverse", "-")
    assert status == ExitStatus.OK
    assert err == "taskrpc: reading DATA from standard input; end with Ctrl+D\n"
    assert slow.store.get(out.strip()).data == "пример"


def test_stdin_from_a_pipe_says_nothing(
    slow: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a pipe, `-` reads quietly."""
    _stdin(monkeypatch, b"abc")
    status, _, err = taskrpc("--url", slow.url, "submit", "reverse", "-")
    assert (status, err) == (ExitStatus.OK, "")


def test_ctrl_c_while_reading_stdin_exits_130(
    slow: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl+C anywhere outside wait and submit's request: one line, exit 130."""

    class Interrupted(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(Interrupted(), encoding="utf-8"))
    status, out, err = taskrpc("--url", slow.url, "submit", "reverse", "-")
    assert (status, out, err) == (ExitStatus.INTERRUPTED, "", "taskrpc: interrupted\n")


def _interrupt_when(ready: Callable[[], bool]) -> threading.Thread:
    """A thread that sends SIGINT to this process's main thread once `ready()` holds."""

    def send() -> None:
        deadline = time.monotonic() + 20
        while not ready():
            if time.monotonic() > deadline:
                return  # no stray SIGINT for a later test: this one fails on its own
            time.sleep(0.005)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@asynccontextmanager
async def _held_submit() -> AsyncIterator[tuple[str, asyncio.Event, asyncio.Event]]:
    """A stand-in whose submit answers only once released: (URL, arrived, release)."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        body = await request.json()
        arrived.set()
        await release.wait()
        job = {"id": "abcdefghijklmnop", "type": "reverse", "status": "queued"}
        return web.json_response({"jsonrpc": "2.0", "result": job, "id": body["id"]})

    app = web.Application()
    app.router.add_post("/rpc", held)
    async with stand_in(app) as url:
        yield url, arrived, release


@contextmanager
def _loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_ctrl_c_during_submit_tells_the_id(taskrpc: Run) -> None:
    """Ctrl+C while submit's request is in flight: the answer is awaited, its id told, exit 130."""
    with _loop_in_thread() as loop:
        held = _held_submit()
        url, arrived, release = asyncio.run_coroutine_threadsafe(held.__aenter__(), loop).result(30)
        try:
            interrupter = _interrupt_when(arrived.is_set)

            def release_once_said() -> None:
                interrupter.join(30)
                deadline = time.monotonic() + 20  # until the note handler has run: it puts
                while time.monotonic() < deadline:  # the default handler back
                    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                        break
                    time.sleep(0.005)
                loop.call_soon_threadsafe(release.set)

            threading.Thread(target=release_once_said, daemon=True).start()
            status, out, err = taskrpc("--url", url, "--token", TOKEN, "submit", "reverse", "x")
        finally:
            loop.call_soon_threadsafe(release.set)
            asyncio.run_coroutine_threadsafe(held.__aexit__(None, None, None), loop).result(30)
    assert (status, out) == (ExitStatus.INTERRUPTED, "")
    lines = err.splitlines()
    assert lines[0] == "taskrpc: interrupted; waiting for the server's answer to learn the job id"
    assert lines[1] == (
        "taskrpc: interrupted; job abcdefghijklmnop was submitted and goes on — follow it "
        f"with: taskrpc --url {url} wait --id abcdefghijklmnop (with your token)"
    )
    assert len(lines) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


# -- status, result, cancel --------------------------------------------------------------


def test_status_lines(slow: ThreadedServer, taskrpc: Run) -> None:
    """status prints the running job's progress and a queued job's place and start time."""
    first = submitted(taskrpc, slow.url, "reverse", "a")
    second = submitted(taskrpc, slow.url, "swap", "b")
    status, out, _ = taskrpc("--url", slow.url, "status", first)
    assert status == ExitStatus.OK
    assert re.fullmatch(r"running — \d\.\d of 2000 s\n", out), out
    _, out, _ = taskrpc("--url", slow.url, "status", second)
    assert re.fullmatch(r"queued — 1 ahead, starts in ~(1999|2000) s\n", out), out
    _, out, _ = taskrpc("--url", slow.url, "--json", "status", second)
    assert json.loads(out)["position"] == 1


def test_status_of_a_done_job_and_its_result(fast: ThreadedServer, taskrpc: Run) -> None:
    """A done job's status says how long it ran; result prints the text and one newline."""
    job_id = submitted(taskrpc, fast.url, "reverse", "пример")
    finished(taskrpc, fast.url, job_id)
    status, out, _ = taskrpc("--url", fast.url, "status", job_id)
    assert status == ExitStatus.OK
    assert re.fullmatch(r"done in 0\.\d\d s\n", out), out
    assert taskrpc("--url", fast.url, "result", job_id) == (ExitStatus.OK, "ремирп\n", "")
    status, out, _ = taskrpc("--url", fast.url, "result", "--json", job_id)
    assert json.loads(out) == {"id": job_id, "result": "ремирп"}


NASTY = "\x1b]2;PWNED\x07 hi\u202e"  # retitle, reorder
SHOWN = "\\x1b]2;PWNED\\x07 hi\\u202e"


def test_result_on_a_terminal_is_escaped_unless_raw(
    fast: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """result on a terminal shows escapes; --raw and a pipe get the exact text."""
    job_id = submitted(taskrpc, fast.url, "reverse", "--data", NASTY[::-1])
    finished(taskrpc, fast.url, job_id)
    assert taskrpc("--url", fast.url, "result", job_id)[1] == NASTY + "\n"
    for raw, shown in (([], SHOWN), (["--raw"], NASTY)):
        screen = Terminal()
        monkeypatch.setattr(sys, "stdout", screen)
        assert main(["--url", fast.url, "result", *raw, job_id]) == ExitStatus.OK
        assert screen.getvalue() == shown + "\n"


def test_json_on_a_terminal_escapes_every_non_ascii_character(
    fast: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--json on a terminal writes \\u escapes, so no character of a job acts on the screen."""
    job_id = submitted(taskrpc, fast.url, "reverse", "--data", NASTY)
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert main(["--url", fast.url, "--json", "status", job_id]) == ExitStatus.OK
    assert screen.getvalue().isascii()
    assert json.loads(screen.getvalue())["data"] == NASTY


def test_a_result_of_many_lines_keeps_its_newlines_on_a_terminal(
    fast: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal a result's newlines and tabs stay as they are; other controls are escaped."""
    job_id = submitted(taskrpc, fast.url, "reverse", "--data", "c\td\nb\x07a")
    finished(taskrpc, fast.url, job_id)
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert main(["--url", fast.url, "result", job_id]) == ExitStatus.OK
    assert screen.getvalue() == "a\\x07b\nd\tc\n"


def test_result_not_ready(slow: ThreadedServer, taskrpc: Run) -> None:
    """result of a job still running: exit 4 and one line."""
    job_id = submitted(taskrpc, slow.url, "reverse", "a")
    status, out, err = taskrpc("--url", slow.url, "result", job_id)
    assert (status, out) == (ExitStatus.NOT_READY, "")
    assert err.startswith("taskrpc: ")
    assert err.count("\n") == 1


def test_cancel(slow: ThreadedServer, taskrpc: Run) -> None:
    """cancel prints the id and the new status; cancelling it again is an error (exit 1)."""
    job_id = submitted(taskrpc, slow.url, "reverse", "a")
    assert taskrpc("--url", slow.url, "cancel", job_id) == (
        ExitStatus.OK,
        f"{job_id} cancelled\n",
        "",
    )
    status, out, err = taskrpc("--url", slow.url, "--json", "cancel", job_id)
    assert (status, out) == (ExitStatus.ERROR, "")
    assert json.loads(err)["exit"] == ExitStatus.ERROR
    other = submitted(taskrpc, slow.url, "reverse", "b")
    _, out, _ = taskrpc("--url", slow.url, "--json", "cancel", other)
    assert (json.loads(out)["id"], json.loads(out)["status"]) == (other, "cancelled")


def test_an_unknown_id_is_exit_1(slow: ThreadedServer, taskrpc: Run) -> None:
    """An id the server does not know: one line naming it, exit 1."""
    assert taskrpc("--url", slow.url, "status", "nosuchjob") == (
        ExitStatus.ERROR,
        "",
        "taskrpc: no job with id 'nosuchjob' "
        "(never submitted, or finished long ago and forgotten)\n",
    )


# -- wait -------------------------------------------------------------------------------


def test_wait_prints_the_lines_then_only_the_result(fast: ThreadedServer, taskrpc: Run) -> None:
    """wait submits, names the job on stderr, shows each change there, prints only the result."""
    status, out, err = taskrpc("--url", fast.url, "wait", "repeat", "ab")
    assert (status, out) == (ExitStatus.OK, "abb\n")
    lines = err.splitlines()
    job_id = lines[0].split()[2]
    assert lines[0] == f"taskrpc: job {job_id} (repeat)"
    assert lines[-1].startswith(f"{job_id} repeat: done in ")
    assert any(line.startswith(f"{job_id} repeat: running — ") for line in lines[1:-1]), lines


def test_wait_json_prints_the_job_with_its_result(fast: ThreadedServer, taskrpc: Run) -> None:
    """wait --json prints the finished job and its result as one object."""
    job_id = submitted(taskrpc, fast.url, "swap", "кот")
    job = finished(taskrpc, fast.url, job_id)
    assert (job["id"], job["status"], job["result"]) == (job_id, "done", "окт")


def test_wait_on_a_terminal_escapes_the_result(
    fast: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wait prints the result as result does: escaped on a terminal."""
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    status = main(["--url", fast.url, "wait", "reverse", "--data", NASTY[::-1]])
    assert (status, screen.getvalue()) == (ExitStatus.OK, SHOWN + "\n")


def test_wait_timeout_says_how_to_fetch_it_later(slow: ThreadedServer, taskrpc: Run) -> None:
    """wait --timeout runs out: exit 4 and the command to fetch the result later, no token."""
    status, out, err = taskrpc(
        "--url", slow.url, "--token", TOKEN, "wait", "--timeout", "0.05", "repeat", "x"
    )
    assert (status, out) == (ExitStatus.NOT_READY, "")
    job_id = err.split()[2]
    assert err.splitlines()[-1] == (
        f"taskrpc: timed out after 0.05 s; job {job_id} is still running — fetch it later "
        f"with: taskrpc --url {slow.url} result {job_id} (with your token)"
    )
    assert TOKEN not in err


def test_wait_for_an_existing_job(slow: ThreadedServer, taskrpc: Run) -> None:
    """wait --id follows a job already submitted, without submitting another."""
    job_id = submitted(taskrpc, slow.url, "reverse", "a")
    status, _, err = taskrpc("--url", slow.url, "wait", "--id", job_id, "--timeout", "0")
    assert status == ExitStatus.NOT_READY
    assert err.startswith(f"taskrpc: job {job_id} (reverse)\n")
    assert "timed out after 0 s" in err
    assert sum(slow.store.counts().values()) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--id", "abc", "reverse", "x"], "give either TYPE and DATA, or --id ID, not both"),
        (["--id", "abc", "--data", "x"], "give either TYPE and DATA, or --id ID, not both"),
        ([], "give TYPE and DATA to submit a job, or --id ID to wait for one"),
        (["--timeout", "-1", "reverse", "x"], "argument --timeout: must be a number >= 0"),
        (
            ["--timeout", "soon", "reverse", "x"],
            "argument --timeout: must be a number >= 0, not 'soon'",
        ),
        (
            ["--timeout", "nan", "reverse", "x"],
            "argument --timeout: must be a number >= 0, not 'nan'",
        ),
    ],
)
def test_wait_argument_mixes(
    slow: ThreadedServer, taskrpc: Run, args: list[str], says: str
) -> None:
    """wait takes TYPE and DATA, or --id, never both; a bad --timeout is a usage error."""
    status, out, err = taskrpc("--url", slow.url, "wait", *args)
    assert (status, out) == (ExitStatus.USAGE, "")
    assert err.startswith(f"taskrpc: {says}"), err


def _fail_next(store: Any, job_id: str) -> None:
    """Make the queued job `job_id` fail as soon as it starts (run on the server's loop)."""

    def explode(text: str) -> str:
        raise RuntimeError("boom")

    job = store.get(job_id)
    job.type = JobType(9, "broken", "fails", 0.0, explode, len)
    job.delay = 0.0


async def _on_loop(function: Callable[[], None]) -> None:
    function()


def test_wait_for_a_failed_or_cancelled_job_is_exit_1(slow: ThreadedServer, taskrpc: Run) -> None:
    """wait for a failed or cancelled job: one line saying so, exit 1; --json keeps the data."""
    running = submitted(taskrpc, slow.url, "reverse", "a")
    doomed = submitted(taskrpc, slow.url, "reverse", "b")
    slow.run(_on_loop(lambda: _fail_next(slow.store, doomed)))
    taskrpc("--url", slow.url, "cancel", running)
    status, out, err = taskrpc("--url", slow.url, "wait", "--id", doomed)
    assert (status, out) == (ExitStatus.ERROR, "")
    assert err.startswith(f"taskrpc: job {doomed} (")
    assert err.endswith(
        f"{doomed} broken: failed: RuntimeError: boom\n"
        f"taskrpc: job {doomed} failed: RuntimeError: boom\n"
    )
    status, _, err = taskrpc("--url", slow.url, "--json", "result", doomed)
    assert status == ExitStatus.ERROR
    assert json.loads(err)["error"]["data"] == {"error": "RuntimeError: boom"}  # the server's
    status, _, err = taskrpc("--url", slow.url, "wait", "--id", running)
    assert status == ExitStatus.ERROR
    assert err.endswith(f"taskrpc: job {running} was cancelled\n")


def test_ctrl_c_during_wait_says_how_to_fetch_it_later(slow: ThreadedServer, taskrpc: Run) -> None:
    """Ctrl+C while waiting: exit 130, the job goes on, and the command to fetch it later."""
    job_id = submitted(taskrpc, slow.url, "reverse", "a")
    _interrupt_when(lambda: slow.store.waiting == 1)
    status, out, err = taskrpc("--url", slow.url, "wait", "--id", job_id)
    assert (status, out) == (ExitStatus.INTERRUPTED, "")
    assert err.endswith(
        f"taskrpc: stopped waiting; job {job_id} goes on — "
        f"fetch it later with: taskrpc --url {slow.url} result {job_id}\n"
    )
    assert not slow.store.get(job_id).status.finished  # not cancelled: it goes on


@asynccontextmanager
async def _dropping_waits() -> AsyncIterator[str]:
    """A stand-in that answers status with a queued job and drops the connection on wait."""

    async def rpc(request: web.Request) -> web.Response:
        body = await request.json()
        if body["method"] == "wait":
            assert request.transport is not None
            request.transport.close()  # the answer below goes nowhere
        job = {
            "id": "abcdefghijklmnop",
            "type": "reverse",
            "status": "queued",
            "position": 0,
            "started_at": None,
            "finished_at": None,
            "estimated_finish_at": None,
            "delay": 2.0,
        }
        return web.json_response({"jsonrpc": "2.0", "result": job, "id": body["id"]})

    app = web.Application()
    app.router.add_post("/rpc", rpc)
    async with stand_in(app) as url:
        yield url


def test_a_server_lost_during_wait_is_exit_3(taskrpc: Run) -> None:
    """The connection lost while waiting: exit 3 and the command to wait again."""
    with _loop_in_thread() as loop:
        dropping = _dropping_waits()
        url = asyncio.run_coroutine_threadsafe(dropping.__aenter__(), loop).result(30)
        try:
            status, out, err = taskrpc("--url", url, "wait", "--id", "abcdefghijklmnop")
        finally:
            asyncio.run_coroutine_threadsafe(dropping.__aexit__(None, None, None), loop).result(30)
    assert (status, out) == (ExitStatus.UNREACHABLE, ""), err
    last = err.splitlines()[-1]
    assert last.startswith("taskrpc: lost the server while waiting for job abcdefghijklmnop: ")
    assert last.endswith(
        f"; if it still runs, wait again with: taskrpc --url {url} wait --id abcdefghijklmnop"
    )


# -- list and types ---------------------------------------------------------------------


def test_list_lines_counts_and_the_next_page(slow: ThreadedServer, taskrpc: Run) -> None:
    """list: one line per job, newest first; the counts and the next page's command on stderr."""
    ids = [submitted(taskrpc, slow.url, "reverse", f"t{n}") for n in range(3)]
    status, out, err = taskrpc("--url", slow.url, "list", "--limit", "2")
    assert status == ExitStatus.OK
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ids[:0:-1]
    assert lines[0] == f"{ids[2]}  reverse  {'queued — 2 ahead':<36}  't2'"
    counts, more = err.splitlines()
    assert counts == "2 queued, 1 running, 0 done, 0 failed, 0 cancelled"
    assert more == f"more: taskrpc --url {slow.url} list --limit 2 --cursor 1"
    _, out, err = taskrpc("--url", slow.url, "list", "--status", "queued", "--limit", "1")
    assert err.splitlines()[1] == (
        f"more: taskrpc --url {slow.url} list --status queued --limit 1 --cursor 2"
    )
    _, out, err = taskrpc("--url", slow.url, "list", "--status", "running")
    assert [line.split()[0] for line in out.splitlines()] == ids[:1]
    assert "more:" not in err
    status, out, err = taskrpc("--url", slow.url, "--json", "list", "--limit", "1")
    assert (status, err) == (ExitStatus.OK, "")
    page = json.loads(out)
    assert page["counts"] == {"queued": 2, "running": 1, "done": 0, "failed": 0, "cancelled": 0}
    assert [job["id"] for job in page["jobs"]] == ids[2:]


def test_list_marks_a_cut_preview(slow: ThreadedServer, taskrpc: Run) -> None:
    """A text longer than the preview ends in `…` in list, a whole one does not."""
    long_id = submitted(taskrpc, slow.url, "reverse", "x" * 500)
    status, out, _ = taskrpc("--url", slow.url, "list")
    assert status == ExitStatus.OK
    line = out.splitlines()[0]
    assert line.startswith(long_id)
    assert line.endswith("x…'")
    short_id = submitted(taskrpc, slow.url, "reverse", "y")
    _, out, _ = taskrpc("--url", slow.url, "list", "--limit", "1")
    assert out.splitlines()[0].startswith(short_id)
    assert out.splitlines()[0].endswith("'y'")


def test_types(slow: ThreadedServer, taskrpc: Run) -> None:
    """types: one line per type (code, name, delay, description); --json the list."""
    status, out, _ = taskrpc("--url", slow.url, "types")
    assert status == ExitStatus.OK
    lines = out.splitlines()
    assert lines[0] == "1  reverse  2 s  Reverse the text: пример → ремирп"
    assert lines[1].startswith("2  swap     5 s  Swap characters pairwise")
    assert len(lines) == 3
    _, out, _ = taskrpc("--url", slow.url, "--json", "types")
    assert [t["code"] for t in json.loads(out)] == [1, 2, 3]


# -- errors, usage, options ---------------------------------------------------------------


def test_json_errors_are_one_object(slow: ThreadedServer, taskrpc: Run) -> None:
    """With --json a server error is one JSON object on stderr: code, message, data, exit."""
    status, out, err = taskrpc("--url", slow.url, "--json", "status", "nosuchjob")
    assert (status, out) == (ExitStatus.ERROR, "")
    assert json.loads(err) == {
        "error": {
            "code": -32001,
            "message": "no job with id 'nosuchjob' (never submitted, or finished long ago and "
            "forgotten)",
            "data": None,
        },
        "exit": 1,
    }
    status, _, err = taskrpc("--url", slow.url, "--json", "submit", "reverse")
    assert status == ExitStatus.USAGE
    assert json.loads(err) == {
        "error": {
            "code": None,
            "message": "give DATA (the text; - reads standard input)",
            "data": None,
        },
        "exit": 2,
    }


def test_a_json_usage_error_carries_its_detail(taskrpc: Run) -> None:
    """--json with no command: the command list travels in `data`."""
    status, _, err = taskrpc("--json")
    assert status == ExitStatus.USAGE
    error = json.loads(err)["error"]
    assert error["message"] == "a command is required"
    assert error["data"].startswith("usage: taskrpc [OPTIONS] COMMAND [ARGS]\n")


@asynccontextmanager
async def _odd_server(reply: dict[str, Any] | None = None) -> AsyncIterator[str]:
    """A stand-in whose answer is `reply` (by default a number: JSON-RPC, but not a job)."""

    async def rpc(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"jsonrpc": "2.0", **(reply or {"result": 7}), "id": body["id"]})

    app = web.Application()
    app.router.add_post("/rpc", rpc)
    async with stand_in(app) as url:
        yield url


def test_an_unexpected_error_is_one_line_or_a_traceback_when_asked(taskrpc: Run) -> None:
    """A failure nobody planned for: one line pointing to --traceback, which shows it."""
    with _loop_in_thread() as loop:
        odd = _odd_server()
        url = asyncio.run_coroutine_threadsafe(odd.__aenter__(), loop).result(30)
        try:
            status, out, err = taskrpc("--url", url, "status", "x")
            with pytest.raises(TypeError):
                main(["--url", url, "--traceback", "status", "x"])
            json_status, _, json_err = taskrpc("--url", url, "--json", "status", "x")
        finally:
            asyncio.run_coroutine_threadsafe(odd.__aexit__(None, None, None), loop).result(30)
    assert (status, out) == (ExitStatus.ERROR, "")
    assert err.startswith("taskrpc: unexpected TypeError: ")
    assert err.endswith(" (run with --traceback for details)\n")
    assert err.count("\n") == 1
    assert json_status == ExitStatus.ERROR
    assert json.loads(json_err)["error"]["message"].startswith("unexpected TypeError: ")


def test_a_json_error_keeps_the_message_and_its_text_data_apart(taskrpc: Run) -> None:
    """--json: an error's message and text data as the server sent them; one line joins them."""
    error = {"code": -32602, "message": "Invalid params", "data": "id is required"}
    with _loop_in_thread() as loop:
        odd = _odd_server({"error": error})
        url = asyncio.run_coroutine_threadsafe(odd.__aenter__(), loop).result(30)
        try:
            json_status, _, json_err = taskrpc("--url", url, "--json", "status", "x")
            status, _, err = taskrpc("--url", url, "status", "x")
        finally:
            asyncio.run_coroutine_threadsafe(odd.__aexit__(None, None, None), loop).result(30)
    assert json_status == status == ExitStatus.USAGE  # bad params: our usage, so exit 2
    assert json.loads(json_err)["error"] == error
    assert err == "taskrpc: Invalid params: id is required\n"


def test_traceback_and_json_after_the_operands_marker_are_data(
    slow: ThreadedServer, taskrpc: Run
) -> None:
    """`--json` and `--traceback` after `--` are DATA, not options, for the error report too."""
    for word in ("--json", "--traceback"):
        status, _, err = taskrpc("--url", slow.url, "submit", "nosuchtype", "--", word)
        assert status == ExitStatus.USAGE
        assert err.startswith("taskrpc: type must be one of")


def test_no_command_lists_the_commands(taskrpc: Run) -> None:
    """`taskrpc` alone: 'a command is required', then each command with its summary."""
    status, out, err = taskrpc()
    assert (status, out) == (ExitStatus.USAGE, "")
    lines = err.splitlines()
    assert lines[:4] == [
        "taskrpc: a command is required",
        "usage: taskrpc [OPTIONS] COMMAND [ARGS]",
        "",
        "commands:",
    ]
    assert lines[4] == "  submit      queue a job and print its id"
    assert [line.split()[0] for line in lines[4:12]] == [
        "submit", "status", "result", "wait", "list", "cancel", "types", "completion",
    ]  # fmt: skip
    assert lines[12:] == [
        "",
        "see 'taskrpc --help' for options, 'taskrpc COMMAND --help' for one command",
    ]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["submit"], "taskrpc: the following arguments are required: TYPE; "
         "see 'taskrpc submit --help'"),
        (["frobnicate"], "taskrpc: argument COMMAND: invalid choice: 'frobnicate'"),
        (["list", "--limit", "x"], "taskrpc: argument --limit: invalid int value: 'x'; "
         "see 'taskrpc list --help'"),
        (["list", "--status", "gone"], "taskrpc: argument --status: invalid choice: 'gone'"),
        (["--url", "foo", "types"], "taskrpc: argument --url: 'foo' is not an http:// URL of a "
         "taskrpc server; see 'taskrpc --help'"),
        (["--url", "http://[::1", "types"], "taskrpc: argument --url: 'http://[::1' is not an "
         "http:// URL"),
        (["--url", "ftp://h", "types"], "taskrpc: argument --url: 'ftp://h' is not an http://"),
        (["--url", "http://", "types"], "taskrpc: argument --url: 'http://' is not an http://"),
        (["--url", "http://h:99999", "types"], "taskrpc: argument --url: 'http://h:99999' has a "
         "bad port; see"),
        (["--url", "http://h/a b", "types"], "taskrpc: argument --url: 'http://h/a b' has a space "
         "or a control character in its path; see"),
        (["--url", "http://h/a\x7f", "types"], "taskrpc: argument --url: 'http://h/a\\x7f' has a "
         "space"),
        (["--url", "http://h/é", "types"], "taskrpc: argument --url: 'http://h/é' has a character "
         "that is not ASCII in its path: percent-encode it; see"),
        (["--token", "a\nb", "types"], "taskrpc: argument --token: a token is printable ASCII "
         "(it travels in a header); see"),
        (["--token", "jeton-é", "types"], "taskrpc: argument --token: a token is printable ASCII"),
        (["completion", "tcsh"], "taskrpc: argument SHELL: invalid choice: 'tcsh'"),
        (["wait", "--timeout", "nan", "reverse", "x"], "taskrpc: argument --timeout: must be a "
         "number >= 0, not 'nan'"),
        (["wait", "--timeout", "soon", "reverse", "x"], "taskrpc: argument --timeout: must be a "
         "number >= 0, not 'soon'"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line(taskrpc: Run, args: list[str], line: str) -> None:
    """A usage error is one line that names the right --help, and exit 2."""
    status, out, err = taskrpc(*args)
    assert (status, out) == (ExitStatus.USAGE, "")
    assert err.count("\n") == 1, err
    assert err.startswith(line), err


def test_the_url_may_end_in_rpc_and_comes_from_the_environment(
    slow: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TASKRPC_URL gives the URL; the README's curl URL (ending in /rpc/) works as well."""
    monkeypatch.setenv("TASKRPC_URL", f"{slow.url}/rpc/")
    status, out, err = taskrpc("types")
    assert status == ExitStatus.OK, err
    assert "reverse" in out


@pytest.fixture
def guarded() -> Iterator[ThreadedServer]:
    """A slow server that wants TOKEN."""
    with server_in_thread(SLOW, token=TOKEN) as server:
        yield server


def test_the_token_from_a_flag_a_file_or_the_environment(
    guarded: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """--token, --token-file, TASKRPC_TOKEN and TASKRPC_TOKEN_FILE each carry the token."""
    secret = tmp_path / "token"
    secret.write_text(f"  {TOKEN}\n")
    refused = taskrpc("--url", guarded.url, "types")
    assert refused[0] == ExitStatus.USAGE
    assert refused[2] == (
        "taskrpc: the server refused the token (missing or wrong): "
        "pass --token-file or set TASKRPC_TOKEN_FILE or TASKRPC_TOKEN\n"
    )
    assert taskrpc("--url", guarded.url, "--token", TOKEN, "types")[0] == ExitStatus.OK
    assert taskrpc("--url", guarded.url, "types", "--token", TOKEN)[0] == ExitStatus.OK
    assert taskrpc("--url", guarded.url, "--token-file", str(secret), "types")[0] == 0
    monkeypatch.setenv("TASKRPC_TOKEN_FILE", str(secret))
    assert taskrpc("--url", guarded.url, "types")[0] == ExitStatus.OK
    monkeypatch.setenv("TASKRPC_TOKEN", "wrong")  # the variable wins over the file's
    assert taskrpc("--url", guarded.url, "types")[0] == ExitStatus.USAGE
    assert taskrpc("--url", guarded.url, "--token", TOKEN, "types")[0] == ExitStatus.OK
    monkeypatch.setenv("TASKRPC_TOKEN", TOKEN)
    monkeypatch.setenv("TASKRPC_TOKEN_FILE", str(tmp_path / "missing"))
    assert taskrpc("--url", guarded.url, "types")[0] == ExitStatus.OK  # the file is not read


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read the token file {path!r} (No such file or directory); it comes "
         "from --token-file or TASKRPC_TOKEN_FILE"),
        (b" \n", "the token file {path!r} is empty"),
        (b"\xff\xfe", "cannot read the token file {path!r} (not UTF-8 text)"),
        (b"a\x07b", "a token is printable ASCII"),
    ],
)  # fmt: skip
def test_a_bad_token_file_is_one_line(
    taskrpc: Run, tmp_path: Any, content: bytes | None, says: str
) -> None:
    """A token file that is missing, empty, not text or not a token: one line, exit 2."""
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    status, _, err = taskrpc("--token-file", str(path), "types")
    assert status == ExitStatus.USAGE
    assert err.startswith("taskrpc: argument --token-file: " + says.format(path=str(path)))
    assert err.count("\n") == 1


def test_only_the_first_4_kib_of_a_token_file_is_read(
    guarded: ThreadedServer, taskrpc: Run, tmp_path: Any
) -> None:
    """A token file is read up to 4 KiB (a huge file or a device is not read whole)."""
    secret = tmp_path / "token"
    secret.write_text(TOKEN.ljust(4096) + "tail")
    status, _, err = taskrpc("--url", guarded.url, "--token-file", str(secret), "types")
    assert status == ExitStatus.OK, err


def test_a_token_file_is_utf8_whatever_the_locale(taskrpc: Run, tmp_path: Any) -> None:
    """The token file is decoded as UTF-8 even under an ASCII locale: é is a character, and
    refused as one (not ASCII), rather than bytes that do not decode."""
    import locale

    path = tmp_path / "token"
    path.write_bytes("jeton-é".encode())
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        status, _, err = taskrpc("--token-file", str(path), "types")
    finally:
        locale.setlocale(locale.LC_CTYPE, before)
    assert status == ExitStatus.USAGE
    assert err.startswith("taskrpc: argument --token-file: a token is printable ASCII"), err


def test_a_token_file_named_by_the_environment_is_checked(
    taskrpc: Run, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TASKRPC_TOKEN_FILE naming a missing file: a usage error, even with no option given."""
    monkeypatch.setenv("TASKRPC_TOKEN_FILE", str(tmp_path / "missing"))
    status, _, err = taskrpc("types")
    assert status == ExitStatus.USAGE
    assert "cannot read the token file" in err


def test_output_is_utf8_whatever_the_locale(
    fast: ThreadedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stdout and stderr are switched to UTF-8 even when the locale asks for another encoding."""
    out, err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="latin-1"))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, encoding="latin-1"))
    assert main(["--url", fast.url, "wait", "reverse", "пример"]) == ExitStatus.OK
    sys.stdout.flush()
    sys.stderr.flush()
    assert out.getvalue() == "ремирп\n".encode()
    assert "reverse" in err.getvalue().decode("utf-8")


def test_a_closed_pipe_is_quiet(slow: ThreadedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader of stdout gone: exit 1, nothing said, and stdout sent to /dev/null."""
    read_end, write_end = os.pipe()

    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

        def fileno(self) -> int:
            return write_end

    monkeypatch.setattr(sys, "stdout", Gone())
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    try:
        assert main(["--url", slow.url, "types"]) == ExitStatus.ERROR
        assert err.getvalue() == ""
        assert os.path.samestat(os.fstat(write_end), os.stat(os.devnull))
    finally:
        os.close(read_end)
        os.close(write_end)


def test_help_fits_the_terminal_width(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help is wrapped to $COLUMNS; without a usable one, to 80 columns."""
    for columns, width in (("50", 50), ("100", 100), ("0", 80), ("wide", 80)):
        monkeypatch.setenv("COLUMNS", columns)
        with pytest.raises(SystemExit):
            main(["wait", "--help"])
        wrapped = capsys.readouterr().out.split("options:")[1].split("example:")[0]
        widths = [len(line) for line in wrapped.splitlines()]
        assert width - 15 < max(widths) <= width - 2, (columns, widths)


def test_help_shows_the_examples_and_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    """`taskrpc --help` ends with examples and the meaning of every exit status."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "  taskrpc wait reverse пример          # submit, watch, print: ремирп\n" in out
    assert "    0  ok\n" in out
    assert "    3  the server could not be reached, went away, or is not taskrpc\n" in out
    assert out.endswith("  130  interrupted (Ctrl+C)\n")


@pytest.mark.parametrize(
    ("shell", "first"), [("bash", "# AUTOMATICALLY GENERATED"), ("zsh", "#compdef taskrpc")]
)
def test_completion_script(taskrpc: Run, shell: str, first: str) -> None:
    """`completion SHELL` prints that shell's script, which knows the commands and options."""
    status, out, _ = taskrpc("completion", shell)
    assert status == ExitStatus.OK
    assert out.startswith(first)
    for word in ("submit", "--token-file", "--timeout", "cancel"):
        assert word in out


def test_the_default_url_is_left_out_of_hints() -> None:
    """A hint names --url only when it is not the default, and quotes what a shell would split."""
    from argparse import Namespace

    from cli.main import _again

    assert _again(Namespace(url=DEFAULT_URL + "/rpc/", token=None), "result", "a b") == (
        "taskrpc result 'a b'"
    )
    assert _again(Namespace(url="http://h:1/x y", token="t"), "list") == (
        "taskrpc --url 'http://h:1/x y' list (with your token)"
    )


class _OnTerminal:
    """The process's stdout as it is (others write to it: pytest, mutmut), on the terminal
    `fd` as far as its size goes."""

    def __init__(self, stream: Any, fd: int) -> None:
        self._stream = stream
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def test_help_fits_the_terminal_without_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without $COLUMNS, --help is wrapped to the width of the terminal on stdout."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
        monkeypatch.delenv("COLUMNS", raising=False)
        monkeypatch.setattr(sys, "__stdout__", _OnTerminal(sys.__stdout__, slave))
        with pytest.raises(SystemExit):
            main(["wait", "--help"])
    finally:
        os.close(master)
        os.close(slave)
    wrapped = capsys.readouterr().out.split("options:")[1].split("example:")[0]
    assert 45 < max(len(line) for line in wrapped.splitlines()) <= 58


def test_an_option_value_that_names_a_command_is_a_value(
    slow: ThreadedServer, taskrpc: Run
) -> None:
    """A token spelled like a command (`--token status types`) is the token; types runs."""
    status, out, err = taskrpc("--url", slow.url, "--token", "status", "types")
    assert status == ExitStatus.OK, err
    assert out.startswith("1  reverse  ")


@pytest.mark.parametrize("help_option", ["-h", "--help"])
def test_help_before_a_command_lists_every_command(
    help_option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`taskrpc -h status`: the main help, with every command, not only the one named."""
    with pytest.raises(SystemExit):
        main([help_option, "status"])
    out = capsys.readouterr().out
    assert out.startswith("usage: taskrpc ")
    for command in ("submit (task)", "status", "wait", "completion"):
        assert f"\n    {command} " in out


def test_wait_says_when_the_server_is_busy(taskrpc: Run) -> None:
    """wait against a server at its limit of waits asks again and says so; no error."""
    with server_in_thread(SLOW, max_waiters=1) as server:
        job_id = submitted(taskrpc, server.url, "reverse", "a")
        holder = hold_a_wait(server, job_id)
        status, out, err = taskrpc("--url", server.url, "wait", "--id", job_id, "--timeout", "1")
        holder.join(10)
    assert (status, out) == (ExitStatus.NOT_READY, "")
    assert "server busy; asking again in 0.25 s\n" in err


# -- the parser ----------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [None, "1", "0", "-3", "wide", "120"])
def test_the_width_is_found_as_shutil_finds_it(
    monkeypatch: pytest.MonkeyPatch, columns: str | None
) -> None:
    """_columns agrees with shutil.get_terminal_size (which it replaces): $COLUMNS when it is a
    positive number, else the terminal on stdout, else 80."""
    import shutil

    from cli.main import _columns

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert _columns() == shutil.get_terminal_size().columns
    with open(os.devnull, "w") as devnull:  # stdout on no terminal
        monkeypatch.setattr(sys, "__stdout__", _OnTerminal(sys.__stdout__, devnull.fileno()))
        assert _columns() == shutil.get_terminal_size().columns


def test_help_is_laid_out_as_argparse_would_without_importing_shutil(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The help of `taskrpc` and of a command is the layout argparse's own formatter makes
    at that width, and printing it never imports shutil (2.5 ms of start-up)."""
    import argparse

    import cli.main

    def helps() -> list[str]:
        for args in (["--help"], ["wait", "--help"]):
            with pytest.raises(SystemExit):
                main(args)
        return capsys.readouterr().out.split("usage: ")

    monkeypatch.setenv("COLUMNS", "61")
    monkeypatch.delitem(sys.modules, "shutil")
    ours = helps()
    assert "shutil" not in sys.modules
    monkeypatch.setattr(cli.main, "_Formatter", argparse.RawDescriptionHelpFormatter)
    assert ours == helps()


def test_the_command_is_the_first_word_that_names_one() -> None:
    """_command_named skips options and their values; a help option or `--` before any
    command means there is none (the main parser's help lists every command)."""
    from cli.main import _command_named

    assert _command_named(["--url", "http://h:1", "--json", "task", "reverse", "x"]) == "task"
    assert _command_named(["--token", "status", "types"]) == "status"  # the value names one
    assert _command_named(["--json", "--", "status"]) is None
    assert _command_named(["--url", "u", "-h", "status"]) is None
    assert _command_named(["--help"]) is None
    assert _command_named(["--url", "u"]) is None


@pytest.mark.parametrize("word", ["submit", "task", "status", "wait", "cancel", "completion"])
def test_a_parser_for_one_command_knows_it_and_no_other(word: str) -> None:
    """_parser(only=WORD) parses that command (an alias names its command), and refuses the
    others as unknown."""
    from cli.main import Failure, _parser

    parser = _parser(only=word)
    args = {"submit": ["reverse", "x"], "task": ["reverse", "x"], "completion": ["bash"]}
    parser.parse_args([word, *args.get(word, ["ID"])])
    for other in ("types", "list", "result"):
        with pytest.raises(Failure, match=rf"invalid choice: '{other}'"):
            parser.parse_args([other])


def test_a_run_builds_the_parser_of_its_command_only(
    slow: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command's run builds the parser of that command alone (the other seven were 6 % of
    `taskrpc status`'s start-up); only a failed parse falls back to the whole one."""
    import cli.main

    built: list[str | None] = []
    whole = cli.main._parser

    def parser(only: str | None = None) -> Any:
        built.append(only)
        return whole(only)

    monkeypatch.setattr(cli.main, "_parser", parser)
    assert taskrpc("--url", slow.url, "--json", "types")[0] == ExitStatus.OK
    assert built == ["types"]
    assert taskrpc("--url", slow.url, "--token", "status", "types")[0] == ExitStatus.OK
    assert built == ["types", "status", None]


def test_a_dash_before_the_operands_marker_reads_stdin(
    slow: ThreadedServer, taskrpc: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`submit reverse - --`: the `-` comes before `--`, so it still reads standard input."""
    _stdin(monkeypatch, b"from stdin\n")
    job_id = submitted(taskrpc, slow.url, "reverse", "-", "--")
    assert slow.store.get(job_id).data == "from stdin"


def test_main_reads_the_process_arguments(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() without arguments runs the command line the process was started with."""
    monkeypatch.setattr(sys, "argv", ["taskrpc", "completion", "bash"])
    assert main() == ExitStatus.OK
    assert capsys.readouterr().out.startswith("# AUTOMATICALLY GENERATED")


def test_the_default_url_without_an_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --url or TASKRPC_URL the URL is the default, in `taskrpc` and in any parser
    add_connection_options equips (as taskrpc-tui's), which defaults unless told not to."""
    import argparse

    from cli.main import _parse
    from cli.options import add_connection_options

    assert _parse(["types"]).url == DEFAULT_URL
    assert _parse(["status", "x"]).url == DEFAULT_URL
    parser = argparse.ArgumentParser()
    add_connection_options(parser)
    assert parser.parse_args([]).url == DEFAULT_URL
