"""The dashboard's model (`tui.model`) on its own: ranks, start times, the row cap, cells.

The dashboard tests reach this code through the screen; these pin its arithmetic with exact
numbers, so a rank off by one or a wrong mean shows here (mutation testing, TESTING.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from backend.protocol import JobStatus, JobUpdate
from backend.store import iso
from tui import model

T0 = 1_800_000_000.0  # a fixed clock: epoch seconds


def update(
    seq: int,
    status: JobStatus = JobStatus.QUEUED,
    *,
    delay: float = 2.0,
    preview: str = "text",
    length: int | None = None,
    started: float | None = None,
    finished: float | None = None,
    kind: str = "reverse",
) -> JobUpdate:
    """A job summary as the WebSocket sends it; times are seconds after T0."""
    summary: Any = {
        "id": f"job{seq:03d}",
        "seq": seq,
        "type": kind,
        "status": status.value,
        "position": None,
        "preview": preview,
        "length": len(preview) if length is None else length,
        "delay": delay,
        "submitted_at": iso(T0 + seq),
        "started_at": None if started is None else iso(T0 + started),
        "finished_at": None if finished is None else iso(T0 + finished),
    }
    return summary  # type: ignore[no-any-return]


def counts(**by_status: int) -> dict[str, int]:
    return {status.value: by_status.get(status.value, 0) for status in JobStatus}


@pytest.fixture
def queue() -> model.Jobs:
    """Job 9 runs (started at +100, 4 s); 10, 12, 14 are held of the 5 the server has queued."""
    jobs = model.Jobs()
    held = [
        update(14, delay=7.0),
        update(12, delay=5.0),
        update(10, delay=2.0),
        update(9, JobStatus.RUNNING, delay=4.0, started=100.0),
    ]
    jobs.reset(held, counts(queued=5, running=1), total=20)
    return jobs


def test_ranks_count_the_queued_jobs_not_held(queue: model.Jobs) -> None:
    """A queued job's rank is the server's queued count minus the held queued jobs after it."""
    assert [queue.rank_of(seq) for seq in (10, 12, 14)] == [3, 4, 5]
    assert queue.running is not None
    assert queue.running.id == "job009"


def test_starts_in_adds_the_running_job_the_held_delays_and_the_mean(queue: model.Jobs) -> None:
    """starts_in: what the running job has left, the held delays ahead, the mean for the rest."""
    mean = (2 + 5 + 7) / 3
    now = T0 + 101.0  # the running job has 3 s left
    by_seq = {job.seq: job for job in queue.by_id.values()}
    assert queue.starts_in(by_seq[10], now) == pytest.approx(3 + 0 + 2 * mean)
    assert queue.starts_in(by_seq[12], now) == pytest.approx(3 + 2 + 2 * mean)
    assert queue.starts_in(by_seq[14], now) == pytest.approx(3 + 7 + 2 * mean)
    late = T0 + 200.0  # the running job is overdue: nothing left, never negative
    assert queue.starts_in(by_seq[10], late) == pytest.approx(2 * mean)


def test_starts_in_with_nothing_running_or_held(queue: model.Jobs) -> None:
    """With no running job the wait is the delays ahead; alone, a job waits its own delay."""
    queue.forget("job009")
    assert queue.running is None
    by_seq = {job.seq: job for job in queue.by_id.values()}
    assert queue.starts_in(by_seq[12], T0) == pytest.approx(2 + 2 * (14 / 3))
    alone = model.Jobs()
    alone.reset([update(3, delay=6.0)], counts(queued=2), total=2)
    job = alone.by_id["job003"]
    alone.forget("job003")
    assert alone.starts_in(job, T0) == pytest.approx(6.0)  # its own delay stands for the mean


def test_a_job_that_starts_leaves_the_queue(queue: model.Jobs) -> None:
    """put: a queued job that starts is no longer counted ahead, and it is the running one."""
    new, old = queue.put(update(10, JobStatus.RUNNING, delay=2.0, started=105.0))
    assert old is not None
    assert (old.status, new.status) == (JobStatus.QUEUED, JobStatus.RUNNING)
    assert queue.running is new
    queue.counts = counts(queued=4, running=1)
    assert [queue.rank_of(seq) for seq in (12, 14)] == [3, 4]
    by_seq = {job.seq: job for job in queue.by_id.values()}
    mean = (5 + 7) / 2
    assert queue.starts_in(by_seq[12], T0 + 106) == pytest.approx(1 + 0 + 2 * mean)
    done, _ = queue.put(update(10, JobStatus.DONE, started=105.0, finished=107.0))
    assert queue.running is None
    assert done.ran(T0 + 500) == pytest.approx(2.0)


def test_put_of_a_new_job_returns_no_old_one(queue: model.Jobs) -> None:
    """put of an unseen job: (it, None); the new queued job counts in the delays."""
    new, old = queue.put(update(16, delay=9.0))
    assert old is None
    assert queue.by_id["job016"] is new
    queue.counts = counts(queued=6)
    assert queue.rank_of(16) == 6
    by_seq = {job.seq: job for job in queue.by_id.values()}
    assert queue.starts_in(by_seq[16], T0 + 101) == pytest.approx(3 + 14 + 2 * (23 / 4))


def test_forget_drops_a_job_from_the_queue_and_the_running_slot(queue: model.Jobs) -> None:
    """forget: the job leaves, with its place in the queue; an unknown id is None."""
    forgotten = queue.forget("job012")
    assert forgotten is not None
    assert forgotten.seq == 12
    assert "job012" not in queue.by_id
    assert queue.rank_of(10) == 4  # one held queued job fewer after it
    assert queue.running is not None  # another job's going leaves the running one
    assert queue.running.id == "job009"
    assert queue.forget("job012") is None
    assert queue.forget("job009") is not None
    assert queue.running is None


def test_searched_jobs_not_kept_still_count_in_ranks(queue: model.Jobs) -> None:
    """note_unseen: a queued job read by a search and not kept counts after older ones."""
    queue.note_unseen(update(11))
    queue.note_unseen(update(13, JobStatus.DONE))  # not queued: no place in the queue
    queue.note_unseen(update(12))  # held already: counted once
    assert [queue.rank_of(seq) for seq in (10, 12, 14)] == [2, 4, 5]
    queue.put(update(11))  # kept after all: it moves from unseen to held
    assert [queue.rank_of(seq) for seq in (10, 11, 12)] == [2, 3, 4]
    queue.note_unseen(update(8))
    queue.put(update(16))  # newer than every unseen one: nothing to take out
    queue.counts = counts(queued=6)
    assert queue.rank_of(16) == 6
    queue.forget_unseen()
    assert queue.rank_of(10) == 2


def test_a_model_before_any_snapshot() -> None:
    """A fresh model: no jobs, zero counts and floor, and a job it does not hold starts now."""
    jobs = model.Jobs()
    assert (jobs.by_id, jobs.total, jobs.floor, jobs.running) == ({}, 0, 0, None)
    assert jobs.counts == counts()
    stranger = model.Job.from_update(update(5))
    assert jobs.rank_of(5) == 1
    assert jobs.starts_in(stranger, T0) == 0.0


def test_a_snapshot_without_queued_jobs_or_counts() -> None:
    """A snapshot with no queued job, or no jobs at all, or no counts, still answers."""
    jobs = model.Jobs()
    jobs.reset([update(3, JobStatus.RUNNING, delay=4.0, started=1.0)], counts(running=1), 1)
    stranger = model.Job.from_update(update(5))
    assert jobs.starts_in(stranger, T0 + 2) == pytest.approx(3.0)
    jobs.reset([], counts(queued=5), total=5)
    assert jobs.floor == 0
    jobs.reset([update(7)], {}, total=1)
    assert jobs.rank_of(7) == 1


def test_a_status_word_with_a_colon_in_its_value_is_still_a_status_word() -> None:
    """`status:f:x` asks for a status starting `f:x` (none), not for the text `status:f:x`."""
    job = model.Job.from_update(update(7, JobStatus.FAILED, preview="see status:f:x"))
    assert job.matches(["see"])
    assert not job.matches(["status:f:x"])


def test_a_rank_is_never_below_one() -> None:
    """More held queued jobs than the server counted (a stale count): rank 1, not 0 or less."""
    jobs = model.Jobs()
    jobs.reset([update(2), update(1)], counts(queued=1), total=2)
    assert jobs.rank_of(1) == 1
    assert jobs.rank_of(2) == 1


@pytest.mark.parametrize(("total", "floor"), [(4, 0), (3, 0), (20, 9)])
def test_the_floor_of_a_snapshot(queue: model.Jobs, total: int, floor: int) -> None:
    """A snapshot holding every job has floor 0; a partial one, the lowest seq it holds."""
    snapshot = [update(14), update(12), update(10), update(9, JobStatus.RUNNING, started=1.0)]
    queue.reset(snapshot, counts(queued=3, running=1), total)
    assert queue.floor == floor
    assert queue.total == total


def test_reset_forgets_everything_before(queue: model.Jobs) -> None:
    """reset starts over: old jobs, queue places, unseen ones and the running job are gone."""
    queue.note_unseen(update(11))
    queue.reset([update(30, delay=1.0)], counts(queued=1), total=1)
    assert list(queue.by_id) == ["job030"]
    assert queue.running is None
    assert queue.rank_of(30) == 1
    assert queue.starts_in(queue.by_id["job030"], T0) == pytest.approx(0.0)
    queue.counts["queued"] = 0
    assert counts(queued=1)["queued"] == 1  # reset copied the counts it was given


def test_overflow_spares_the_running_pinned_and_outside_jobs() -> None:
    """overflow: the oldest jobs past the cap, never the running, pinned or outside ones."""
    jobs = model.Jobs()
    snapshot = [update(n) for n in range(8, 0, -1)]
    snapshot[-1] = update(1, JobStatus.RUNNING, started=5.0)
    jobs.reset(snapshot, counts(queued=7, running=1), total=8)
    assert jobs.overflow(8) == []
    assert jobs.overflow(7) == ["job002"]  # one past the cap: the oldest but the running one
    assert jobs.overflow(4, outside=["job003", "nosuch"], pinned="job002") == [
        "job004",
        "job005",
        "job006",
    ]
    assert jobs.floor == 7
    assert jobs.overflow(7, outside=["job008"]) == []
    jobs.floor = 9
    assert jobs.overflow(6) == ["job002", "job003"]
    assert jobs.floor == 9  # never moves down


def test_overflow_with_only_spared_jobs_left() -> None:
    """Past the cap but every job is spared: nothing to drop, the floor stays."""
    jobs = model.Jobs()
    jobs.reset([update(2), update(1, JobStatus.RUNNING, started=1.0)], counts(), total=2)
    assert jobs.overflow(0, pinned="job002") == []
    assert jobs.floor == 0


def test_waited_and_ran() -> None:
    """waited: until it started (or ended, or now); ran: from its start until it ended or now."""
    queued = model.Job.from_update(update(4))
    assert queued.waited(T0 + 10) == pytest.approx(6.0)
    assert queued.ran(T0 + 10) is None
    running = model.Job.from_update(update(4, JobStatus.RUNNING, started=7.0))
    assert running.waited(T0 + 10) == pytest.approx(3.0)
    assert running.ran(T0 + 10) == pytest.approx(3.0)
    cancelled = model.Job.from_update(update(4, JobStatus.CANCELLED, finished=9.0))
    assert cancelled.waited(T0 + 100) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("words", "matches"),
    [
        (["status:fa"], True),
        (["status:failed"], True),
        (["status:done"], False),
        (["type:sw"], True),
        (["type:rev"], False),
        (["job007"], True),
        (["swap"], True),
        (["failed"], True),
        (["hello"], True),
        (["status:"], False),  # no value: the word as free text
        (["type:"], False),
        (["oops:x"], False),
        (["oops:sw"], False),  # only type: looks at the type's start
        ([], True),
    ],
)
def test_filter_words(words: list[str], matches: bool) -> None:
    """status: and type: words match prefixes of the field; other words any text of the row."""
    job = model.Job.from_update(update(7, JobStatus.FAILED, preview="Hello", kind="swap"))
    assert job.matches(words) is matches


def test_wanted_statuses() -> None:
    """The statuses that pass every status: word of the filter; other words do not narrow."""
    assert model.wanted_statuses([]) == set(JobStatus)
    assert model.wanted_statuses(["status:", "type:swap", "x"]) == set(JobStatus)
    assert model.wanted_statuses(["status:r"]) == {JobStatus.RUNNING}
    assert model.wanted_statuses(["status:c", "status:ca"]) == {JobStatus.CANCELLED}
    assert model.wanted_statuses(["status:d", "status:q"]) == set()
    assert model.wanted_statuses(["status:d:x"]) == set()  # the value is all after the first :


# -- cells --------------------------------------------------------------------------------


def test_a_queued_cell_says_its_rank_and_its_wait(queue: model.Jobs) -> None:
    """A queued row: `queued #rank in ~wait`, in yellow; the wait in whole seconds."""
    cell = model.status_cell(queue.by_id["job014"], queue, T0 + 101)
    assert cell.plain == "queued #5 in ~19s"
    assert cell.style == "yellow"
    soon = model.status_cell(queue.by_id["job010"], queue, T0 + 200)  # 9.3 s
    assert soon.plain == "queued #3 in ~9s"


@pytest.mark.parametrize(
    ("rank", "wait", "shown"),
    [
        (9982, "2h01m", "queued #9982 in ~2h01m"),  # 22: fits
        (12345, "2h01m", "queued #12345 ~2h01m"),  # 23: the short form
    ],
)
def test_a_long_queue_cell_drops_the_in(rank: int, wait: str, shown: str) -> None:
    """A queued cell longer than the column drops `in`, so the rank and wait still fit."""
    assert model._queued(rank, wait).plain == shown


@pytest.mark.parametrize(
    ("elapsed", "shown"),
    [
        (0.0, "running ▱▱▱▱▱▱▱▱   0%"),
        (1.0, "running ▰▰▱▱▱▱▱▱  25%"),
        (9.0, "running ▰▰▰▰▰▰▰▰ 100%"),
    ],
)
def test_a_running_cell_shows_its_progress(elapsed: float, shown: str) -> None:
    """A running row: a bar of eight and a percentage of its delay, in bold cyan."""
    job = model.Job.from_update(update(1, JobStatus.RUNNING, delay=4.0, started=10.0))
    cell = model.status_cell(job, model.Jobs(), T0 + 10 + elapsed)
    assert (cell.plain, cell.style) == (shown, "bold cyan")


@pytest.mark.parametrize(
    ("status", "style"),
    [(JobStatus.DONE, "green"), (JobStatus.FAILED, "bold red"), (JobStatus.CANCELLED, "magenta")],
)
def test_a_finished_cell_is_its_status_in_its_colour(status: JobStatus, style: str) -> None:
    """A finished row's status cell is the status word, in its colour."""
    job = model.Job.from_update(update(1, status, started=1.0, finished=2.0))
    cell = model.status_cell(job, model.Jobs(), T0 + 10)
    assert (cell.plain, cell.style) == (status.value, style)


