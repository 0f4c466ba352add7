"""JSON-RPC 2.0 over HTTP: the specification's section 7 examples, params, and every error code."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.app import WORKER
from backend.envelope import QuickSignature
from backend.jobs import JOB_TYPES, JobType
from backend.pgstore import PgStore
from backend.protocol import ErrorCode, JobStatus
from backend.rpc import Api
from backend.store import MemoryStore
from tests.conftest import Server, StartServer, until


@pytest.fixture
def server(server_on_each_store: Server) -> Server:
    """Every method test runs on each store: memory, the journal, and PostgreSQL."""
    return server_on_each_store


def error_code(response: dict[str, Any]) -> int:
    code = response["error"]["code"]
    assert isinstance(code, int)
    return code


# -- the specification's examples (section 7), adapted to our methods ----------------------


async def test_positional_params(server: Server) -> None:
    """rpc call with positional parameters: [type, data]."""
    response = await server.call("submit", [1, "пример"])
    assert response["jsonrpc"] == "2.0"
    assert response["id"] == 1
    assert response["result"]["type"] == "reverse"
    assert response["result"]["data"] == "пример"


async def test_named_params(server: Server) -> None:
    """rpc call with named parameters, in any order."""
    response = await server.call("submit", {"data": "кот", "type": "swap"})
    assert response["result"]["type"] == "swap"
    job_id = response["result"]["id"]
    await until(lambda: server.store.get(job_id).status is JobStatus.DONE)
    assert (await server.call("result", {"id": job_id}))["result"] == {
        "id": job_id,
        "result": "окт",
    }


async def test_notification_gets_no_response_but_runs(server: Server) -> None:
    """A notification is executed, and the HTTP answer is 204 with no body."""
    status, body = await server.post({"jsonrpc": "2.0", "method": "submit", "params": [1, "ab"]})
    assert (status, body) == (204, None)
    assert (
        server.store.counts()["queued"]
        + server.store.counts()["running"]
        + server.store.counts()["done"]
        == 1
    )


async def test_method_not_found(server: Server) -> None:
    """rpc call of non-existent method: -32601, with the request's id."""
    status, body = await server.post({"jsonrpc": "2.0", "method": "foobar", "id": "1"})
    assert status == 200
    assert error_code(body) == -32601
    assert body["id"] == "1"


async def test_invalid_json(server: Server) -> None:
    """rpc call with invalid JSON: -32700 and id null."""
    status, body = await server.post(
        b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]'
    )
    assert status == 200
    assert error_code(body) == -32700
    assert body["id"] is None


async def test_invalid_request_object(server: Server) -> None:
    """rpc call with invalid Request object: -32600 and id null."""
    _, body = await server.post({"jsonrpc": "2.0", "method": 1, "params": "bar"})
    assert error_code(body) == -32600
    assert body["id"] is None


async def test_batch_invalid_json(server: Server) -> None:
    """rpc call Batch, invalid JSON: one -32700."""
    _, body = await server.post(
        b'[{"jsonrpc": "2.0", "method": "submit", "params": [1, "a"], "id": "1"},'
        b'{"jsonrpc": "2.0", "method"]'
    )
    assert error_code(body) == -32700


async def test_empty_batch(server: Server) -> None:
    """rpc call with an empty Array: a single -32600, not an array."""
    _, body = await server.post(b"[]")
    assert isinstance(body, dict)
    assert error_code(body) == -32600


@pytest.mark.parametrize("batch", [[1], [1, 2, 3]])
async def test_invalid_batch_elements(server: Server, batch: list[int]) -> None:
    """rpc call with an invalid Batch: one -32600 per element."""
    _, body = await server.post(batch)
    assert isinstance(body, list)
    assert [error_code(item) for item in body] == [-32600] * len(batch)
    assert all(item["id"] is None for item in body)


