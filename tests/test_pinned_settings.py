"""Settings behaviours that mutation testing found unpinned (issue 14): every bound at its
edge, every problem's message, the environment's spellings, and the --help text.

Each test here failed with the mutants of backend/settings.py it is about applied.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from backend import __version__
from backend.settings import Settings, is_loopback

COUNTS = (
    "max_body_bytes",
    "max_batch",
    "max_text_chars",
    "max_result_chars",
    "max_queued",
    "max_kept_chars",
    "max_connections",
    "max_subscribers",
    "max_waiters",
    "max_queued_chars",
)
TIMEOUTS = ("head_timeout", "body_timeout", "keepalive_timeout")


def problem(**values: Any) -> str:
    """The message a Settings with `values` is refused with."""
    with pytest.raises(ValueError, match=r"\w") as refused:
        Settings(**values)
    return str(refused.value)


@pytest.mark.parametrize(
    "values",
    [
        {"port": 0},
        {"port": 65535},
        {"time_scale": 0.0},
        {"max_finished": 1},
        {"max_attempts": 1},
        {"max_wait": 1e-9},
        {"db": ":memory:"},
        {"log_level": "debug"},
        {"log_level": "error"},
        {"loop": "asyncio"},
        {"host": "localhost"},
        {"host": "::1"},
        {"host": "127.0.0.2"},
        {"host": "0.0.0.0", "insecure": True},
        {"host": "0.0.0.0", "token": "t"},
        *({name: 1} for name in COUNTS),
        *({name: 1e-9} for name in TIMEOUTS),
    ],
)
def test_each_setting_at_its_bound_is_accepted(values: dict[str, Any]) -> None:
    """The last allowed value of every checked setting is accepted."""
    settings = Settings(**values)
    assert all(getattr(settings, name) == value for name, value in values.items())


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"port": -1}, "port must be 0..65535, not -1"),
        ({"port": 65536}, "port must be 0..65535, not 65536"),
        ({"time_scale": -0.01}, "time scale must be >= 0, not -0.01"),
        ({"time_scale": math.nan}, "time scale must be >= 0, not nan"),
        ({"max_finished": 0}, "max finished must be at least 1 (a result must stay readable)"),
        ({"max_attempts": 0}, "max attempts must be at least 1"),
        ({"db": ""}, "db must be a file name or :memory:, not empty"),
        ({"max_wait": 0.0}, "max wait must be > 0"),
        ({"max_wait": math.nan}, "max wait must be > 0"),
        ({"log_level": "loud"}, "log level must be one of debug, info, warning, error, not 'loud'"),
        ({"loop": "fast"}, "loop must be one of auto, uvloop, asyncio, not 'fast'"),
        ({"token": ""}, "token must not be empty"),
        (
            {"host": "example.com"},
            "refusing to listen on 'example.com' without a token: anyone who can reach it could "
            "read every job; set --token, or pass --insecure if you mean it",
        ),
        *(({name: 0}, f"{name.replace('_', ' ')} must be at least 1") for name in COUNTS),
        *(({name: 0.0}, f"{name.replace('_', ' ')} must be > 0") for name in TIMEOUTS),
    ],
)
def test_each_setting_past_its_bound_says_so(values: dict[str, Any], says: str) -> None:
    """One step past a bound is refused with exactly that setting's message."""
    assert problem(**values) == says


