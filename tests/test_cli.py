"""End to end: `taskrpc-server` and every `taskrpc` command as real processes."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from cli.main import ExitStatus
from tests.conftest import BIN, ServerProcess, run_cli, spawn_server, stand_in

JOB_ID = re.compile(r"^[a-z2-7]{16}$")


@pytest.fixture
def slow_server() -> Iterator[ServerProcess]:
    """A server where reverse takes 0.4 s, swap 1 s and repeat 1.4 s."""
    started = spawn_server("--time-scale", "0.2")
    yield started
    started.reap()


def start_wait(url: str, *args: str) -> subprocess.Popen[str]:
    """`taskrpc wait ARGS` running in the background, its output piped."""
    return subprocess.Popen(
        [str(BIN / "taskrpc"), "--url", url, "wait", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def submit(url: str, *args: str) -> str:
    done = run_cli("submit", *args, url=url)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_submit_prints_only_the_id(server_process: ServerProcess) -> None:
    """submit (and its alias task) print the id and nothing else on stdout."""
    for command in ("submit", "task"):
        done = run_cli(command, "reverse", "пример", url=server_process.url)
        assert done.returncode == 0
        assert JOB_ID.match(done.stdout.strip()), done.stdout
        assert done.stdout.count("\n") == 1


def test_submit_by_code_and_from_stdin(server_process: ServerProcess) -> None:
    """TYPE may be a code; DATA of - reads stdin (one trailing newline dropped)."""
    job_id = submit(server_process.url, "2", "-")  # stdin empty → empty text
    wait = run_cli("wait", "--id", job_id, url=server_process.url)
    assert (wait.returncode, wait.stdout) == (0, "\n")
    done = run_cli("wait", "reverse", "-", url=server_process.url, stdin="пример\n")
    assert (done.returncode, done.stdout) == (0, "ремирп\n")


def test_wait_prints_id_status_and_only_the_result(server_process: ServerProcess) -> None:
    """wait shows the id and each status change on stderr and only the result on stdout."""
    done = run_cli("wait", "repeat", "пример", url=server_process.url)
    assert done.returncode == ExitStatus.OK
    assert done.stdout == "прриииммммееееерррррр\n"
    lines = done.stderr.splitlines()
    match = re.match(r"taskrpc: job ([a-z2-7]{16}) \(repeat\)$", lines[0])
    assert match, lines
    assert lines[-1].startswith(f"{match.group(1)} repeat: done in ")
    assert any(": running — " in line for line in lines)


def test_wait_json(server_process: ServerProcess) -> None:
    """wait --json prints the finished job with its result."""
    done = run_cli("--json", "wait", "swap", "кот", url=server_process.url)
    job = json.loads(done.stdout)
    assert (job["status"], job["result"], job["type"]) == ("done", "окт", "swap")


def test_status_and_result(server_process: ServerProcess) -> None:
    """status prints a readable line; result prints only the result; --json gives objects."""
    job_id = submit(server_process.url, "reverse", "пример")
    run_cli("wait", "--id", job_id, url=server_process.url)
    status = run_cli("status", job_id, url=server_process.url)
    assert re.fullmatch(r"done in \d+\.\d\d s\n", status.stdout), status.stdout
    assert run_cli("result", job_id, url=server_process.url).stdout == "ремирп\n"
    as_json = json.loads(run_cli("--json", "status", job_id, url=server_process.url).stdout)
    assert (as_json["id"], as_json["status"], as_json["data"]) == (job_id, "done", "пример")
    result = json.loads(run_cli("--json", "result", job_id, url=server_process.url).stdout)
    assert result == {"id": job_id, "result": "ремирп"}


def test_result_not_ready_and_queued_status() -> None:
    """A result that is not ready is a message on stderr and exit 4; status shows the queue."""
    slow_server = spawn_server("--time-scale", "1")
    try:
        check_queue_lines(slow_server)
    finally:
        slow_server.reap()


def check_queue_lines(slow_server: ServerProcess) -> None:
    first = submit(slow_server.url, "repeat", "a")
    second = submit(slow_server.url, "swap", "ab")
    done = run_cli("result", second, url=slow_server.url)
    assert done.returncode == ExitStatus.NOT_READY
    assert done.stdout == ""
    assert "not ready" in done.stderr
    status = run_cli("status", second, url=slow_server.url).stdout
    assert re.fullmatch(r"queued — 1 ahead, starts in ~\d+ s\n", status), status
    running = run_cli("status", first, url=slow_server.url).stdout
    assert re.fullmatch(r"running — \d+\.\d of 7 s\n", running), running


def test_wait_timeout(slow_server: ServerProcess) -> None:
    """wait --timeout gives up with exit 4 and says how to fetch the result later."""
    done = run_cli("wait", "--timeout", "0.2", "repeat", "abc", url=slow_server.url)
    assert done.returncode == ExitStatus.NOT_READY
    assert "timed out after 0.2 s" in done.stderr
    assert f"taskrpc --url {slow_server.url} result " in done.stderr
    assert done.stdout == ""


def test_list_cancel_types(server_process: ServerProcess) -> None:
    """list, cancel and types work, in plain and --json output."""
    url = server_process.url
    job_id = submit(url, "reverse", "пример")
    run_cli("wait", "--id", job_id, url=url)
    listing = run_cli("list", url=url)
    assert job_id in listing.stdout
    assert "'пример'" in listing.stdout
    assert "1 done" in listing.stderr
    as_json = json.loads(run_cli("--json", "list", url=url).stdout)
    assert as_json["jobs"][0]["id"] == job_id
    cancel = run_cli("cancel", job_id, url=url)
    assert cancel.returncode == ExitStatus.ERROR
    assert "already done" in cancel.stderr
    types = run_cli("types", url=url)
    assert types.stdout.splitlines()[0].startswith("1  reverse  2 s")
    assert [t["name"] for t in json.loads(run_cli("--json", "types", url=url).stdout)] == [
        "reverse",
        "swap",
        "repeat",
    ]


def test_cancel_queued(slow_server: ServerProcess) -> None:
    """cancel stops a queued job; wait for it then fails with exit 1."""
    submit(slow_server.url, "repeat", "a")
    second = submit(slow_server.url, "repeat", "b")
    done = run_cli("cancel", second, url=slow_server.url)
    assert (done.returncode, done.stdout) == (0, f"{second} cancelled\n")
    wait = run_cli("wait", "--id", second, url=slow_server.url)
    assert wait.returncode == ExitStatus.ERROR
    assert "was cancelled" in wait.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["status", "nosuchjob"], ExitStatus.ERROR, "taskrpc: no job with id 'nosuchjob'"),
        (["submit", "shuffle", "x"], ExitStatus.USAGE, "taskrpc: type must be one of 1, 2, 3"),
        (["submit", "reverse"], ExitStatus.USAGE, "taskrpc: give DATA"),
        (["wait"], ExitStatus.USAGE, "give TYPE and DATA"),
        (["frobnicate"], ExitStatus.USAGE, "invalid choice"),
    ],
)
def test_errors(server_process: ServerProcess, args: list[str], status: int, message: str) -> None:
    """Each failure is a short message on stderr (no traceback) and its exit status."""
    done = run_cli(*args, url=server_process.url)
    assert done.returncode == status
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_unreachable_server() -> None:
    """No server at the URL: one line saying so, exit 3."""
    done = run_cli("status", "abc", url="http://127.0.0.1:9")
    assert done.returncode == ExitStatus.UNREACHABLE
    assert done.stderr.startswith(
        "taskrpc: cannot reach http://127.0.0.1:9 — is taskrpc-server running?"
    )
    assert done.stderr.count("\n") == 1


def test_utf8_whatever_the_locale(server_process: ServerProcess) -> None:
    """Output is UTF-8 even when the environment asks for another encoding."""
    done = run_cli(
        "wait",
        "reverse",
        "пример",
        url=server_process.url,
        env={"PYTHONIOENCODING": "latin-1", "LC_ALL": "C"},
    )
    assert (done.returncode, done.stdout) == (0, "ремирп\n")


@pytest.mark.parametrize(
    "command", ["submit", "status", "result", "wait", "list", "cancel", "types"]
)
def test_help_shows_an_example(command: str) -> None:
    """Every command's --help shows an example."""
    done = run_cli(command, "--help")
    assert done.returncode == 0
    assert re.search(r"example:\n  .*taskrpc ", done.stdout)