@pytest.mark.parametrize(
    ("started", "delay", "fraction"),
    [
        (None, 4.0, 0.0),
        (10.0, 0.0, 0.0),
        (10.0, -1.0, 0.0),
        (10.0, 4.0, 0.5),
        (11.5, 1.0, 0.5),
        (20.0, 4.0, 0.0),
    ],
)
def test_progress(started: float | None, delay: float, fraction: float) -> None:
    """progress: 0 before a start or without a delay, never below 0 nor above 1."""
    status = JobStatus.QUEUED if started is None else JobStatus.RUNNING
    job = model.Job.from_update(update(1, status, delay=delay, started=started))
    assert model.progress(job, T0 + 12) == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("preview", "length", "width", "shown"),
    [
        ("abc", 3, 6, "abc   "),
        ("abc", 4, 6, "abc…  "),
        ("abcdefgh", 8, 5, "abcd…"),
        ("a\r\nb\nc", 6, 8, "a⏎b⏎c   "),
        ("a\x1bb", 3, 8, "a\\x1bb  "),
    ],
)
def test_text_cell(preview: str, length: int, width: int, shown: str) -> None:
    """A text cell: one line, `…` when the preview is cut, controls escaped, `width` wide."""
    job = model.Job.from_update(update(1, preview=preview, length=length))
    cell = model.text_cell(job, width)
    assert cell.plain == shown
    assert cell.no_wrap


