"""Security: with a token set, nothing is served or revealed without it; ids cannot be guessed."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import aiohttp
import pytest

from backend.protocol import HEALTH_PATH, RPC_PATH, ErrorCode, JobStatus, Method
from tests.conftest import Server, StartServer, until
from tests.test_reliability_faults import close, connect, read_reply

TOKEN = "correct-horse-battery-staple"
SECRET = "the launch code is 0000"
REFUSED = {
    "no header": {},
    "empty": {"Authorization": ""},
    "wrong": {"Authorization": "Bearer wrong"},
    "wrong, same length": {"Authorization": "Bearer " + "x" * len(TOKEN)},
    "prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "suffix": {"Authorization": f"Bearer {TOKEN}x"},
    "no scheme": {"Authorization": TOKEN},
    "basic": {"Authorization": f"Basic {TOKEN}"},
    "other header": {"X-Token": TOKEN},
}
GOOD = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def guarded(start_server: StartServer) -> tuple[Server, str]:
    """A server with a token, holding one finished job whose text is SECRET; and its id."""
    server = await start_server(token=TOKEN)
    job = (await server.call("submit", {"type": "reverse", "data": SECRET}, **GOOD))["result"]
    await until(lambda: server.store.running is None and server.store.queued == 0)
    return server, job["id"]


def every_call(job_id: str) -> list[dict[str, Any]]:
    """One request for each method, aimed at the job where it takes one."""
    params: dict[str, Any] = {
        Method.SUBMIT: {"type": "reverse", "data": SECRET},
        Method.STATUS: {"id": job_id},
        Method.RESULT: {"id": job_id},
        Method.WAIT: {"id": job_id, "timeout": 0},
        Method.CANCEL: {"id": job_id},
        Method.LIST: {"limit": 10},
    }
    calls = []
    for number, method in enumerate(Method, start=1):
        call: dict[str, Any] = {"jsonrpc": "2.0", "method": method.value, "id": number}
        if method in params:
            call["params"] = params[method]
        calls.append(call)
    return calls


def assert_refused(status: int, answer: Any, server: Server, job_id: str, jobs_before: int) -> None:
    """HTTP 401 with an `unauthorized` error, nothing revealed and nothing changed."""
    assert status == 401
    assert answer["error"]["code"] == ErrorCode.UNAUTHORIZED
    text = json.dumps(answer, ensure_ascii=False)
    assert SECRET not in text
    assert SECRET[::-1] not in text
    assert job_id not in text
    assert len(server.memory_store._jobs) == jobs_before
    assert server.store.get(job_id).status is JobStatus.DONE  # not cancelled


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("headers", REFUSED.values(), ids=REFUSED.keys())
async def test_every_method_is_refused_without_the_token(
    guarded: tuple[Server, str], method: Method, headers: dict[str, str]
) -> None:
    """Each method, called without the right token, is refused and reveals nothing."""
    server, job_id = guarded
    (call,) = [c for c in every_call(job_id) if c["method"] == method]
    status, answer = await server.post(call, headers)
    assert_refused(status, answer, server, job_id, jobs_before=1)


@pytest.mark.parametrize("headers", REFUSED.values(), ids=REFUSED.keys())
async def test_a_batch_is_refused_whole_without_the_token(
    guarded: tuple[Server, str], headers: dict[str, str]
) -> None:
    """A batch of every method without the right token is refused as a whole: none of it runs."""
    server, job_id = guarded
    status, answer = await server.post(every_call(job_id), headers)
    assert_refused(status, answer, server, job_id, jobs_before=1)


async def test_every_method_works_with_the_token(guarded: tuple[Server, str]) -> None:
    """With the right token every method is served (the refusals above are about the token)."""
    server, job_id = guarded
    status, answers = await server.post(every_call(job_id), GOOD)
    assert status == 200
    by_id = {answer["id"]: answer for answer in answers}
    assert len(by_id) == len(Method)
    assert by_id[2]["result"]["data"] == SECRET  # status
    assert by_id[3]["result"]["result"] == SECRET[::-1]  # result
    assert by_id[5]["error"]["code"] == ErrorCode.ALREADY_FINISHED  # cancel: it is done
    assert [answer["id"] for answer in answers if "result" not in answer] == [5]  # only cancel


@pytest.mark.parametrize(
    ("verb", "path"),
    [
        ("GET", RPC_PATH),
        ("GET", "/"),
        ("GET", "/jobs"),
        ("GET", "/ws"),
        ("POST", HEALTH_PATH),
        ("PUT", RPC_PATH),
        ("OPTIONS", RPC_PATH),
    ],
)
async def test_no_endpoint_answers_without_the_token(
    guarded: tuple[Server, str], verb: str, path: str
) -> None:
    """Every path and verb is refused with 401 and a challenge, revealing no job."""
    server, job_id = guarded
    await server.store.submit("repeat", SECRET)  # something running or queued, for /healthz to tell
    async with (
        aiohttp.ClientSession() as session,
        session.request(verb, server.url + path) as reply,
    ):
        body = await reply.text()
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert SECRET not in body
    assert job_id not in body
    assert all(job not in body for job in server.memory_store._jobs)


async def test_health_without_the_token_reveals_no_job(guarded: tuple[Server, str]) -> None:
    """/healthz without the token is a bare "ok": no count, no running id."""
    server, _ = guarded
    await server.store.submit("repeat", SECRET)
    async with aiohttp.ClientSession() as session, session.get(server.url + HEALTH_PATH) as reply:
        assert reply.status == 200
        assert await reply.json() == {"status": "ok"}


async def test_health_answers_with_the_token(guarded: tuple[Server, str]) -> None:
    """/healthz is served with the token (so the refusal above is about the token)."""
    server, _ = guarded
    async with (
        aiohttp.ClientSession(headers=GOOD) as session,
        session.get(server.url + HEALTH_PATH) as reply,
    ):
        assert reply.status == 200
        assert (await reply.json())["status"] == "ok"


async def test_a_token_header_that_is_not_utf8_is_refused(guarded: tuple[Server, str]) -> None:
    """An Authorization header with bytes that are not UTF-8 gets 401, not a server error."""
    server, _ = guarded
    body = b'{"jsonrpc": "2.0", "method": "types", "id": 1}'
    reader, writer = await connect(server)
    try:
        writer.write(
            b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe"
            + TOKEN.encode()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        await writer.drain()
        status, reply = await read_reply(reader)
    finally:
        await close(writer)
    assert status == 401
    assert json.loads(reply)["error"]["code"] == ErrorCode.UNAUTHORIZED


async def test_ids_carry_at_least_64_bits_of_randomness(start_server: StartServer) -> None:
    """2 000 ids are unique and their characters carry well over 64 bits of entropy per id."""
    server = await start_server(time_scale=0)
    ids: list[str] = []
    for batch in range(20):
        calls = [
            {"jsonrpc": "2.0", "method": "submit", "params": {"type": 1, "data": "x"}, "id": n}
            for n in range(batch * 100, batch * 100 + 100)
        ]
        status, answers = await server.post(calls)
        assert status == 200
        ids.extend(answer["result"]["id"] for answer in sorted(answers, key=lambda a: a["id"]))
    assert len(set(ids)) == len(ids)
    assert len({len(job_id) for job_id in ids}) == 1, "ids should have one length"
    # Empirical entropy of each character position, summed: a counter, a clock or a short
    # random part scores far below 64; 80 random bits in base 32 score about 79.8.
    bits = 0.0
    for position in range(len(ids[0])):
        counts = Counter(job_id[position] for job_id in ids)
        bits += -sum(n / len(ids) * math.log2(n / len(ids)) for n in counts.values())
    assert bits >= 64, f"ids carry about {bits:.1f} bits"
    assert ids != sorted(ids), "ids should not grow with submission order"
