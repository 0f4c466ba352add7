"""`taskrpc wait`'s live status (`cli.live.LiveStatus`): notes, the busy server, the end."""

from __future__ import annotations

import io
import threading

import pytest

from backend.store import iso
from cli.live import LiveStatus
from cli.render import duration, status_line
from tests.test_render import NOW, Terminal, job


def test_off_a_terminal_a_note_is_a_line_and_none_is_silent() -> None:
    """Off a terminal: a busy server is one line saying the pause; its end says nothing."""
    stream = io.StringIO()
    live = LiveStatus(stream)
    live.show(job(position=1, estimated_finish_at=iso(NOW + 10)))
    live.busy(0.5)
    live.busy(None)
    live.note("hello")
    live.close()
    assert stream.getvalue().splitlines()[1:] == [
        "server busy; asking again in 0.5 s",
        "hello",
    ]
    assert stream.getvalue().endswith("hello\n")


def test_off_a_terminal_a_new_status_or_position_is_a_new_line() -> None:
    """Off a terminal: a line for each new (status, position); the same pair again is silent."""
    stream = io.StringIO()
    live = LiveStatus(stream)
    for fields in (
        {"position": 1},
        {"position": 1, "estimated_finish_at": iso(NOW + 9)},
        {"position": 0},
        {"status": "running", "started_at": iso(NOW)},
        {"status": "running", "started_at": iso(NOW), "position": None},
        {"status": "done", "started_at": iso(NOW), "finished_at": iso(NOW + 1)},
    ):
        live.show(job(**fields))
    live.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1].split(" —")[0].split(" in")[0] for line in lines] == [
        "queued",
        "queued",
        "running",
        "done",
    ]
    assert lines[3] == "abcdefgh23456712 swap: done in 1.00 s"


def test_on_a_terminal_the_note_follows_the_status_until_taken_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal the busy note is added to the redrawn line, and goes once answers come."""
    monkeypatch.setenv("COLUMNS", "200")
    screen = Terminal()
    live = LiveStatus(screen)
    live.show(job(status="running", started_at=iso(NOW)))
    live.busy(2)
    frames = screen.getvalue().split("\r\x1b[K")
    assert frames[-1].startswith("abcdefgh23456712 swap: running — ")
    assert frames[-1].endswith(" · server busy; asking again in 2 s")
    live.busy(None)
    live.close()
    last = screen.getvalue().split("\r\x1b[K")[-1]
    assert last.startswith("abcdefgh23456712 swap: running — ")
    assert "busy" not in last
    assert last.endswith("\n")


def test_on_a_terminal_the_line_is_cut_to_the_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """The redrawn line is cut one short of the terminal's width, so it never wraps."""
    monkeypatch.setenv("COLUMNS", "20")
    screen = Terminal()
    live = LiveStatus(screen)
    live.show(job(status="running", started_at=iso(NOW)))
    live.close()
    frames = screen.getvalue().split("\r\x1b[K")
    assert frames[1] == "abcdefgh23456712 sw"


def test_on_a_terminal_nothing_shown_is_nothing_to_end() -> None:
    """close() before any status: no line to end, nothing written; a note alone draws nothing."""
    screen = Terminal()
    live = LiveStatus(screen)
    live.note("early")
    live.close()
    assert screen.getvalue() == ""


def test_on_a_terminal_the_redraw_thread_never_holds_the_process_and_close_is_idempotent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The thread that redraws the line is a daemon (a path that skips close() cannot keep the
    process alive); close() stops it, and a second close() writes nothing more."""
    monkeypatch.setenv("COLUMNS", "200")
    screen = Terminal()
    live = LiveStatus(screen)
    before = set(threading.enumerate())
    live.show(job(status="running", started_at=iso(NOW)))
    try:
        (ticker,) = set(threading.enumerate()) - before
        assert ticker.daemon
    finally:
        live.close()
    assert not ticker.is_alive()
    shown = screen.getvalue()
    assert shown.endswith("\n")
    live.close()
    assert screen.getvalue() == shown


@pytest.mark.parametrize(
    ("seconds", "shown"), [(9.99, "9.99 s"), (10.0, "10.0 s"), (10.96, "11.0 s")]
)
def test_from_ten_seconds_a_duration_shows_tenths(seconds: float, shown: str) -> None:
    """`done in` keeps hundredths below 10 s only: 10 s reads `10.0 s`, not `10.00 s`."""
    assert duration(seconds) == shown


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"status": "running", "started_at": iso(NOW - 0.5)}, "running — 0.5 of 5 s"),
        ({"status": "running", "started_at": iso(NOW + 3)}, "running — 0.0 of 5 s"),
        ({"status": "failed", "error": None}, "failed: no reason given"),
    ],
)
def test_status_lines_at_the_edges(fields: dict[str, object], line: str) -> None:
    """Under a second of running (or a clock behind the server's), and a failure without
    a reason, still read right."""
    assert status_line(job(**fields), NOW) == line