def test_a_text_cell_cropped_by_its_column_keeps_an_ellipsis() -> None:
    """A text cell drawn in a narrower column than it was cut for still ends in `…`."""
    import io

    from rich.console import Console

    job = model.Job.from_update(update(1, preview="abcdefgh"))
    cell = model.text_cell(job, 6)
    console = Console(width=4, file=io.StringIO(), color_system=None)
    lines = console.render_lines(cell, console.options.update(width=4), pad=False)
    assert ["".join(segment.text for segment in line) for line in lines] == ["abc…"]


def test_plain_cells_are_never_markup() -> None:
    """plain(): user text stays text (no markup), control characters escaped."""
    assert model.plain("[bold]x[/]").plain == "[bold]x[/]"
    assert model.plain("a\x07").plain == "a\\x07"


@pytest.fixture
def utc() -> Iterator[None]:
    """The local time zone is UTC for the test."""
    before = time.tzname
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "UTC")
        time.tzset()
        yield
    time.tzset()
    assert time.tzname == before


def test_clock_and_duration_cells(utc: None) -> None:
    """clock: HH:MM:SS local time; a duration cell is right-aligned, empty for None."""
    assert model.clock(86400 * 3 + 3723).plain == "01:02:03"
    cell = model.duration_cell(65.0)
    assert (cell.plain, cell.justify) == ("1m05s", "right")
    assert model.duration_cell(None).plain == ""


