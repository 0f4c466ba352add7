"""cli.entry: the `taskrpc` program ends with os._exit, and loses nothing a normal exit keeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import BIN, ServerProcess, run_cli


def test_block_buffered_output_is_all_written(server_process: ServerProcess) -> None:
    """Into a pipe, without PYTHONUNBUFFERED, every byte printed arrives and the status is 0."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [str(BIN / "taskrpc"), "--url", server_process.url, "--json", "types"],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert {found["name"] for found in json.loads(done.stdout)} >= {"reverse", "swap"}


def test_exit_functions_run_and_the_status_is_kept(server_process: ServerProcess) -> None:
    """Functions registered with atexit (coverage's, say) run before the process ends."""
    code = (
        "import atexit, sys; atexit.register(print, 'exit functions ran');"
        f"sys.argv = ['taskrpc', '--url', {server_process.url!r}, 'status', 'nosuchjob'];"
        "from cli.entry import run; run()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr  # an unknown id
    assert done.stdout == "exit functions ran\n"


def test_the_status_of_each_outcome_reaches_the_shell(server_process: ServerProcess) -> None:
    """The process's exit status is main()'s: 0, 1 (unknown id), 2 (usage), 3 (unreachable)."""
    assert run_cli("types", url=server_process.url).returncode == 0
    assert run_cli("status", "nosuchjob", url=server_process.url).returncode == 1
    assert run_cli("status", url=server_process.url).returncode == 2
    assert run_cli("types", url="http://127.0.0.1:9").returncode == 3
