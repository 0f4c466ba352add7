"""`taskrpc` when things go wrong, and on a terminal: each a real subprocess (issues 8 and 12)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from cli.main import ExitStatus
from tests.conftest import BIN, FAST, ServerProcess, run_cli, spawn_server, stand_in

TOKEN = "s3cret-token"
NASTY = "\x1b]2;PWNED\x07 hi \x1b[31mred\u202etxt.exe"  # retitle, recolour, reorder


@pytest.fixture
def token_server() -> Iterator[ServerProcess]:
    """A server that wants TOKEN, at the fast time scale."""
    started = spawn_server("--time-scale", str(FAST), "--token", TOKEN)
    yield started
    started.reap()


@pytest.fixture
def slow_server() -> Iterator[ServerProcess]:
    """A server where reverse takes 2 s: jobs stay queued or running while the CLI looks."""
    started = spawn_server("--time-scale", "1")
    yield started
    started.reap()


def no_token_env() -> dict[str, str]:
    """The environment minus any token the developer's shell may carry."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TASKRPC_TOKEN")}


def on_terminal(
    *args: str,
    feed: bytes = b"",
    stdin_tty: bool = False,
    stderr_tty: bool = False,
    timeout: float = 30,
) -> tuple[int, str, str]:
    """Run `taskrpc ARGS` with stdout (maybe stdin, stderr) on a pseudo-terminal: exit, out, err."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "taskrpc"), *args],
        stdin=slave if stdin_tty else subprocess.DEVNULL,
        stdout=slave,
        stderr=slave if stderr_tty else subprocess.PIPE,
        env={**no_token_env(), "PYTHONIOENCODING": ""},
    )
    os.close(slave)
    if feed:
        os.write(master, feed)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal has gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    err = ""
    if process.stderr is not None:
        err = process.stderr.read().decode()
        process.stderr.close()
    status = process.wait(timeout)
    return status, b"".join(chunks).decode().replace("\r\n", "\n"), err


def submit(url: str, *args: str) -> str:
    done = run_cli("submit", *args, url=url)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def finished(url: str, job_id: str) -> dict[str, object]:
    done = run_cli("--json", "wait", "--id", job_id, url=url)
    assert done.returncode == 0, done.stderr
    job: dict[str, object] = json.loads(done.stdout)
    return job


# -- §1 of issue 12: nothing heavy imported ---------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["submit", "reverse", "x"],
        ["status", "ID"],
        ["result", "ID"],
        ["wait", "--id", "ID"],
        ["list"],
        ["cancel", "ID"],
        ["types"],
        ["completion", "bash"],
    ],
)
def test_no_command_imports_aiohttp(server_process: ServerProcess, command: list[str]) -> None:
    """A one-shot command imports neither aiohttp nor Textual (checked with -X importtime)."""
    job_id = submit(server_process.url, "reverse", "x")
    argv = [job_id if word == "ID" else word for word in command]
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            str(BIN / "taskrpc"),
            "--url",
            server_process.url,
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, ExitStatus.ERROR), done.stderr  # cancel of a done job: 1
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "cli.sync" in imported or command[0] == "completion"
    assert not {name for name in imported if name.split(".")[0] in ("aiohttp", "textual")}


# -- §2 of issue 12: precise errors and hints -------------------------------------------


def test_hints_carry_the_url_and_never_the_token(token_server: ServerProcess) -> None:
    """--timeout's hint can be pasted as is: it names the URL, says 'with your token', hides it."""
    done = run_cli("--token", TOKEN, "wait", "--timeout", "0", "repeat", "x", url=token_server.url)
    assert done.returncode == ExitStatus.NOT_READY, done.stderr
    hint = re.search(r"fetch it later with: (taskrpc .*) \(with your token\)$", done.stderr)
    assert hint, done.stderr
    assert hint.group(1).startswith(f"taskrpc --url {token_server.url} result ")
    assert TOKEN not in done.stderr
    again = run_cli(*hint.group(1).split()[1:], env={"TASKRPC_TOKEN": TOKEN})
    assert again.returncode in (0, ExitStatus.NOT_READY), again.stderr  # it reached the job


def test_list_more_line_keeps_the_query_and_the_url(token_server: ServerProcess) -> None:
    """`more:` repeats --url, --status and --limit, so the next page is the same query's."""
    for n in range(3):
        job_id = submit(token_server.url, "--token", TOKEN, "reverse", f"t{n}")
        run_cli("--token", TOKEN, "wait", "--id", job_id, url=token_server.url)
    first = run_cli(
        "list", "--status", "done", "--limit", "1", "--token", TOKEN, url=token_server.url
    )
    more = re.search(r"^more: (taskrpc .*) \(with your token\)$", first.stderr, re.MULTILINE)
    assert more, first.stderr
    words = more.group(1).split()
    assert words[1:5] == ["--url", token_server.url, "list", "--status"]
    assert "--limit" in words
    assert TOKEN not in first.stderr