@pytest.mark.parametrize("columns", [50, 100])
def test_help_fits_the_terminal_width(columns: int) -> None:
    """--help is wrapped to $COLUMNS, as argparse's own width finding would do."""
    done = run_cli("wait", "--help", env={"COLUMNS": str(columns)})
    wrapped = done.stdout.split("options:")[1].split("example:")[0]  # not the raw texts
    widths = [len(line) for line in wrapped.splitlines()]
    assert max(widths) <= columns - 2
    assert max(widths) > columns - 15  # the long help texts fill the width


def test_cli_imports_stay_light() -> None:
    """Loading the CLI imports neither Textual nor aiohttp (a command neither: test_cli_errors)."""
    code = "import sys, cli.main; print('textual' in sys.modules, 'aiohttp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "False False\n"


def test_ctrl_c_stops_waiting_and_the_job_goes_on(slow_server: ServerProcess) -> None:
    """SIGINT to wait: exit 130, one line saying how to fetch the result, no traceback."""
    waiter = start_wait(slow_server.url, "repeat", "пример")
    try:
        assert waiter.stderr is not None
        first = waiter.stderr.readline()  # "taskrpc: job ID (repeat)" once it is submitted
        job_id = first.split()[2]
        while ": running — " not in (line := waiter.stderr.readline()):
            assert line, "wait ended before the job ran"  # "" is the end of stderr
        waiter.send_signal(signal.SIGINT)
        out, err = waiter.communicate(timeout=10)
    finally:
        waiter.kill()
        waiter.communicate()
    assert waiter.returncode == ExitStatus.INTERRUPTED
    assert out == ""
    assert f"stopped waiting; job {job_id} goes on" in err
    assert f"taskrpc --url {slow_server.url} result {job_id}" in err
    assert "Traceback" not in err
    later = run_cli("wait", "--id", job_id, url=slow_server.url)
    assert (later.returncode, later.stdout) == (0, "прриииммммееееерррррр\n")


