"""The token rule, and refusing to listen publicly without one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.protocol import Method
from backend.settings import Settings, is_loopback
from cli.client import Client
from cli.main import ExitStatus
from tests.conftest import ServerProcess, StartServer, run_cli, spawn_server

TOKEN = "s3cret-token"
ALL_METHODS = [m.value for m in Method]


def request(method: str, params: object = None) -> dict[str, object]:
    body: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        body["params"] = params
    return body


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", f"bearer {TOKEN}", TOKEN, f"Bearer {TOKEN}x"]
)
async def test_missing_or_wrong_token_is_refused(
    start_server: StartServer, method: str, header: str | None
) -> None:
    """Every method, without the exact bearer token, gets 401 and a JSON-RPC error body."""
    server = await start_server(token=TOKEN)
    headers = {} if header is None else {"Authorization": header}
    status, body = await server.post(request(method, {"id": "x"}), headers)
    assert status == 401
    assert body["error"]["code"] == -32007
    assert "token" in body["error"]["message"]
    assert server.store.counts() == dict.fromkeys(server.store.counts(), 0)


async def test_batch_without_token_is_refused(start_server: StartServer) -> None:
    """A batch without the token is refused whole: nothing in it runs."""
    server = await start_server(token=TOKEN)
    batch = [request("submit", [1, "a"]), request("submit", [2, "b"])]
    status, _ = await server.post(batch)
    assert status == 401
    assert server.store.queued == 0


async def test_right_token_is_accepted(start_server: StartServer) -> None:
    """With the right token single calls and batches work; the client library sends it."""
    server = await start_server(token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, body = await server.post([request("types"), request("submit", [1, "ab"])], auth)
    assert status == 200
    assert len(body) == 2
    async with Client(server.url, TOKEN) as client:
        assert len(await client.types()) == 3


async def test_health_without_the_token_is_only_a_probe(start_server: StartServer) -> None:
    """/healthz answers a probe without the token, but says only that the server is up."""
    import aiohttp

    server = await start_server(token=TOKEN)
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as reply:
        assert reply.status == 200
        assert json.loads(await reply.read()) == {"status": "ok"}


def test_cli_token_from_flag_and_environment() -> None:
    """The CLI sends --token or TASKRPC_TOKEN; without it, one line and exit 2."""
    server = spawn_server("--time-scale", "0", env={"TASKRPC_TOKEN": TOKEN})
    try:
        refused = run_cli("types", url=server.url, env={"TASKRPC_TOKEN": ""})
        assert refused.returncode == ExitStatus.USAGE
        assert "refused the token" in refused.stderr
        assert run_cli("--token", TOKEN, "types", url=server.url).returncode == 0
        assert run_cli("types", url=server.url, env={"TASKRPC_TOKEN": TOKEN}).returncode == 0
    finally:
        server.reap()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    """Only loopback addresses count as private to this machine."""
    assert is_loopback(host) is loopback


def test_public_address_needs_token_or_insecure() -> None:
    """Listening on a public address needs a token, or an explicit --insecure."""
    with pytest.raises(ValueError, match=r"refusing to listen on '0.0.0.0' without a token"):
        Settings(host="0.0.0.0")
    assert Settings(host="0.0.0.0", token="t").token == "t"
    assert Settings(host="0.0.0.0", insecure=True).insecure


def log_after_stop(server: ServerProcess) -> str:
    """Stop `server` and return everything it logged (its stderr)."""
    server.stop()
    assert server.process.stderr is not None
    errors = server.process.stderr.read()
    server.reap()
    return errors


def test_token_file_keeps_the_token_out_of_ps(tmp_path: Path) -> None:
    """With --token-file the token is not in /proc/PID/cmdline, and the server requires it."""
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    server = spawn_server("--time-scale", "0", "--token-file", str(secret))
    try:
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert TOKEN.encode() not in cmdline
        assert run_cli("types", url=server.url, env={"TASKRPC_TOKEN": ""}).returncode != 0
        assert run_cli("types", url=server.url, env={"TASKRPC_TOKEN": TOKEN}).returncode == 0
    finally:
        errors = log_after_stop(server)
    assert "visible" not in errors


def test_token_on_the_command_line_is_warned_about() -> None:
    """--token still works, but the server logs that every user can read it in ps."""
    server = spawn_server("--time-scale", "0", "--token", TOKEN)
    try:
        assert run_cli("types", url=server.url, env={"TASKRPC_TOKEN": TOKEN}).returncode == 0
    finally:
        errors = log_after_stop(server)
    assert "WARNING" in errors
    assert "--token is visible to every user" in errors
    assert TOKEN not in errors
