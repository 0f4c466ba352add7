"""Settings: flags over TASKRPC_* variables over defaults, each checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.settings import Settings, token_on_command_line


def test_defaults() -> None:
    """With nothing given, the documented defaults apply."""
    settings = Settings.from_args([], environ={})
    assert (settings.host, settings.port, settings.time_scale) == ("127.0.0.1", 8765, 1.0)
    assert (settings.max_text_chars, settings.max_result_chars) == (10_000, 1_000_000)
    assert (settings.max_queued, settings.max_finished) == (100_000, 10_000)
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.token is None
    assert settings.access_log is False


def test_environment_then_flags() -> None:
    """TASKRPC_* variables set values; flags win over them."""
    environ = {"TASKRPC_PORT": "9000", "TASKRPC_TIME_SCALE": "0.5", "TASKRPC_ACCESS_LOG": "yes"}
    settings = Settings.from_args(["--time-scale", "0"], environ=environ)
    assert (settings.port, settings.time_scale, settings.access_log) == (9000, 0.0, True)


@pytest.mark.parametrize(
    ("argv", "environ", "says"),
    [
        (["--port", "70000"], {}, "port must be 0..65535"),
        (["--time-scale", "-1"], {}, "time scale must be >= 0"),
        (["--max-queued", "0"], {}, "max queued must be at least 1"),
        ([], {"TASKRPC_PORT": "eighty"}, "TASKRPC_PORT='eighty' is not a valid int"),
        (["--log-level", "loud"], {}, "invalid choice"),
        (["--loop", "fast"], {}, "invalid choice"),
        ([], {"TASKRPC_LOOP": "fast"}, "loop must be one of auto, uvloop, asyncio"),
        (["--token", ""], {}, "token must not be empty"),
    ],
)
def test_bad_settings_are_usage_errors(
    argv: list[str], environ: dict[str, str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad flag or variable exits 2 with a message saying what is wrong."""
    with pytest.raises(SystemExit) as exited:
        Settings.from_args(argv, environ=environ)
    assert exited.value.code == 2
    assert says in capsys.readouterr().err


def test_allow_lists_from_repeated_flags_or_comma_separated_environment() -> None:
    """--allow-host and --allow-origin repeat; their variables are comma-separated lists."""
    flags = ["--allow-host", "a.lan", "--allow-host", "b.lan", "--allow-origin", "https://x.io"]
    settings = Settings.from_args(flags, environ={"TASKRPC_ALLOW_HOSTS": "ignored"})
    assert settings.allow_hosts == ("a.lan", "b.lan")
    assert settings.allow_origins == ("https://x.io",)
    environ = {"TASKRPC_ALLOW_HOSTS": "a.lan, b.lan,", "TASKRPC_ALLOW_ORIGINS": "*"}
    settings = Settings.from_args([], environ=environ)
    assert (settings.allow_hosts, settings.allow_origins) == (("a.lan", "b.lan"), ("*",))


def test_token_from_a_file(tmp_path: Path) -> None:
    """--token-file or TASKRPC_TOKEN_FILE: the file's text without surrounding whitespace."""
    secret = tmp_path / "token"
    secret.write_text(" s3cret\n")
    assert Settings.from_args(["--token-file", str(secret)], environ={}).token == "s3cret"
    environ = {"TASKRPC_TOKEN_FILE": str(secret)}
    assert Settings.from_args([], environ=environ).token == "s3cret"


@pytest.mark.parametrize(
    ("content", "argv", "says"),
    [
        (None, [], "cannot read the token file"),
        ("\n", [], "is empty"),
        ("s3cret\n", ["--token", "other"], "not both"),
    ],
)
def test_a_bad_token_file_is_a_usage_error(
    tmp_path: Path,
    content: str | None,
    argv: list[str],
    says: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A missing or empty token file, or a token given twice, exits 2 saying so."""
    secret = tmp_path / "token"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(SystemExit) as exited:
        Settings.from_args(["--token-file", str(secret), *argv], environ={})
    assert exited.value.code == 2
    assert says in capsys.readouterr().err


def test_token_on_the_command_line_is_noticed() -> None:
    """The server can tell a --token on its command line (visible in ps) from other sources."""
    assert token_on_command_line(["--port", "0", "--token", "x"])
    assert token_on_command_line(["--token=x"])
    assert not token_on_command_line(["--token-file", "/dev/null", "--port", "0"])


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--port", "x"], "argument --port: invalid int value: 'x'"),
        (["--host", "0.0.0.0"], "refusing to listen on '0.0.0.0' without a token"),
    ],
)
def test_a_bad_option_is_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad option or setting exits 2 with one line naming it, not the usage block."""
    with pytest.raises(SystemExit) as exited:
        Settings.from_args(argv, environ={})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"taskrpc-server: {says}")
    assert err.endswith("; see 'taskrpc-server --help'\n")
    assert err.count("\n") == 1