def test_every_problem_is_said_at_once() -> None:
    """Several bad settings are refused together, their messages joined by '; '."""
    assert problem(port=-1, max_batch=0, loop="x") == (
        "port must be 0..65535, not -1; max batch must be at least 1; "
        "loop must be one of auto, uvloop, asyncio, not 'x'"
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("::1", True), ("10.0.0.1", False), ("x", False)],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    """Only localhost and loopback addresses count as this machine; names never resolve."""
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("true", True),
        (" YES ", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_boolean_variables_take_the_usual_spellings(text: str, value: bool) -> None:
    """TASKRPC_ACCESS_LOG and the other switches read yes/no words, any case, spaces around."""
    environ = {"TASKRPC_ACCESS_LOG": text, "TASKRPC_INSECURE": text}
    settings = Settings.from_args([], environ=environ)
    assert (settings.access_log, settings.insecure) == (value, value)


def test_numbers_and_text_from_the_environment() -> None:
    """Whole numbers, decimals and text come from their variables, each as its type."""
    environ = {"TASKRPC_MAX_WAIT": "2.5", "TASKRPC_MAX_BATCH": "7", "TASKRPC_HOST": "localhost"}
    settings = Settings.from_args([], environ=environ)
    assert (settings.max_wait, settings.max_batch, settings.host) == (2.5, 7, "localhost")
    assert isinstance(settings.max_batch, int)


def test_a_boolean_variable_with_another_word_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """TASKRPC_ACCESS_LOG=maybe exits 2 naming the variable, its value and the type wanted."""
    with pytest.raises(SystemExit):
        Settings.from_args([], environ={"TASKRPC_ACCESS_LOG": "maybe"})
    err = capsys.readouterr().err
    assert "TASKRPC_ACCESS_LOG='maybe' is not a valid bool" in err


def test_help_names_every_option_with_its_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--help lists each option with its help and default (db's help says its own), the
    lists say how to repeat them, and the closing lines keep their own line breaks."""
    monkeypatch.setenv("COLUMNS", "300")  # one line an option
    with pytest.raises(SystemExit) as exited:
        Settings.from_args(["--help"], environ={})
    assert exited.value.code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("usage: taskrpc-server ")
    assert "Run the taskrpc job server: JSON-RPC 2.0 over HTTP, one job at a time." in lines
    options: dict[str, str] = {}  # an option's lines, joined: "--port PORT port to listen on…"
    for line in out.split("\n\noptions:\n")[1].split("\n\n")[0].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0]
            options[flag] = " ".join(line.split())
        else:
            options[flag] += " " + " ".join(line.split())
    assert options["--port"] == "--port PORT port to listen on; 0 picks a free one (default: 8765)"
    assert options["--access-log"] == "--access-log log every HTTP request (default: False)"
    batch = "--max-batch MAX_BATCH most requests in one batch (default: 1000)"
    assert options["--max-batch"] == batch
    assert options["--loop"].startswith("--loop {auto,uvloop,asyncio} event loop")
    assert options["--log-level"].startswith("--log-level {debug,info,warning,error} one of")
    assert options["--allow-host"].startswith("--allow-host ALLOW_HOSTS without a token, also")
    assert options["--allow-host"].endswith("'*' turns the Host check off); env: comma-separated")
    assert options["--db"].endswith("(the password may also come from PGPASSWORD or ~/.pgpass)")
    assert lines[-2:] == [
        "Every option can also be set as TASKRPC_<OPTION>, e.g. TASKRPC_TIME_SCALE=0.1.",
        "example: taskrpc-server --port 0 --time-scale 0.1",
    ]


def test_switches_given_as_flags_are_on() -> None:
    """--access-log and --insecure turn their switch on; without them it stays off."""
    settings = Settings.from_args(["--access-log", "--insecure"], environ={})
    assert (settings.access_log, settings.insecure) == (True, True)
    settings = Settings.from_args([], environ={})
    assert (settings.access_log, settings.insecure) == (False, False)


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit environment, TASKRPC_* variables come from the process's."""
    monkeypatch.setenv("TASKRPC_MAX_BATCH", "5")
    assert Settings.from_args([]).max_batch == 5


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints 'taskrpc VERSION'."""
    with pytest.raises(SystemExit):
        Settings.from_args(["--version"], environ={})
    assert capsys.readouterr().out == f"taskrpc {__version__}\n"


def test_a_token_file_is_read_up_to_4096_characters(tmp_path: Path) -> None:
    """A token file is read for at most 4096 characters: a huge file is not loaded whole."""
    secret = tmp_path / "token"
    secret.write_text("t" * 5000)
    assert Settings(token_file=str(secret)).token == "t" * 4096


def test_a_token_given_twice_names_both_ways_to_give_it(tmp_path: Path) -> None:
    """A token and a token file that disagree: the message names the options and the variable."""
    secret = tmp_path / "token"
    secret.write_text("from-the-file\n")
    assert problem(token="other", token_file=str(secret)) == (
        "give the token once: --token (TASKRPC_TOKEN) or --token-file, not both"
    )


def test_an_unreadable_token_file_says_why(tmp_path: Path) -> None:
    """A missing token file names the file and the system's reason; bad UTF-8 says so too."""
    missing = tmp_path / "missing"
    assert problem(token_file=str(missing)) == (
        f"cannot read the token file {str(missing)!r}: No such file or directory"
    )
    garbled = tmp_path / "garbled"
    garbled.write_bytes(b"\xff\xfe")
    assert "can't decode byte 0xff" in problem(token_file=str(garbled))
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    assert problem(token_file=str(empty)) == f"the token file {str(empty)!r} is empty"
