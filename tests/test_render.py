"""Status lines and the live display of `taskrpc wait`."""

from __future__ import annotations

import io
import re

import pytest

from backend.protocol import JobObject
from backend.store import iso
from cli.live import LiveStatus
from cli.render import duration, status_line
from tests.conftest import until

NOW = 1_800_000_000.0


def job(**fields: object) -> JobObject:
    base: dict[str, object] = {
        "id": "abcdefgh23456712",
        "type": "swap",
        "status": "queued",
        "position": None,
        "data": "кот",
        "delay": 5.0,
        "submitted_at": iso(NOW - 10),
        "started_at": None,
        "finished_at": None,
        "estimated_finish_at": None,
        "error": None,
    }
    base.update(fields)
    return base  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"position": 2, "estimated_finish_at": iso(NOW + 14)}, "queued — 2 ahead, starts in ~9 s"),
        ({"position": 0, "estimated_finish_at": iso(NOW + 5)}, "queued — next, starts in ~0 s"),
        ({"status": "running", "started_at": iso(NOW - 1.2)}, "running — 1.2 of 5 s"),
        ({"status": "running", "started_at": iso(NOW - 9)}, "running — 5.0 of 5 s"),
        (
            {"status": "done", "started_at": iso(NOW - 6), "finished_at": iso(NOW - 1)},
            "done in 5.00 s",
        ),
        ({"status": "failed", "error": "ValueError: boom"}, "failed: ValueError: boom"),
        ({"status": "failed", "error": None}, "failed: no reason given"),
        ({"status": "cancelled"}, "cancelled"),
    ],
)
def test_status_line(fields: dict[str, object], line: str) -> None:
    """Each status reads as one short line, from the job and a clock."""
    assert status_line(job(**fields), NOW) == line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_live_status_on_a_terminal_redraws_one_line() -> None:
    """On a terminal the line is redrawn in place; a running job's line says its time once."""
    screen = Terminal()
    live = LiveStatus(screen)
    live.show(job(status="running", started_at=iso(NOW), estimated_finish_at=iso(NOW + 5)))
    await until(lambda: screen.getvalue().count("\r") >= 3, what="two redraws by the ticker")
    live.close()
    text = screen.getvalue()
    assert text.startswith("\r\x1b[Kabcdefgh23456712 swap: running — ")
    assert "elapsed" not in text
    assert "left" not in text
    assert text.endswith("\n")
    assert text.count("\n") == 1


def test_live_status_of_a_queued_job_shows_the_time_waited() -> None:
    """While queued, the terminal line adds the time waited so far."""
    screen = Terminal()
    live = LiveStatus(screen)
    live.show(job(position=1, estimated_finish_at=iso(NOW + 10)))
    live.close()
    line = screen.getvalue().rsplit("\r\x1b[K", 1)[1]
    assert re.search(r"queued — 1 ahead, starts in ~\d+ s · \d+\.\d s elapsed$", line)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.35, "0.35 s"), (0.25, "0.25 s"), (2.5, "2.50 s"), (9.994, "9.99 s"), (12.34, "12.3 s")],
)
def test_durations_under_ten_seconds_keep_hundredths(seconds: float, shown: str) -> None:
    """Short durations are told apart (0.35 s and 0.25 s are not both 0.3 s)."""
    assert duration(seconds) == shown


def test_live_status_elsewhere_prints_one_line_per_change() -> None:
    """Off a terminal, one plain line per change of status or position."""
    stream = io.StringIO()
    live = LiveStatus(stream)
    queued = job(position=1, estimated_finish_at=iso(NOW + 10))
    live.show(queued)
    live.show(queued)
    live.show(job(position=0, estimated_finish_at=iso(NOW + 5)))
    live.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("abcdefgh23456712 swap: queued — 1 ahead")
    assert "\r" not in stream.getvalue()