def test_lost_server_hint_names_the_url(slow_server: ServerProcess) -> None:
    """When the server goes away during wait, the hint to wait again carries --url."""
    waiter = subprocess.Popen(
        [str(BIN / "taskrpc"), "--url", slow_server.url, "wait", "repeat", "x"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=no_token_env(),
    )
    try:
        assert waiter.stderr is not None
        job_id = waiter.stderr.readline().split()[2]
        slow_server.stop()
        _, err = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
        waiter.communicate()
    assert waiter.returncode == ExitStatus.UNREACHABLE
    assert f"wait again with: taskrpc --url {slow_server.url} wait --id {job_id}" in err


def test_the_curl_url_ending_in_rpc_works(server_process: ServerProcess) -> None:
    """--url http://HOST:PORT/rpc (the README's curl URL) reaches the server."""
    done = run_cli("--url", f"{server_process.url}/rpc", "types")
    assert done.returncode == 0, done.stderr
    assert "reverse" in done.stdout


async def test_a_server_that_is_not_taskrpc_is_exit_3() -> None:
    """Another HTTP server at the URL: 'is URL a taskrpc server?' and exit 3, not 1."""

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text="<html>nothing here</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    async with stand_in(app) as url:
        cli = await asyncio.create_subprocess_exec(
            str(BIN / "taskrpc"),
            "--url",
            f"{url}/elsewhere",
            "status",
            "abc",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == ExitStatus.UNREACHABLE
    assert err.decode() == (
        f"taskrpc: {url}/elsewhere answered HTTP 404, not JSON-RPC: "
        f"is {url}/elsewhere a taskrpc server?\n"
    )
    assert out == b""


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["submit"], "taskrpc: the following arguments are required: TYPE; see 'taskrpc submit"),
        (["frobnicate"], "taskrpc: argument COMMAND: invalid choice: 'frobnicate'"),
        (["list", "--limit", "x"], "taskrpc: argument --limit: invalid int value: 'x'; see"),
        (["--url", "foo", "types"], "taskrpc: argument --url: 'foo' is not an http:// URL"),
        (["--url", "http://h/a b", "types"], "taskrpc: argument --url: 'http://h/a b' has a space"),
        (["--url", "http://h:99999", "types"], "taskrpc: argument --url: 'http://h:99999' has a"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line(args: list[str], line: str) -> None:
    """A usage error is one line naming the command's --help, and exit 2."""
    done = run_cli(*args)
    assert done.returncode == ExitStatus.USAGE
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(line), done.stderr
    assert "--help'" in done.stderr


def test_global_options_work_after_the_command(token_server: ServerProcess) -> None:
    """--token, --url and --json work after the command as well as before it."""
    done = run_cli(
        "submit", "--token", TOKEN, "--url", token_server.url, "--json", "1", "abc",
        env=no_token_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["type"] == "reverse"


def test_no_command_lists_the_commands() -> None:
    """`taskrpc` alone lists the commands, as git does, and exits 2."""
    done = run_cli()
    assert done.returncode == ExitStatus.USAGE
    assert done.stderr.startswith("taskrpc: a command is required\n")
    for command in ("submit", "status", "result", "wait", "list", "cancel", "types", "completion"):
        assert re.search(rf"^  {command} +\S", done.stderr, re.MULTILINE), command


def test_an_option_value_that_names_a_command_stays_a_value(server_process: ServerProcess) -> None:
    """`--token list types` runs `types`: the parser built for the first command-like word
    fails, and the whole parser reads the line as it always has."""
    done = run_cli("--token", "list", "--json", "types", url=server_process.url)
    assert done.returncode == 0, done.stderr
    assert "reverse" in {found["name"] for found in json.loads(done.stdout)}


@pytest.mark.parametrize("help_option", ["-h", "--help", "--he"])
def test_help_before_the_command_lists_every_command(help_option: str) -> None:
    """`taskrpc -h status` is the main help, listing every command, not only `status`."""
    done = run_cli(help_option, "status")
    assert done.returncode == 0, done.stderr
    for command in ("submit", "status", "result", "wait", "list", "cancel", "types", "completion"):
        assert re.search(rf"^    {command}\b", done.stdout, re.MULTILINE), command


def test_stdin_on_a_terminal_says_it_is_reading(server_process: ServerProcess) -> None:
    """`submit TYPE -` with a terminal on stdin says how to end the text, then reads it."""
    status, out, err = on_terminal(
        "--url", server_process.url, "submit", "reverse", "-", feed=b"abc\n\x04", stdin_tty=True
    )
    assert status == 0, err
    assert err == "taskrpc: reading DATA from standard input; end with Ctrl+D\n"
    job_id = out.strip().splitlines()[-1]
    assert finished(server_process.url, job_id)["result"] == "cba"


@pytest.mark.parametrize("args", [["--data", "-"], ["--", "-"]])
def test_a_literal_dash_can_be_sent(server_process: ServerProcess, args: list[str]) -> None:
    """`--data -` and `-- -` send the text '-' instead of reading standard input."""
    job_id = submit(server_process.url, "reverse", *args)
    assert finished(server_process.url, job_id)["data"] == "-"


def test_the_live_line_says_the_time_once(slow_server: ServerProcess) -> None:
    """On a terminal, wait's live line of a running job does not repeat the time elapsed."""
    status, out, _ = on_terminal(
        "--url", slow_server.url, "wait", "reverse", "abc", stderr_tty=True
    )
    assert status == 0, out
    assert out.endswith("\ncba\n")
    frames = [frame for frame in out.split("\r\x1b[K") if "running — " in frame]
    assert frames, out
    assert not [frame for frame in frames if "elapsed" in frame], frames


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        (["status", "nosuchjob"], -32001, ExitStatus.ERROR),
        (["submit", "shuffle", "x"], -32602, ExitStatus.USAGE),
        (["list", "--limit", "x"], None, ExitStatus.USAGE),
    ],
)
def test_json_errors_are_one_json_object(
    server_process: ServerProcess, args: list[str], code: int | None, status: int
) -> None:
    """With --json an error is one JSON object on stderr: its code, message, data and exit."""
    done = run_cli("--json", *args, url=server_process.url)
    assert done.returncode == status
    assert done.stderr.count("\n") == 1
    error = json.loads(done.stderr)
    assert set(error) == {"error", "exit"}
    assert set(error["error"]) == {"code", "message", "data"}
    assert (error["error"]["code"], error["exit"]) == (code, status)
    assert error["error"]["message"]


def test_short_durations_keep_their_precision(server_process: ServerProcess) -> None:
    """A job shorter than 10 s shows its time to the hundredth: `done in 0.02 s`."""
    job_id = submit(server_process.url, "reverse", "x")
    finished(server_process.url, job_id)
    done = run_cli("status", job_id, url=server_process.url)
    assert re.fullmatch(r"done in \d\.\d\d s\n", done.stdout), done.stdout


# -- §2 of issue 8: job text never reaches a terminal as control sequences ---------------


def test_result_on_a_terminal_is_escaped_and_exact_elsewhere(
    server_process: ServerProcess,
) -> None:
    """result: visible escapes on a terminal, the exact text into a pipe, and --raw as asked."""
    job_id = submit(server_process.url, "reverse", "--data", NASTY[::-1])
    finished(server_process.url, job_id)
    status, shown, _ = on_terminal("--url", server_process.url, "result", job_id)
    assert status == 0
    assert shown == "\\x1b]2;PWNED\\x07 hi \\x1b[31mred\\u202etxt.exe\n"
    piped = run_cli("result", job_id, url=server_process.url)
    assert piped.stdout == NASTY + "\n"
    status, raw, _ = on_terminal("--url", server_process.url, "result", "--raw", job_id)
    assert raw == NASTY + "\n"


def test_wait_on_a_terminal_is_escaped(server_process: ServerProcess) -> None:
    """wait prints the result escaped on a terminal too, and its status lines never raw."""
    status, shown, err = on_terminal(
        "--url", server_process.url, "wait", "reverse", "--data", NASTY[::-1]
    )
    assert status == 0, err
    assert shown.endswith("\\x1b]2;PWNED\\x07 hi \\x1b[31mred\\u202etxt.exe\n")
    assert "\x1b]" not in shown + err


def test_list_status_and_errors_never_show_raw_controls(server_process: ServerProcess) -> None:
    """list previews, error lines and JSON on a terminal carry escapes, never the characters."""
    submit(server_process.url, "reverse", "--data", NASTY)
    listed = run_cli("list", url=server_process.url)
    assert "\\x1b]2;PWNED\\x07" in listed.stdout
    assert "\x1b" not in listed.stdout
    assert "\u202e" not in listed.stdout
    missing = run_cli("status", "no\x1b]2;PWNED\x07", url=server_process.url)
    assert missing.returncode == ExitStatus.ERROR
    assert "\x1b" not in missing.stderr
    assert "\\x1b" in missing.stderr
    status, shown, _ = on_terminal("--url", server_process.url, "--json", "list")
    assert status == 0
    assert "\x1b]" not in shown
    assert "\u202e" not in shown
    assert "\\u001b]2;PWNED" in shown


# -- §5 of issue 8: tokens that do not leak ----------------------------------------------


def test_token_file_and_its_environment_variable(
    token_server: ServerProcess, tmp_path: Path
) -> None:
    """--token-file and TASKRPC_TOKEN_FILE give the token; without one the server refuses."""
    secret = tmp_path / "token"
    secret.write_text(f"{TOKEN}\n")
    env = no_token_env()
    flag = run_cli("--token-file", str(secret), "types", url=token_server.url, env=env)
    assert flag.returncode == 0, flag.stderr
    from_env = run_cli(
        "types", url=token_server.url, env={**env, "TASKRPC_TOKEN_FILE": str(secret)}
    )
    assert from_env.returncode == 0, from_env.stderr
    refused = subprocess.run(
        [str(BIN / "taskrpc"), "--url", token_server.url, "types"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == ExitStatus.USAGE
    assert "--token-file" in refused.stderr


def test_an_unreadable_token_file_is_one_line(tmp_path: Path) -> None:
    """A missing token file is a usage error naming the file, never a traceback."""
    done = run_cli("--token-file", str(tmp_path / "missing"), "types", env=no_token_env())
    assert done.returncode == ExitStatus.USAGE
    assert done.stderr.count("\n") == 1
    assert "cannot read the token file" in done.stderr


# -- §3 of issue 12: completion ----------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    """`taskrpc completion SHELL` prints a script that knows the commands and options."""
    done = run_cli("completion", shell)
    assert done.returncode == 0, done.stderr
    for word in ("submit", "--token-file", "wait"):
        assert word in done.stdout
    if shell == "bash":
        checked = subprocess.run(["bash", "-n"], input=done.stdout, text=True, check=False)
        assert checked.returncode == 0


def test_an_unknown_error_code_keeps_its_code_and_busy_maps_to_server_busy() -> None:
    """from_error: -32008 gives ServerBusy; a code this side does not know keeps its code."""
    from backend.protocol import ErrorCode, RpcError, ServerBusy

    busy = RpcError.from_error(-32008, "server busy", {"id": "x"})
    assert isinstance(busy, ServerBusy)
    assert busy.code == ErrorCode.SERVER_BUSY
    assert busy.data == {"id": "x"}
    unknown = RpcError.from_error(-32077, "a newer server's error")
    assert type(unknown) is RpcError
    assert unknown.code == -32077
    assert unknown.message == "a newer server's error"


def test_wait_asks_again_when_the_server_is_busy() -> None:
    """`taskrpc wait` against a server at its limit of waits retries and says so, no error."""
    import http.client
    import socket

    server = spawn_server("--time-scale", "1000", "--max-waiters", "1")
    holder = None
    try:
        host, port = server.url.removeprefix("http://").split(":")
        submitted = run_cli("submit", "reverse", "held", "--json", url=server.url)
        job_id = json.loads(submitted.stdout)["id"]

        def wait_body(timeout: float) -> bytes:
            request = {"jsonrpc": "2.0", "method": "wait", "params": [job_id, timeout], "id": 1}
            return json.dumps(request).encode()

        def busy() -> bool:
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            connection.request("POST", "/rpc", wait_body(0), {"Content-Type": "application/json"})
            answer = json.loads(connection.getresponse().read())
            connection.close()
            return bool(answer.get("error", {}).get("code") == -32008)

        body = wait_body(120)  # the one wait the server takes, held by a raw socket
        holder = socket.create_connection((host, int(port)))
        holder.sendall(
            b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        deadline = time.monotonic() + 10
        while not busy():
            assert time.monotonic() < deadline, "the held wait never took the server's place"
            time.sleep(0.02)
        done = run_cli("wait", "--id", job_id, "--timeout", "1.5", url=server.url)
        assert "server busy; asking again" in done.stderr, done.stderr
        assert done.returncode == ExitStatus.NOT_READY, done.stderr  # ran out, not an error
    finally:
        if holder is not None:
            holder.close()
        server.reap()