def test_server_stops_promptly_on_sigterm(slow_server: ServerProcess) -> None:
    """SIGTERM while a job runs and a client waits: exit 0 within 2 s, no traceback."""
    submit(slow_server.url, "repeat", "x")
    waiter = start_wait(slow_server.url, "repeat", "y")
    try:
        assert waiter.stderr is not None
        waiter.stderr.readline()  # submitted
        began = time.monotonic()
        assert slow_server.stop(signal.SIGTERM) == 0
        assert time.monotonic() - began < 2.0
        assert slow_server.process.stderr is not None
        assert "Traceback" not in slow_server.process.stderr.read()
        _, err = waiter.communicate(timeout=10)
    finally:
        waiter.kill()
        waiter.communicate()
    assert waiter.returncode == ExitStatus.UNREACHABLE  # a clean error, no hang
    assert "lost the server while waiting for job" in err
    assert "Traceback" not in err


def test_server_refuses_public_address_without_token() -> None:
    """Binding a non-loopback address without a token is refused, saying why."""
    done = subprocess.run(
        [str(BIN / "taskrpc-server"), "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "refusing to listen on '0.0.0.0' without a token" in done.stderr


def test_server_reports_a_busy_port(server_process: ServerProcess) -> None:
    """A port already in use is one line and exit 1, not a traceback."""
    port = server_process.url.rsplit(":", 1)[1]
    done = subprocess.run(
        [str(BIN / "taskrpc-server"), "--port", port],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"taskrpc-server: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--url", "foo", "types"], "is not an http:// URL"),
        (["--url", "http://[::1", "types"], "is not an http:// URL"),
        (["--token", "a\nb", "types"], "a token is printable ASCII"),
        (["wait", "--id", "abc", "reverse", "x"], "not both"),
        (["submit", "reverse", "-"], "request body is larger than the server's limit"),
    ],
)
def test_usage_errors(server_process: ServerProcess, args: list[str], says: str) -> None:
    """Bad URLs, tokens, argument mixes and oversized input are usage errors, exit 2."""
    done = run_cli(*args, url=server_process.url, stdin="x" * 2_000_000)
    assert done.returncode == ExitStatus.USAGE, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_codes_are_ascii_digits(server_process: ServerProcess) -> None:
    """TYPE '1' is the code 1; a digit of another script is a name the server refuses."""
    assert JOB_ID.match(submit(server_process.url, "1", "x"))
    for word in ("\u0661", "\u0661\u0662"):  # ARABIC-INDIC DIGIT ONE, then "12"
        done = run_cli("submit", word, "x", url=server_process.url)
        assert done.returncode == ExitStatus.USAGE
        assert "type must be one of" in done.stderr