async def test_mixed_batch(server: Server) -> None:
    """rpc call Batch: valid calls run, each bad element gets its own error, notifications none."""
    batch = [
        {"jsonrpc": "2.0", "method": "submit", "params": [1, "ab"], "id": "1"},
        {"jsonrpc": "2.0", "method": "submit", "params": [2, "ab"]},
        {"jsonrpc": "2.0", "method": "types", "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "status", "params": ["no-such-job"], "id": "9"},
    ]
    status, body = await server.post(batch)
    assert status == 200
    assert [item["id"] for item in body] == ["1", "2", None, "5", "9"]
    assert body[0]["result"]["type"] == "reverse"
    assert [t["name"] for t in body[1]["result"]] == [t.name for t in JOB_TYPES]
    assert [error_code(item) for item in body[2:]] == [-32600, -32601, -32001]
    assert sum(server.store.counts().values()) == 2  # the notification ran too


async def test_batch_of_notifications(server: Server) -> None:
    """rpc call Batch (all notifications): HTTP 204, nothing returned."""
    notification = {"jsonrpc": "2.0", "method": "submit", "params": [1, "ab"]}
    status, body = await server.post([notification, notification])
    assert (status, body) == (204, None)


# -- request structure ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_object",
    [
        {"jsonrpc": "1.0", "method": "types", "id": 1},
        {"method": "types", "id": 1},
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "method": "types", "params": 5, "id": 1},
        {"jsonrpc": "2.0", "method": "types", "id": True},
        {"jsonrpc": "2.0", "method": "types", "id": [1]},
        {"jsonrpc": "2.0", "method": "types", "id": 1, "extra": 1},
        "types",
        None,
    ],
)
async def test_malformed_request_objects(server: Server, request_object: object) -> None:
    """Anything but a well-formed request object is -32600 with a reason in data."""
    _, body = await server.post(json.dumps(request_object))
    assert error_code(body) == -32600
    assert body["error"]["data"]


@pytest.mark.parametrize(
    "raw",
    [
        b"NaN",
        b"[Infinity]",
        b'{"jsonrpc": "2.0", "method": "types", "id": 1e400}',
        b"\xff\xfe",
        b"",
    ],
)
async def test_not_json(server: Server, raw: bytes) -> None:
    """NaN, Infinity, numbers too large for a double, invalid UTF-8 and nothing: -32700."""
    _, body = await server.post(raw)
    assert error_code(body) == -32700


async def test_deeply_nested_json(server: Server) -> None:
    """JSON nested 100 000 levels deep is a parse error, not a crash."""
    _, body = await server.post(b"[" * 100_000 + b"]" * 100_000)
    assert error_code(body) == -32700
    assert (await server.call("types"))["result"]


# -- params ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params", "says"),
    [
        ("submit", {"type": "shuffle", "data": "x"}, "type must be one of 1, 2, 3, 'reverse'"),
        ("submit", {"type": 4, "data": "x"}, "type must be one of"),
        ("submit", {"type": True, "data": "x"}, "type must be one of"),
        ("submit", {"type": "1", "data": "x"}, "type must be one of"),
        ("submit", {"type": 1, "data": 5}, "must be a string (the text to transform), not int"),
        ("submit", {"type": 1, "data": None}, "a string (the text to transform), not NoneType"),
        ("submit", {"type": 1}, "Invalid params: missing a required argument: 'data'"),
        ("submit", [1, "x", 3], "too many positional arguments"),
        ("submit", {"type": 1, "data": "x", "colour": "red"}, "unexpected keyword argument"),
        ("status", {"id": 5}, "id must be a string"),
        ("wait", {"id": "x", "timeout": -1}, "timeout must be a number of seconds"),
        ("list", {"limit": 0}, "limit must be a whole number from 1 to 1000"),
        ("list", {"status": "sleeping"}, "status must be one of 'queued'"),
        ("list", {"cursor": "abc"}, "cursor must be a next_cursor"),
        ("types", [1], "too many positional arguments"),
    ],
)
async def test_bad_params(server: Server, method: str, params: Any, says: str) -> None:
    """Wrong, missing or extra params are -32602 and the message says what is allowed."""
    if method == "wait":
        params["id"] = (await server.call("submit", [1, "x"]))["result"]["id"]
    response = await server.call(method, params)
    assert error_code(response) == -32602
    error = response["error"]
    assert says in f"{error['message']}: {error.get('data', '')}"


