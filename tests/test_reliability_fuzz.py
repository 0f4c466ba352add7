"""Fuzzing the real server process: arbitrary JSON and raw bytes as request bodies.

Whatever the body, the server answers with a well-formed JSON-RPC response (or none,
for notifications), never a 5xx, never a dropped connection, and keeps serving.
"""

from __future__ import annotations

import http.client
import json
import signal
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.protocol import HEALTH_PATH, RPC_PATH, ErrorCode, Method
from tests.conftest import ServerProcess, spawn_server

EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KNOWN_CODES = frozenset(int(code) for code in ErrorCode)
PARAM_NAMES = ("id", "type", "data", "timeout", "status", "position", "limit", "cursor")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
request_ids = (
    st.none()
    | st.integers(-(2**63), 2**63)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False)
)
params = st.dictionaries(
    st.sampled_from(PARAM_NAMES) | st.text(max_size=6), json_values, max_size=4
) | st.lists(json_values, max_size=4)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A structurally valid JSON-RPC request (with or without id) for a random method."""
    request: dict[str, Any] = {
        "jsonrpc": "2.0",
        "method": draw(st.sampled_from([m.value for m in Method]) | st.text(max_size=10)),
    }
    if draw(st.booleans()):
        request["params"] = draw(params)
    if draw(st.integers(0, 4)):  # mostly calls, sometimes notifications
        request["id"] = draw(request_ids)
    return request


labelled_requests = st.tuples(st.just(True), requests())  # (known valid, request)
labelled_values = st.tuples(st.just(False), json_values)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[ServerProcess]:
    """One server process for the whole module; it must survive every example and exit cleanly."""
    started = spawn_server("--time-scale", "0", "--max-wait", "0.05", "--log-level", "warning")
    try:
        yield started
    finally:
        alive = started.process.poll() is None
        code = started.stop(signal.SIGTERM) if alive else started.process.returncode
        assert started.process.stderr is not None
        assert started.process.stdout is not None
        errors = started.process.stderr.read()
        started.process.stderr.close()
        started.process.stdout.close()
        assert alive, f"the server died during fuzzing: {errors}"
        assert code == 0, errors
        assert "Traceback" not in errors, errors


def exchange(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, str, bytes]:
    """One HTTP request on a fresh connection: (status, content type, body). Raises if dropped."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        reply = connection.getresponse()
        return reply.status, reply.getheader("Content-Type") or "", reply.read()
    finally:
        connection.close()


def check_response(response: object) -> None:
    """`response` is one well-formed JSON-RPC 2.0 response object, and not an internal error."""
    assert isinstance(response, dict), response
    assert response.get("jsonrpc") == "2.0", response
    assert "id" in response, response
    assert not isinstance(response["id"], bool | list | dict), response
    assert ("result" in response) != ("error" in response), response
    assert set(response) <= {"jsonrpc", "id", "result", "error"}, response
    if "error" in response:
        error = response["error"]
        assert isinstance(error, dict), response
        assert set(error) <= {"code", "message", "data"}, response
        assert error.get("code") in KNOWN_CODES, response
        assert error["code"] != ErrorCode.INTERNAL_ERROR, response
        assert isinstance(error.get("message"), str), response
        assert error["message"], response


def answer(url: str, body: bytes) -> Any:
    """POST `body`; check the answer is well-formed, then that the server still serves."""
    status, content_type, raw = exchange(url, "POST", RPC_PATH, body)
    assert status in (200, 204), (status, raw[:500])
    if status == 204:
        assert raw == b""
        decoded: Any = None
    else:
        assert content_type.startswith("application/json"), content_type
        decoded = json.loads(raw)
        if isinstance(decoded, list):
            assert decoded, "an empty batch answer must be sent as no answer (204)"
            for response in decoded:
                check_response(response)
        else:
            check_response(decoded)
    health, _, _ = exchange(url, "GET", HEALTH_PATH)
    assert health == 200
    return decoded


def ids_of(answered: Any) -> list[Any]:
    """The ids of every response in an answer (none, one, or a batch)."""
    if answered is None:
        return []
    responses = answered if isinstance(answered, list) else [answered]
    return [response["id"] for response in responses]


def canonical(value: Any) -> str:
    """A hashable stand-in for a JSON value that tells 1 from 1.0 from True."""
    return json.dumps([type(value).__name__, value])


@EXAMPLES
@given(value=json_values)
def test_any_json_value_gets_a_well_formed_answer(fuzzed: ServerProcess, value: Any) -> None:
    """Any JSON value as the body is answered with JSON-RPC responses, and the server goes on."""
    answer(fuzzed.url, json.dumps(value).encode())


@EXAMPLES
@given(request=requests())
def test_any_request_gets_its_id_back(fuzzed: ServerProcess, request: dict[str, Any]) -> None:
    """A valid request with an id is answered with that id; a notification gets no answer."""
    answered = answer(fuzzed.url, json.dumps(request).encode())
    if "id" in request:
        assert isinstance(answered, dict)
        assert canonical(answered["id"]) == canonical(request["id"])
    else:
        assert answered is None


@EXAMPLES
@given(batch=st.lists(labelled_requests | labelled_values))
def test_any_batch_gets_one_answer_per_call(
    fuzzed: ServerProcess, batch: list[tuple[bool, Any]]
) -> None:
    """A batch gets one response per call (notifications excepted), each with its own id."""
    items = [item for _, item in batch]
    answered = answer(fuzzed.url, json.dumps(items).encode())
    if not items:
        assert isinstance(answered, dict)
        assert answered["error"]["code"] == ErrorCode.INVALID_REQUEST
        return
    calls = [item for valid, item in batch if valid and "id" in item]
    notifications = [item for valid, item in batch if valid and "id" not in item]
    not_objects = [item for item in items if not isinstance(item, dict)]
    got = [canonical(request_id) for request_id in ids_of(answered)]
    assert len(calls) + len(not_objects) <= len(got) <= len(items) - len(notifications)
    for item in calls:
        assert canonical(item["id"]) in got, item
        got.remove(canonical(item["id"]))
    assert got.count(canonical(None)) >= len(not_objects)


encoded_requests = st.builds(lambda r: json.dumps(r).encode(), requests())
raw_bodies = (
    st.binary(max_size=300)
    | encoded_requests.flatmap(lambda body: st.integers(0, len(body)).map(lambda cut: body[:cut]))
    | st.tuples(encoded_requests, st.binary(max_size=4)).flatmap(
        lambda pair: st.integers(0, len(pair[0])).map(
            lambda at: pair[0][:at] + pair[1] + pair[0][at:]
        )
    )
)


@EXAMPLES
@given(body=raw_bodies)
def test_any_bytes_get_a_well_formed_answer(fuzzed: ServerProcess, body: bytes) -> None:
    """Raw bytes, truncated requests and requests with bytes spliced in: a JSON-RPC answer."""
    answered = answer(fuzzed.url, body)
    try:
        json.loads(body)
    except ValueError:
        assert isinstance(answered, dict)
        assert answered["error"]["code"] == ErrorCode.PARSE_ERROR
        assert answered["id"] is None
