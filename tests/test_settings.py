"""Settings: flags over TASKRPC_* variables over defaults, each checked."""

from __future__ import annotations

import pytest

from backend.settings import Settings


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
