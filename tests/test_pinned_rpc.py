"""RPC behaviours that mutation testing found unpinned (issue 14): the OpenRPC document a
client reads, and the messages of the parameter checks.

Each test here failed with the mutants it names applied (`mutmut apply NAME`, TESTING.md).
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from backend import __version__
from backend.protocol import ErrorCode
from backend.rpc import PAGE_SLICE, Api
from backend.store import Limits, MemoryStore
from tests.conftest import Server

JOB = {"$ref": "#/components/schemas/Job"}


async def discover(server: Server) -> dict[str, Any]:
    """The OpenRPC document, as a client reads it."""
    document: dict[str, Any] = (await server.call("rpc.discover"))["result"]
    return document


async def test_the_openrpc_document_names_its_version_and_the_server(server: Server) -> None:
    """rpc.discover is OpenRPC 1.2.6, titled taskrpc, at the server's version, with the
    Job and JobSummary schemas its results refer to."""
    document = await discover(server)
    assert document["openrpc"] == "1.2.6"
    assert document["info"] == {"title": "taskrpc", "version": __version__}
    schemas = document["components"]["schemas"]
    assert set(schemas) == {"Job", "JobSummary"}
    assert "attempts" in schemas["Job"]["properties"]
    assert "preview" in schemas["JobSummary"]["properties"]


async def test_each_openrpc_method_is_described_in_full(server: Server) -> None:
    """Every method has its docstring's first line as summary, takes params by name or by
    position, gives each param a schema and says whether it is required, names its result,
    and lists its errors with the auth error last."""
    methods = Api(MemoryStore(Limits())).methods
    described = {m["name"]: m for m in (await discover(server))["methods"]}
    assert list(described) == list(methods)
    for name, method in methods.items():
        entry = described[name]
        assert entry["summary"] == inspect.getdoc(method).splitlines()[0], name  # type: ignore[union-attr]
        assert entry["summary"], name
        assert entry["paramStructure"] == "either", name
        signature = inspect.signature(method).parameters.values()
        assert [(p["name"], p["required"]) for p in entry["params"]] == [
            (p.name, p.default is inspect.Parameter.empty) for p in signature
        ], name
        assert all(p["schema"] for p in entry["params"]), name
        assert entry["result"]["name"] == "result", name
        assert entry["result"]["schema"], name
        assert entry["errors"][-1]["code"] == ErrorCode.UNAUTHORIZED, name
        assert all(e["message"] for e in entry["errors"]), name


async def test_openrpc_params_results_and_errors_of_wait(server: Server) -> None:
    """wait: only the id is required, the timeout is seconds >= 0, the result is a Job, and
    its errors are the id's, the busy server's and the auth error, in that order."""
    wait = {m["name"]: m for m in (await discover(server))["methods"]}["wait"]
    assert [(p["name"], p["required"]) for p in wait["params"]] == [
        ("id", True),
        ("timeout", False),
        ("status", False),
        ("position", False),
    ]
    assert wait["params"][1]["schema"]["minimum"] == 0
    assert wait["result"] == {"name": "result", "schema": JOB}
    assert [e["code"] for e in wait["errors"]] == [
        ErrorCode.INVALID_PARAMS,
        ErrorCode.JOB_NOT_FOUND,
        ErrorCode.SERVER_BUSY,
        ErrorCode.UNAUTHORIZED,
    ]
    types = {m["name"]: m for m in (await discover(server))["methods"]}["types"]
    assert types["params"] == []
    assert [e["code"] for e in types["errors"]] == [ErrorCode.UNAUTHORIZED]


@pytest.mark.parametrize(
    ("method", "params", "says"),
    [
        ("wait", {"position": -1}, "position must be a whole number >= 0, not -1"),
        ("wait", {"position": True}, "position must be a whole number >= 0, not True"),
        ("wait", {"timeout": True}, "timeout must be a number of seconds >= 0, not True"),
        ("wait", {"timeout": "1"}, "timeout must be a number of seconds >= 0, not '1'"),
        ("wait", {"status": "done!"}, "status must be one of 'queued', 'running', 'done'"),
        ("list", {"limit": 1001}, "limit must be a whole number from 1 to 1000, not 1001"),
        ("list", {"limit": 1.0}, "limit must be a whole number from 1 to 1000, not 1.0"),
        ("list", {"cursor": 12}, "cursor must be a next_cursor from an earlier page"),
        ("list", {"cursor": "1" * 19}, "cursor must be a next_cursor"),
        ("list", {"cursor": "\u0661\u0662"}, "cursor must be a next_cursor"),
        ("list", {"cursor": "12a"}, "cursor must be a next_cursor"),
    ],
)
async def test_each_param_check_says_its_name_and_its_bounds(
    server: Server, method: str, params: dict[str, Any], says: str
) -> None:
    """A param out of bounds is -32602 naming the param, what is allowed and what came."""
    if method == "wait":
        params["id"] = (await server.call("submit", [1, "x"]))["result"]["id"]
    error = (await server.call(method, params))["error"]
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert says in error["message"], error


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("wait", {"position": 0, "status": "running"}),
        ("wait", {"timeout": 10**400, "status": "running"}),
        ("wait", {"timeout": 0.0}),
        ("list", {"limit": 1000}),
        ("list", {"limit": 1}),
        ("list", {"cursor": "9" * 18}),
    ],
)
async def test_params_at_their_bounds_are_accepted(
    server: Server, method: str, params: dict[str, Any]
) -> None:
    """The last allowed value of each param is accepted: 18 cursor digits, limit 1 and 1000,
    position 0, a timeout of 0 and one beyond a double."""
    if method == "wait":
        params["id"] = (await server.call("submit", [3, "x"]))["result"]["id"]
    response = await server.call(method, params)
    assert "result" in response, response


async def _listed(api: Api, **params: Any) -> dict[str, Any]:
    """What `list` answers, in process."""
    answer: dict[str, Any] = (await api.list_jobs(**params))._value.result
    return answer


async def test_a_list_page_longer_than_a_slice_has_every_job() -> None:
    """A page built in several slices (between yields) holds all its jobs, newest first."""
    store = MemoryStore(Limits())
    api = Api(store)
    ids = [(await store.submit("swap", f"text {n}")).id for n in range(PAGE_SLICE + 10)]
    page = await _listed(api, limit=PAGE_SLICE + 10)
    assert [job["id"] for job in page["jobs"]] == ids[::-1]


async def test_the_last_page_of_a_status_has_no_cursor_whatever_older_jobs_exist() -> None:
    """next_cursor looks for more jobs of the status asked, not of any status."""
    store = MemoryStore(Limits())
    api = Api(store)
    oldest = await store.submit("swap", "oldest")
    for n in range(2):
        await store.submit("swap", f"text {n}")
    await store.cancel(oldest.id)
    page = await _listed(api, status="queued", limit=2)
    assert len(page["jobs"]) == 2
    assert page["next_cursor"] is None