def test_list_pages(server_process: ServerProcess) -> None:
    """list shows a page and says how to get the next one."""
    ids = [submit(server_process.url, "reverse", f"t{n}") for n in range(3)]
    first = run_cli("list", "--limit", "2", url=server_process.url)
    assert [line.split()[0] for line in first.stdout.splitlines()] == ids[:0:-1]
    url = re.escape(server_process.url)
    more = re.search(rf"more: taskrpc --url {url} list --limit 2 --cursor (\S+)", first.stderr)
    assert more, first.stderr
    rest = run_cli("list", "--limit", "2", "--cursor", more.group(1), url=server_process.url)
    assert [line.split()[0] for line in rest.stdout.splitlines()] == ids[:1]
    assert "more:" not in rest.stderr


def test_a_closed_pipe_is_quiet(server_process: ServerProcess) -> None:
    """When the reader of stdout goes away, no traceback and no error line."""
    for n in range(30):
        submit(server_process.url, "reverse", f"t{n}")
    pipeline = f"{BIN / 'taskrpc'} --url {server_process.url} --json list --limit 30 | head -c 10"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert len(done.stdout) == 10
    assert done.stderr == ""


async def test_ctrl_c_during_submit_still_tells_the_id() -> None:
    """Ctrl+C while submit is in flight: exit 130 and the id of the job it created."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow_submit(request: web.Request) -> web.Response:
        body = await request.json()
        arrived.set()
        await release.wait()  # the answer comes only once the CLI has seen the Ctrl+C
        job = {"id": "abcdefghijklmnop", "type": "reverse", "status": "queued"}
        return web.json_response({"jsonrpc": "2.0", "result": job, "id": body["id"]})

    app = web.Application()
    app.router.add_post("/rpc", slow_submit)
    async with stand_in(app) as url:
        cli = await asyncio.create_subprocess_exec(
            str(BIN / "taskrpc"),
            "--url",
            url,
            "submit",
            "reverse",
            "x",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.wait_for(arrived.wait(), 30)
        cli.send_signal(signal.SIGINT)
        assert cli.stderr is not None
        said = await asyncio.wait_for(cli.stderr.readline(), 30)
        assert b"waiting for the server's answer" in said
        release.set()
        out, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == ExitStatus.INTERRUPTED
    assert out == b""
    assert "job abcdefghijklmnop was submitted and goes on" in err.decode()
    assert f"taskrpc --url {url} wait --id abcdefghijklmnop" in err.decode()
    assert b"Traceback" not in err