async def test_lone_surrogate_is_refused(server: Server) -> None:
    """Text that is not valid Unicode is refused at submit, not when printed."""
    raw = b'{"jsonrpc": "2.0", "method": "submit", "params": [1, "a\\ud800"], "id": 1}'
    _, body = await server.post(raw)
    assert error_code(body) == -32602
    assert "surrogate" in body["error"]["message"]


async def test_echoed_surrogate_stays_valid_json(server: Server) -> None:
    """An id holding a lone surrogate is echoed as valid JSON (escaped), not a 500."""
    raw = b'{"jsonrpc": "2.0", "method": "nope", "id": "\\udc80"}'
    status, body = await server.post(raw)
    assert status == 200
    assert body["id"] == "\udc80"


# -- every application error code -----------------------------------------------------------


async def test_job_not_found(server: Server) -> None:
    """-32001 for an id the server does not know."""
    response = await server.call("status", ["nope"])
    assert error_code(response) == -32001
    assert "no job with id 'nope'" in response["error"]["message"]


async def test_result_not_ready(start_on_each_store: StartServer) -> None:
    """-32002 while the job is queued or running; data carries the status."""
    server = await start_on_each_store(time_scale=1.0)
    first = (await server.call("submit", [3, "x"]))["result"]["id"]
    second = (await server.call("submit", [3, "x"]))["result"]["id"]
    await until(lambda: server.store.get(first).status is JobStatus.RUNNING)
    running, queued = await server.call("result", [first]), await server.call("result", [second])
    assert (error_code(running), error_code(queued)) == (-32002, -32002)
    assert running["error"]["data"]["status"] == "running"
    assert queued["error"]["data"] == {"status": "queued", "position": 1}


