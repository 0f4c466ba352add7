"""Snapshots of the dashboard's screens: fixed data, a frozen clock, a fixed terminal size."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from backend.protocol import InvalidParams, JobObject, JobStatus, JobUpdate, Snapshot
from cli.client import Subscription
from tui.app import Dashboard
from tui.status import Link

SIZES = [(120, 36), (80, 24), (60, 15)]
sizes = pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
BASE = 1_798_804_800.0  # 2027-01-01T12:00:00Z
NOW = BASE + 30.0
TYPES = [
    {
        "code": 1,
        "name": "reverse",
        "description": "Reverse the text: пример → ремирп",
        "delay": 2.0,
    },
    {
        "code": 2,
        "name": "swap",
        "description": "Swap characters pairwise: пример → рпмире",
        "delay": 5.0,
    },
    {
        "code": 3,
        "name": "repeat",
        "description": "Repeat each character by its position",
        "delay": 7.0,
    },
]


def stamp(offset: float | None) -> str | None:
    if offset is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(BASE + offset))


def job(
    n: int, kind: str, status: JobStatus, text: str, times: tuple[float | None, ...]
) -> JobUpdate:
    submitted, started, finished = times
    return {
        "id": f"job{n:02d}abcdefghijk",
        "seq": n,
        "type": kind,
        "status": status.value,
        "position": None,
        "preview": text[:40],
        "length": len(text),
        "delay": {"reverse": 2.0, "swap": 5.0, "repeat": 7.0}[kind],
        "submitted_at": stamp(submitted) or "",
        "started_at": stamp(started),
        "finished_at": stamp(finished),
    }


JOBS = [
    job(5, "swap", JobStatus.QUEUED, "still waiting", (24.0, None, None)),
    job(4, "repeat", JobStatus.QUEUED, "[bold]not markup[/bold]", (23.0, None, None)),
    job(3, "swap", JobStatus.RUNNING, "пример 👍🏽 🇫🇷", (20.0, 28.0, None)),
    job(2, "reverse", JobStatus.CANCELLED, "changed my mind", (10.0, None, 12.0)),
    job(1, "repeat", JobStatus.FAILED, "boom", (5.0, 6.0, 13.0)),
    job(0, "reverse", JobStatus.DONE, "пример", (0.0, 1.0, 3.0)),
]
SNAPSHOT: Snapshot = {
    "seq": 1,
    "jobs": JOBS,
    "counts": {"queued": 2, "running": 1, "done": 1, "failed": 1, "cancelled": 1},
    "total": 6,
    "limit": 10_000,
}
DONE: JobObject = {
    "id": "job00abcdefghijk",
    "type": "reverse",
    "status": "done",
    "position": None,
    "data": "пример",
    "delay": 2.0,
    "submitted_at": stamp(0.0) or "",
    "started_at": stamp(1.0),
    "finished_at": stamp(3.0),
    "estimated_finish_at": None,
    "error": None,
    "attempts": 1,
}


class FakeBackend:
    """Answers like a server would, with fixed data."""

    url = "http://127.0.0.1:8765"

    async def submit(self, job_type: int | str, data: str) -> JobObject:
        raise InvalidParams(f"data is {len(data)} characters long; the limit is 10")

    async def status(self, job_id: str) -> JobObject:
        return DONE

    async def result(self, job_id: str) -> str:
        return "ремирп"

    async def follow(
        self, job: JobObject | str, timeout: float | None = None
    ) -> AsyncIterator[JobObject]:
        yield await self.status(job if isinstance(job, str) else job["id"])

    async def cancel(self, job_id: str) -> JobObject:
        return DONE

    async def types(self) -> list[dict[str, Any]]:
        return TYPES

    async def health(self) -> dict[str, Any]:
        return {"status": "ok"}

    def subscribe(self, limit: int = 1000) -> Subscription:
        raise AssertionError("snapshot tests do not connect")


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC, so the SUBMITTED column reads the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def dashboard() -> Dashboard:
    return Dashboard(FakeBackend(), connect=False, clock=lambda: NOW)


async def loaded(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, Dashboard)
    app.set_link(Link.CONNECTED)
    app.jobs_screen.types = TYPES  # as the feed loads them on connecting
    app.jobs_screen.apply_snapshot(SNAPSHOT)
    app.jobs_screen.table.move_to(JOBS[2]["id"])
    await pilot.pause()


@sizes
def test_main_screen_with_every_status(snap_compare: Any, size: tuple[int, int]) -> None:
    """The table shows each status in its colour and word; markup in text stays literal;
    narrower terminals drop RAN, WAITED, SUBMITTED in turn and the status bar shortens."""
    assert snap_compare(dashboard(), terminal_size=size, run_before=loaded)


@sizes
def test_submit_modal_with_a_validation_error(snap_compare: Any, size: tuple[int, int]) -> None:
    """The server's message shows in the modal, under the kept input."""

    async def refused(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        await pilot.press("n")
        await pilot.pause()
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False  # a blinking cursor would make the picture random
        await pilot.press(*"far too long a text", "enter")
        error = pilot.app.screen.query_one("#error", Static)
        deadline = time.monotonic() + 10
        while "the limit is" not in str(error.render()) and time.monotonic() < deadline:
            await pilot.pause(0.01)

    assert snap_compare(dashboard(), terminal_size=size, run_before=refused)


@sizes
def test_detail_screen_of_a_finished_job(snap_compare: Any, size: tuple[int, int]) -> None:
    """Every field (local times, units), the full text and the result."""

    async def details(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        assert isinstance(pilot.app, Dashboard)
        pilot.app.jobs_screen.table.move_to(JOBS[5]["id"])
        await pilot.press("enter")
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(dashboard(), terminal_size=size, run_before=details)


def test_disconnected_keeps_the_counts_as_of_and_says_why(snap_compare: Any) -> None:
    """Cut off, the status bar shows the last counts "as of" a time and the reason, at 80x24."""

    async def cut_off(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        app = pilot.app
        assert isinstance(app, Dashboard)
        app.attempt = 2
        app.set_link(Link.RECONNECTING, "cannot reach http://127.0.0.1:8765 (refused)")
        await pilot.pause()

    assert snap_compare(dashboard(), terminal_size=(80, 24), run_before=cut_off)


def test_cancel_question_fits_60x15(snap_compare: Any) -> None:
    """The confirm dialog fits a 60x15 terminal and its footer shows y and n only."""

    async def ask(pilot: Pilot[None]) -> None:
        await loaded(pilot)
        await pilot.press("x")
        await pilot.pause()

    assert snap_compare(dashboard(), terminal_size=(60, 15), run_before=ask)
