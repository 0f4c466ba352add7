"""The event loop the server runs: uvloop where installed, asyncio's own when told."""

from __future__ import annotations

import sys
import urllib.request

import pytest

from backend.loops import LoopUnavailable, choose
from tests.conftest import spawn_server

needs_uvloop = pytest.mark.skipif(
    sys.platform not in ("linux", "darwin"), reason="uvloop is a dependency on Linux and macOS"
)


def _loop_line(*args: str, env: dict[str, str] | None = None) -> str:
    """Start the server, make one request, stop it: the line that names its event loop."""
    started = spawn_server("--db", ":memory:", *args, env=env)
    try:
        with urllib.request.urlopen(f"{started.url}/healthz", timeout=10) as response:
            assert response.status == 200
        assert started.stop() == 0
        assert started.process.stderr is not None
        lines = [line for line in started.process.stderr if "event loop:" in line]
    finally:
        started.reap()
    assert len(lines) == 1, lines
    return lines[0]


@needs_uvloop
def test_uvloop_by_default_and_said_in_the_log() -> None:
    """By default the server runs on uvloop and logs it at info."""
    assert "INFO taskrpc: event loop: uvloop " in _loop_line()


@needs_uvloop
def test_asyncio_loop_when_told() -> None:
    """`--loop asyncio` and TASKRPC_LOOP=asyncio run asyncio's own loop."""
    assert _loop_line("--loop", "asyncio").rstrip().endswith("event loop: asyncio")
    assert _loop_line(env={"TASKRPC_LOOP": "asyncio"}).rstrip().endswith("event loop: asyncio")


def test_uvloop_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for uvloop where it cannot be imported says so in one line; auto falls back."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    with pytest.raises(LoopUnavailable, match="uvloop is not installed"):
        choose("uvloop")
    assert choose("auto")[0] == "asyncio"