async def test_job_failed(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """-32003 for the result of a job whose transform raised; data carries the error."""
    if isinstance(server.store, PgStore):
        pytest.skip("a job type made up in one process cannot travel through a shared database")

    def explode(text: str) -> str:
        raise ValueError("no can do")

    broken = JobType(9, "broken", "always fails", 0.0, explode, len)
    monkeypatch.setattr("backend.store.lookup", lambda key: broken)
    job_id = (await server.call("submit", [1, "x"]))["result"]["id"]
    await until(lambda: server.store.get(job_id).status is JobStatus.FAILED)
    response = await server.call("result", [job_id])
    assert error_code(response) == -32003
    assert response["error"]["data"] == {"error": "ValueError: no can do"}


async def test_job_cancelled(start_on_each_store: StartServer) -> None:
    """-32004 for the result of a cancelled job."""
    server = await start_on_each_store(time_scale=100.0)
    job_id = (await server.call("submit", [1, "x"]))["result"]["id"]
    assert (await server.call("cancel", [job_id]))["result"]["status"] == "cancelled"
    assert error_code(await server.call("result", [job_id])) == -32004


async def test_queue_full(start_on_each_store: StartServer) -> None:
    """-32005 once max_queued jobs wait; the message says so."""
    server = await start_on_each_store(time_scale=1.0, max_queued=1)
    await server.call("submit", [3, "x"])
    await until(lambda: server.store.running is not None)
    assert "result" in await server.call("submit", [3, "x"])
    response = await server.call("submit", [3, "x"])
    assert error_code(response) == -32005
    assert "queue is full" in response["error"]["message"]


async def test_already_finished(server: Server) -> None:
    """-32006 when cancelling a finished job."""
    job_id = (await server.call("submit", [1, "x"]))["result"]["id"]
    await until(lambda: server.store.get(job_id).status is JobStatus.DONE)
    response = await server.call("cancel", [job_id])
    assert error_code(response) == -32006
    assert response["error"]["data"] == {"status": "done"}


async def test_internal_error_hides_details(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception is -32603 with no exception text sent; it is logged instead."""

    def broken(job_id: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(server.store, "get", broken)
    status, body = await server.post(
        {"jsonrpc": "2.0", "method": "status", "params": ["x"], "id": 7}
    )
    assert status == 200
    assert body == {
        "jsonrpc": "2.0",
        "error": {"code": -32603, "message": "Internal error"},
        "id": 7,
    }
    assert "secret" not in json.dumps(body)


def test_error_codes_match_the_specification() -> None:
    """The reserved codes are the specification's (-32603 is internal error, not -32602)."""
    assert {code.name: code.value for code in ErrorCode if code.value <= -32600} == {
        "PARSE_ERROR": -32700,
        "INVALID_REQUEST": -32600,
        "METHOD_NOT_FOUND": -32601,
        "INVALID_PARAMS": -32602,
        "INTERNAL_ERROR": -32603,
    }
    assert [c.value for c in ErrorCode if c.value > -32100] == list(range(-32001, -32010, -1))


# -- other methods -----------------------------------------------------------------------------


async def test_types(server: Server) -> None:
    """types lists code, name, description and nominal delay of each type."""
    result = (await server.call("types"))["result"]
    assert [(t["code"], t["name"], t["delay"]) for t in result] == [
        (1, "reverse", 2.0),
        (2, "swap", 5.0),
        (3, "repeat", 7.0),
    ]
    assert all(t["description"] for t in result)


async def test_discover(server: Server) -> None:
    """rpc.discover describes every method with its params, result and errors."""
    document = (await server.call("rpc.discover"))["result"]
    assert document["openrpc"].startswith("1.")
    methods = {m["name"]: m for m in document["methods"]}
    assert set(methods) == {
        "submit",
        "status",
        "result",
        "wait",
        "cancel",
        "list",
        "types",
        "rpc.discover",
    }
    assert [(p["name"], p["required"]) for p in methods["submit"]["params"]] == [
        ("type", True),
        ("data", True),
    ]
    assert [p["name"] for p in methods["wait"]["params"]] == ["id", "timeout", "status", "position"]
    assert {e["code"] for e in methods["result"]["errors"]} >= {-32001, -32002, -32003, -32004}


async def test_list_pages_newest_first(server: Server) -> None:
    """list returns summaries newest first, a cursor for the next page, and counts."""
    ids = [(await server.call("submit", [1, f"text {n}"]))["result"]["id"] for n in range(5)]
    first = (await server.call("list", {"limit": 3}))["result"]
    assert [job["id"] for job in first["jobs"]] == ids[::-1][:3]
    assert "data" not in first["jobs"][0]
    assert first["jobs"][0]["preview"] == "text 4"
    second = (await server.call("list", {"limit": 3, "cursor": first["next_cursor"]}))["result"]
    assert [job["id"] for job in second["jobs"]] == ids[::-1][3:]
    assert second["next_cursor"] is None
    assert sum(first["counts"].values()) == 5
    third_seq = str(first["jobs"][2]["seq"])  # a job's seq works as a cursor too
    before = (await server.call("list", {"cursor": third_seq}))["result"]
    assert [job["id"] for job in before["jobs"]] == ids[::-1][3:]


async def test_http_errors(server: Server) -> None:
    """Other paths and verbs get short HTTP errors; /healthz says ok."""
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/rpc") as reply:
            assert reply.status == 405
        async with session.get(server.url + "/nope") as reply:
            assert reply.status == 404
        async with session.get(server.url + "/healthz") as reply:
            assert reply.status == 200
            health = await reply.json()
            cluster = {key: health[key] for key in ("role", "runner") if key in health}
            assert health == {
                "status": "ok",
                "queued": 0,
                "running": False,
                "running_id": None,
                "waiting": 0,
                **cluster,  # a server on PostgreSQL says which server runs the jobs
            }


async def test_oversized_body(start_server: StartServer) -> None:
    """A body over the limit is refused with 413 and a JSON-RPC error body."""
    server = await start_server(max_body_bytes=1000)
    status, body = await server.post(b" " * 2000)
    assert status == 413
    assert "larger than the server's limit of 1000 bytes" in body["error"]["message"]


async def test_batch_limit(start_server: StartServer) -> None:
    """A batch longer than max_batch is one -32600 error and none of it runs."""
    server = await start_server(max_batch=3)
    notification = {"jsonrpc": "2.0", "method": "submit", "params": [1, "a"]}
    _, body = await server.post([notification] * 4)
    assert error_code(body) == -32600
    assert body["error"]["data"] == "the batch has 4 requests; the limit is 3"
    assert server.store.counts()["queued"] == 0
    status, _ = await server.post([notification] * 3)
    assert status == 204


async def test_wait_is_capped_by_max_wait(start_on_each_store: StartServer) -> None:
    """A wait longer than max_wait (or the default 30 s) returns at max_wait, without an error."""
    server = await start_on_each_store(time_scale=1000.0, max_wait=0.2)
    job_id = (await server.call("submit", [1, "a"]))["result"]["id"]
    for params in ({"id": job_id, "timeout": 60}, {"id": job_id}):
        start = time.monotonic()
        answer = await server.call("wait", params)
        assert 0.2 <= time.monotonic() - start < 0.8  # cut to max_wait: not 60 s, not 30 s
        assert answer["result"]["status"] in ("queued", "running")


async def test_health_says_when_the_worker_stopped(server: Server) -> None:
    """/healthz answers 503 once the worker is gone, instead of ok."""
    server.app[WORKER].cancel()
    await until(lambda: server.app[WORKER].done())
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as reply:
        assert reply.status == 503
        assert await reply.json() == {"status": "error", "worker": "stopped"}


async def test_argument_errors_say_what_the_method_takes(server: Server) -> None:
    """A missing or unknown argument names the method's params, optional ones in brackets."""
    missing = await server.call("submit", {"type": 1})
    assert missing["error"]["message"] == (
        "Invalid params: missing a required argument: 'data'; submit takes (type, data)"
    )
    extra = await server.call("wait", {"id": "x", "colour": "red"})
    assert extra["error"]["message"] == (
        "Invalid params: got an unexpected keyword argument 'colour'; "
        "wait takes (id, [timeout], [status], [position])"
    )


_NAMES = st.sampled_from(["id", "type", "data", "timeout", "status", "position", "colour"])


def _not_plain(id: object, *more: object, timeout: object = 1, **options: object) -> None:  # noqa: A002
    """Parameters the quick bind leaves to inspect."""


@pytest.mark.parametrize(
    "method", [*Api(MemoryStore()).methods.values(), _not_plain], ids=lambda m: m.__name__
)
@given(
    args=st.lists(st.integers(), max_size=5),
    kwargs=st.dictionaries(_NAMES, st.integers(), max_size=5),
)
def test_quick_signature_binds_as_inspect_does(
    method: Callable[..., object], args: list[int], kwargs: dict[str, int]
) -> None:
    """The quick bind jsonrpcserver uses gives inspect's arguments, or inspect's error."""

    def bound(signature: inspect.Signature, *args: int, **kwargs: int) -> object:
        try:
            return dict(signature.bind(*args, **kwargs).arguments)
        except TypeError as exc:
            return f"TypeError: {exc}"

    plain = inspect.signature(method)
    quick = QuickSignature.from_callable(method)
    assert bound(quick, *args) == bound(plain, *args)
    assert bound(quick, **kwargs) == bound(plain, **kwargs)
    assert bound(quick, *args, **kwargs) == bound(plain, *args, **kwargs)


@pytest.mark.parametrize(
    "limit", [{"max_queued": 3}, {"max_queued_chars": 6}], ids=["jobs", "characters"]
)
async def test_a_batch_cannot_overshoot_max_queued(
    start_on_each_store: StartServer, limit: dict[str, int]
) -> None:
    """A batch of 5 submits with room for 3 (3 jobs, or 6 characters of 2-character texts):
    exactly 3 are accepted, 2 get -32005."""
    server = await start_on_each_store(time_scale=1000.0, **limit)
    batch = [
        {"jsonrpc": "2.0", "method": "submit", "params": ["swap", f"n{n}"], "id": n}
        for n in range(5)
    ]
    _, answers = await server.post(batch)
    codes = ["result" if "result" in a else error_code(a) for a in answers]
    assert sorted(codes, key=str) == sorted(["result"] * 3 + [-32005] * 2, key=str)
    assert server.store.counts()["queued"] + server.store.counts()["running"] == 3