@pytest.mark.parametrize(
    ("seconds", "shown", "whole"),
    [
        (-3.0, "0.0s", "0s"),
        (0.44, "0.4s", "0s"),
        (9.94, "9.9s", "10s"),
        (10.0, "10s", "10s"),
        (59.4, "59s", "59s"),
    ],
)
def test_short_durations(seconds: float, shown: str, whole: str) -> None:
    """Under 10 s a tenth is shown unless `whole`; a negative duration reads as zero."""
    assert model.duration(seconds) == shown
    assert model.duration(seconds, whole=True) == whole


def test_sort_keys() -> None:
    """Each sort column orders by its field, then by submission."""
    now = T0 + 100
    jobs = [
        model.Job.from_update(update(1, JobStatus.DONE, preview="b", kind="swap", started=5.0,
                                     finished=9.0)),
        model.Job.from_update(update(2, JobStatus.QUEUED, preview="C", kind="repeat")),
        model.Job.from_update(update(3, JobStatus.RUNNING, preview="a", kind="swap",
                                     started=50.0)),
        model.Job.from_update(update(4, JobStatus.QUEUED, preview="a", kind="reverse")),
        model.Job.from_update(update(5, JobStatus.DONE, preview="d", kind="swap", started=60.0,
                                     finished=60.5)),
    ]  # fmt: skip

    def order(column: str) -> list[int]:
        return [job.seq for job in sorted(jobs, key=model.sort_key(column, now))]

    assert order("submitted") == [1, 2, 3, 4, 5]
    assert order("status") == [2, 4, 3, 1, 5]
    assert order("type") == [2, 4, 1, 3, 5]
    assert order("waited") == [1, 3, 5, 4, 2]
    assert order("ran") == [2, 4, 5, 1, 3]  # not started yet: before any that ran
    assert order("text") == [3, 4, 1, 2, 5]


def test_seconds_of_a_wire_time() -> None:
    """seconds(): an ISO 8601 time as epoch seconds; None stays None."""
    assert model.seconds(iso(T0 + 0.25)) == T0 + 0.25
    assert model.seconds(None) is None
    assert model.Job.from_update({**update(1), "submitted_at": None}).submitted_at == 0.0  # type: ignore[typeddict-item]
