"""The dashboard as a demanding user tried it (issue 11), each finding driven with the pilot.

Real server on a free port where the finding needs one; the fixed data of the snapshot
tests where it is about what the screen shows.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Button, Static

from backend.app import STORE, start
from backend.protocol import JobObject, JobStatus
from backend.settings import Settings
from cli.client import Client
from tests import test_tui_snapshots as fixed
from tests.conftest import BIN, Server, StartServer, spawn_server, until
from tui import model, submit
from tui.app import Dashboard
from tui.confirm import ConfirmScreen
from tui.details import DetailScreen
from tui.help import KEYS, HelpScreen
from tui.status import Link, Search, status_line
from tui.submit import SubmitScreen
from tui.table import JobTable, layout

SIZE = (120, 36)


def screen_text(app: Dashboard) -> str:
    """The screen as a person sees it, as plain text."""
    console = Console(
        width=app.size.width,
        height=app.size.height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
    )
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


def footer_of(app: Dashboard) -> str:
    """The footer's line as shown."""
    return screen_text(app).splitlines()[-1]


def table(app: Dashboard) -> JobTable:
    return app.jobs_screen.table


def lines_of(app: Dashboard) -> list[str]:
    """The table's lines as drawn (heading first), right-trimmed."""
    view = table(app)
    return [view.render_line(y).text.rstrip() for y in range(view.size.height)]


async def settle(pilot: Pilot[None], predicate: object, what: str) -> None:
    assert callable(predicate)
    await until(predicate, what=what)
    await pilot.pause()


@pytest.fixture
def utc() -> Iterator[None]:
    """Local time is UTC, so clock times read the same everywhere."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "UTC")
        import time

        time.tzset()
        yield
    time.tzset()


async def loaded_fixed(pilot: Pilot[None]) -> Dashboard:
    await fixed.loaded(pilot)
    app = pilot.app
    assert isinstance(app, Dashboard)
    return app


# -- 1. narrow terminals --------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "kept", "dropped"),
    [
        (117, ("SUBMITTED", "WAITED", "RAN"), ()),
        (77, ("SUBMITTED",), ("WAITED", "RAN")),
        (57, (), ("SUBMITTED", "WAITED", "RAN")),
    ],
)
def test_columns_drop_in_a_fixed_order_and_text_takes_the_rest(
    width: int, kept: tuple[str, ...], dropped: tuple[str, ...]
) -> None:
    """RAN, then WAITED, then SUBMITTED go when they do not fit; TEXT fills the width."""
    columns = layout(width)
    labels = [column.label for column in columns]
    assert all(label in labels for label in kept)
    assert not any(label in labels for label in dropped)
    assert sum(column.width + 1 for column in columns) == width


async def test_80x24_shows_the_short_status_bar_and_the_quit_and_help_keys(utc: None) -> None:
    """At 80x24 and 60x15 the status bar is whole (short form) and `? Help`, `q Quit` show."""
    for size in ((80, 24), (60, 15)):
        app = fixed.dashboard()
        async with app.run_test(size=size) as pilot:
            await loaded_fixed(pilot)
            await settle(pilot, lambda app=app: "? Help" in screen_text(app), "the footer")
            shown = screen_text(app).splitlines()
            assert shown[1].strip() == "● 2 queued · 1 running · 1 done · 1 failed", size
            assert "? Help" in shown[-1]
            assert "q Quit" in shown[-1]


async def test_the_submit_dialog_fits_in_60x15(utc: None) -> None:
    """The new-job form, its title, its message and its buttons fit on a 60x15 terminal."""
    app = fixed.dashboard()
    async with app.run_test(size=(60, 15)) as pilot:
        await loaded_fixed(pilot)
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, SubmitScreen), "the form")
        await pilot.press(*"too long", "enter")
        await settle(pilot, lambda: "the limit is 10" in screen_text(app), "the message")
        shown = screen_text(app)
        assert "New job" in shown
        assert "the limit is 10" in shown
        assert "Submit" in shown
        assert "Cancel" in shown


# -- 2. the search of older jobs --------------------------------------------------------


async def test_search_starts_below_the_window_not_below_an_old_notified_job(
    start_server: StartServer,
) -> None:
    """An old job a notification brought does not make the search start below it."""
    server = await start_server(time_scale=1000)
    await server.store.submit("reverse", "busy")
    hay = [await server.store.submit("swap", f"hay {n}") for n in range(20)]
    async with Client(server.url) as client:
        app = Dashboard(client, max_rows=5)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: table(app).row_count == 5, "the newest five")
            await server.store.cancel(hay[0].id)  # the oldest: its change comes as a notification
            await settle(pilot, lambda: app.jobs.counts["cancelled"] == 1, "the notification")
            await pilot.press("slash", *"hay 1", "enter")
            await settle(pilot, lambda: app.jobs_screen.search.state is Search.DONE, "search")
            shown = set(table(app).ids)
            assert {hay[n].id for n in range(10, 15)} <= shown  # below the window
            assert hay[1].id in shown


# -- 3. the row cap in bursts ----------------------------------------------------------


async def test_the_row_cap_holds_during_a_burst(start_server: StartServer) -> None:
    """200 submits at once with a cap of 50: never more than 50 jobs held, nor rows shown;
    the job under the cursor stays."""
    server = await start_server(time_scale=1000)
    async with Client(server.url) as client:
        app = Dashboard(client, max_rows=50)
        most = 0
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: app.link is Link.CONNECTED, "connected")
            screen = app.jobs_screen
            apply = screen.apply_changes

            def counted(changes: Any) -> None:
                nonlocal most
                apply(changes)
                most = max(most, len(app.jobs.by_id), table(app).row_count)

            first = await server.store.submit("swap", "under the cursor")
            await settle(pilot, lambda: first.id in table(app), "the first row")
            screen.apply_changes = counted  # type: ignore[method-assign]
            jobs = [await server.store.submit("swap", f"burst {n}") for n in range(199)]
            await settle(pilot, lambda: jobs[-1].id in table(app), "the newest row")
            assert most <= 50
            assert table(app).row_count == 50
            assert table(app).cursor_key == first.id  # the cap spares the job being looked at
            assert "(newest 50 of 200 on the server)" in str(table(app).border_title)


# -- 4. a hung server ------------------------------------------------------------------


@pytest.fixture
async def hung_url() -> AsyncIterator[str]:
    """A socket that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_submitting_to_a_hung_server_says_so_and_offers_to_look(
    hung_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "submitting…" at once; on a timeout, the job may exist, never an empty reason, and
    "Look for it" filters the table for its text."""
    monkeypatch.setattr(submit, "SUBMIT_TIMEOUT", 0.3)
    async with Client(hung_url) as client:
        app = Dashboard(client, connect=False)
        async with app.run_test(size=SIZE) as pilot:
            app.jobs_screen.types = fixed.TYPES
            await pilot.press("n")
            await settle(pilot, lambda: isinstance(app.screen, SubmitScreen), "the form")
            await pilot.press(*"needle text", "enter")
            error = app.screen.query_one("#error", Static)
            assert "submitting…" in str(error.render())
            await settle(pilot, lambda: "may have been created" in str(error.render()), "timeout")
            assert not str(error.render()).rstrip().endswith(":")
            look = app.screen.query_one("#look", Button)
            assert look.display
            await pilot.click(look)
            await settle(pilot, lambda: app.screen is app.jobs_screen, "back to the table")
            assert app.jobs_screen.words == ("needle", "text")


# -- 5. disconnected -------------------------------------------------------------------


def test_not_connected_the_counts_are_dashes_or_as_of_and_the_reason_stays() -> None:
    """Never connected: "—" counts; lost: the last counts "as of" a time; the reason shows."""
    never = status_line(Link.RECONNECTING, None, width=200, attempt=2, reason="refused")
    assert "— queued" in never.plain
    assert "0 queued" not in never.plain
    assert "refused" in never.plain
    counts = {"queued": 3, "running": 1, "done": 0, "failed": 0, "cancelled": 0}
    lost = status_line(Link.RECONNECTING, counts, width=200, reason="refused", as_of=0.0)
    assert "as of" in lost.plain
    assert "3 queued" in lost.plain
    assert "worker idle" not in lost.plain


async def test_the_reason_stays_in_the_status_bar_when_the_server_goes() -> None:
    """Stop the server: the bar keeps the last counts "as of" a time, and why it is cut off."""
    runner, url = await start(Settings(port=0, time_scale=1000, db=":memory:"))
    await runner.app[STORE].submit("reverse", "busy")
    async with Client(url) as client:
        app = Dashboard(client)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: app.link is Link.CONNECTED, "connected")
            await settle(pilot, lambda: app.jobs_screen.bar.counts is not None, "counts")
            await runner.cleanup()
            await settle(pilot, lambda: app.link is Link.RECONNECTING, "reconnecting")

            def bar_text() -> str:
                return " ".join(screen_text(app).splitlines()[1:3])  # a second line if need be

            # the first reason, "lost the connection", gives way to why the retries fail
            await settle(
                pilot,
                lambda: "cannot reach" in bar_text() or "closed" in bar_text(),
                "the reason in the bar",
            )
            bar = bar_text()
            assert "as of" in bar
            assert bar.lstrip().startswith("◌")
            assert "0 queued · 1 running" in bar
            assert "cannot reach" in bar or "closed" in bar


def test_a_wrong_token_at_start_exits_2_with_the_clis_message(tmp_path: Path) -> None:
    """`taskrpc-tui` with a wrong token (or token file) exits 2 with one line, no screen."""
    started = spawn_server("--token", "right-token", "--time-scale", "0.01")
    try:
        token_file = tmp_path / "token"
        token_file.write_text("wrong-token\n")
        env = {**os.environ, "TASKRPC_TOKEN": "", "TASKRPC_TOKEN_FILE": ""}
        for how in (["--token", "wrong-token"], ["--token-file", str(token_file)]):
            done = subprocess.run(
                [str(BIN / "taskrpc-tui"), "--url", started.url, *how],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                env=env,
            )
            assert done.returncode == 2, done.stderr
            assert done.stderr.startswith("taskrpc-tui: the server refused the token"), how
            assert "Traceback" not in done.stderr
    finally:
        started.reap()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--time-scale", "-1"], "argument --time-scale:"),
    ],
)
def test_a_bad_option_is_one_line(args: list[str], says: str) -> None:
    """`taskrpc-tui` with a bad option exits 2 with one line naming it, not the usage block."""
    done = subprocess.run(
        [str(BIN / "taskrpc-tui"), *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"taskrpc-tui: {says}"), done.stderr
    assert done.stderr.endswith("; see 'taskrpc-tui --help'\n"), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_the_token_file_gives_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--token-file PATH` and TASKRPC_TOKEN_FILE give the token (trailing newline dropped)."""
    from tui.main import _parser

    path = tmp_path / "token"
    path.write_text("s3cret\n")
    monkeypatch.delenv("TASKRPC_TOKEN", raising=False)
    assert _parser().parse_args(["--token-file", str(path)]).token == "s3cret"
    monkeypatch.setenv("TASKRPC_TOKEN_FILE", str(path))
    assert _parser().parse_args([]).token == "s3cret"


# -- 6. queued rows live ---------------------------------------------------------------


async def test_queued_rows_show_a_live_wait_and_when_they_start(utc: None) -> None:
    """A queued row's WAITED grows with the clock, and its status says when it starts."""
    now = fixed.NOW
    app = Dashboard(fixed.FakeBackend(), connect=False, clock=lambda: now)
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        before = lines_of(app)[1]  # job05: queued at +24 s
        assert "queued #2 in ~10s" in before
        assert before.endswith("6.0s")
        now += 4.0
        app.jobs_screen.tick()
        await pilot.pause()
        after = lines_of(app)[1]
        assert after.endswith("10s")
        assert "queued #2 in ~7s" in after  # the running job is overdue: job04's 7 s are left


def test_a_long_queue_still_fits_the_status_column() -> None:
    """`queued #15000 ~2d04h` fits the STATUS column; days show as days."""
    jobs = model.Jobs()
    for n in range(3):
        jobs.put(update(n, f"q {n}", JobStatus.QUEUED))
    jobs.counts = {"queued": 15_000}
    jobs.by_id[update(2, "")["id"]].delay = 50.0
    cell = model.status_cell(jobs.by_id[update(2, "")["id"]], jobs, fixed.NOW)
    assert cell.cell_len <= model.STATUS_WIDTH
    assert cell.plain.startswith("queued #15000 ~")
    assert model.duration(3 * 86400 + 4 * 3600, whole=True) == "3d04h"


# -- 7. keys ---------------------------------------------------------------------------


async def test_vi_and_home_end_keys_move_the_cursor_and_end_follow_mode(utc: None) -> None:
    """j/k, g/G, Home/End move the cursor; moving it ends follow mode; the footer says so."""
    app = fixed.dashboard()
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        ids = [job["id"] for job in fixed.JOBS]
        for key, where in (("g", 0), ("j", 1), ("j", 2), ("k", 1), ("G", 5), ("home", 0)):
            await pilot.press(key)
            assert table(app).cursor_key == ids[where], key
        await pilot.press("end")
        assert table(app).cursor_key == ids[5]
        await pilot.press("f")
        assert app.jobs_screen.following
        await settle(pilot, lambda: "Following ●" in footer_of(app), "the footer says so")
        assert table(app).cursor_key == ids[0]  # the newest
        await pilot.press("j")
        assert not app.jobs_screen.following
        await settle(pilot, lambda: "f Follow " in footer_of(app), "the footer says so")
        assert "Following" not in footer_of(app)


async def test_an_80_column_footer_still_shows_follow_mode(utc: None) -> None:
    """At 80 columns the footer shows `f Follow`, then `Following ●`, before any cut key."""
    app = fixed.dashboard()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded_fixed(pilot)
        await settle(pilot, lambda: "f Follow " in footer_of(app), "the footer")
        await pilot.press("f")
        await settle(pilot, lambda: "Following ●" in footer_of(app), "the footer says so")


async def test_the_help_wraps_a_long_line_under_its_own_column(utc: None) -> None:
    """`?` lists every key; on a narrow terminal a long line wraps under its description."""
    app = fixed.dashboard()
    async with app.run_test(size=(60, 15)) as pilot:
        await loaded_fixed(pilot)
        await pilot.press("question_mark")
        await settle(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        lines = screen_text(app).splitlines()
        (first,) = [line for line in lines if "copy the selected job's id" in line]
        column = first.index("copy")
        follower = lines[lines.index(first) + 1]
        assert follower[:column].strip(" █") == "", follower  # nothing under the key column
        assert follower[column] != " ", follower
        shown = " ".join(line.strip(" █") for line in lines)
        assert all(key in shown for key, _ in KEYS[:5])


async def test_the_confirm_dialog_shows_its_own_keys_only(utc: None) -> None:
    """On the cancel question, the footer shows y Yes and n No, not the table's `n New`."""
    app = fixed.dashboard()
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        await pilot.press("x")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await settle(pilot, lambda: "y Yes" in footer_of(app), "its footer")
        footer = footer_of(app)
        assert "n No" in footer
        assert "New" not in footer


async def test_ctrl_c_quits(utc: None) -> None:
    """ctrl+c quits, as users expect."""
    app = fixed.dashboard()
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.return_code == 0
        assert not app.is_running or app._exit_renderables is not None


async def test_quitting_local_with_jobs_queued_asks_first(utc: None) -> None:
    """With `--local` and jobs queued or running, `q` asks; `n` stays, `y` quits."""
    app = Dashboard(fixed.FakeBackend(), connect=False, clock=lambda: fixed.NOW, local=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        await pilot.press("q")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert "3 queued or running" in screen_text(app)
        await pilot.press("n")
        await settle(pilot, lambda: app.screen is app.jobs_screen, "still running")
        await pilot.press("q")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await pilot.pause()
        assert app.return_code == 0


async def test_quitting_local_with_a_journal_says_the_jobs_resume(utc: None) -> None:
    """With `--local` keeping jobs in a file, the quit question says they resume, not lost."""
    app = Dashboard(
        fixed.FakeBackend(), connect=False, clock=lambda: fixed.NOW, local=True, kept=True
    )
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        await pilot.press("q")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        question = str(app.screen.query_one("#question", Static).render())
        assert "3 queued or running jobs stop now and resume at the next start" in question
        assert "lost" not in question


# -- 8. text cells, the id, the job type, big results ----------------------------------


def update(n: int, text: str, status: JobStatus = JobStatus.DONE) -> Any:
    times = (0.0, 1.0, 2.0) if status is JobStatus.DONE else (0.0, None, None)
    return fixed.job(n, "reverse", status, text, times)


async def test_cut_text_keeps_its_ellipsis_and_newlines_show(utc: None) -> None:
    """A cut text ends in a visible `…` inside its column; a newline shows as ⏎; controls
    and bidi overrides show as escapes, never raw."""
    app = fixed.dashboard()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded_fixed(pilot)
        jobs = [
            update(10, "x" * 39 + "y"),  # the preview is cut at 40: the text goes on
            update(11, "first line\nsecond line"),
            update(12, "\x1b]2;PWNED\x07 hi \u202eevil"),
        ]
        jobs[0]["length"] = 400
        app.jobs_screen.apply_changes(
            {"seq": 2, "jobs": jobs, "removed": [], "counts": fixed.SNAPSHOT["counts"]}
        )
        await settle(pilot, lambda: any("second line" in line for line in lines_of(app)), "rows")
        lines = {line[:9].strip(): line for line in lines_of(app)}
        text_column = next(c for c in layout(table(app).size.width - 1) if c.key == "text")
        assert text_column.width < 40
        cut = lines["job10abc"]
        assert "…" in cut
        assert cut.index("…") < cut.index("12:00:00")  # inside the TEXT column
        assert "first line⏎second line" in lines["job11abc"]
        drawn = "".join(
            segment.text for segment in table(app).render_line(list(lines).index("job12abc"))
        )
        assert "\x1b" not in drawn
        assert "\u202e" not in drawn
        assert "\\x1b]2;PWNED\\x07 hi \\u202e" in drawn


async def test_y_copies_the_whole_id_from_the_table(utc: None) -> None:
    """`y` on the table copies the selected job's full id (the column shows 8 of 16 at 80)."""
    app = fixed.dashboard()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded_fixed(pilot)
        await pilot.press("y")
        assert app.clipboard == fixed.JOBS[2]["id"]


async def test_the_submit_form_remembers_the_last_job_type(server: Server, client: Client) -> None:
    """After a `swap` job, the next new-job form starts on `swap`."""
    app = Dashboard(client)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: app.link is Link.CONNECTED, "connected")
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, SubmitScreen), "the form")
        app.screen.query_one("#type").value = "swap"  # type: ignore[attr-defined]
        await pilot.press(*"first", "enter")
        await settle(pilot, lambda: app.screen is app.jobs_screen, "submitted")
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, SubmitScreen), "the form again")
        assert app.screen.query_one("#type").value == "swap"  # type: ignore[attr-defined]


class BigResult(fixed.FakeBackend):
    """A finished job whose result is a megabyte."""

    async def result(self, job_id: str) -> str:
        return "r" * 1_000_000


async def test_a_result_too_big_for_the_clipboard_says_so_and_saves_to_a_file(
    utc: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`c` on a 1 MB result says it is too big and copies nothing; `s` saves it here."""
    monkeypatch.chdir(tmp_path)
    app = Dashboard(BigResult(), connect=False, clock=lambda: fixed.NOW)
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        await pilot.press("G", "enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen), "details")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await settle(pilot, lambda: screen.result is not None, "the result")
        await pilot.press("c")
        assert app.clipboard == ""
        assert any("too big" in str(note.message) for note in app._notifications)
        await pilot.press("s")
        saved = tmp_path / f"taskrpc-{fixed.DONE['id']}.txt"
        assert saved.read_text() == "r" * 1_000_000


# -- 9. the palette's screenshot -------------------------------------------------------


async def test_the_palettes_screenshot_saves_in_the_working_directory(
    utc: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command palette's Screenshot entry saves where the dashboard was started."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "no-home"))  # no ~/Downloads
    app = fixed.dashboard()
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        (command,) = [c for c in app.get_system_commands(app.screen) if c.title == "Screenshot"]
        command.callback()
        await until(lambda: any(tmp_path.glob("*.svg")), what="the screenshot")
    assert not any("Failed" in str(note.message) for note in app._notifications)


async def open_details(pilot: Pilot[None], app: Dashboard) -> None:
    """Open the details of the oldest job (the last row) and let them load."""
    await pilot.press("G", "enter")
    await settle(pilot, lambda: isinstance(app.screen, DetailScreen), "details")
    await app.workers.wait_for_complete()
    await pilot.pause()


# -- 10. details: local times, units, the JSON --------------------------------------------


async def test_details_show_local_times_and_units_and_r_shows_the_json(utc: None) -> None:
    """Local times, `2 s` and the attempts, not ISO UTC and a bare 2.0; `r` shows the JSON."""
    app = fixed.dashboard()
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        await open_details(pilot, app)
        shown = screen_text(app)
        assert "2027-01-01 12:00:01 (29s ago)" in shown
        assert "delay  2 s" in shown
        assert "attempts  1" in shown  # every field of the job object, the rerun count too
        assert "T12:00:01" not in shown
        await pilot.press("r")
        await pilot.pause()
        raw = screen_text(app)
        assert '"started_at": "2027-01-01T12:00:01.000Z"' in raw
        assert '"delay": 2.0' in raw


async def test_details_times_ago_grow_with_the_clock(utc: None) -> None:
    """The details' "29s ago" moves on with the clock, without a change to the job."""
    now = fixed.NOW
    app = Dashboard(fixed.FakeBackend(), connect=False, clock=lambda: now)
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        await open_details(pilot, app)
        assert "2027-01-01 12:00:01 (29s ago)" in screen_text(app)
        now += 60.0  # the screen's own timer redraws it (once a second)
        await settle(pilot, lambda: "12:00:01 (1m29s ago)" in screen_text(app), "a redraw")


class Hostile(fixed.FakeBackend):
    """A job whose text, result and id carry terminal escapes."""

    async def status(self, job_id: str) -> JobObject:
        return {**fixed.DONE, "data": "\x1b]2;PWNED\x07 line\nnext\tcol", "error": None}

    async def result(self, job_id: str) -> str:
        return "\x1b[31mred\x1b[0m"


async def test_details_never_show_raw_escapes_but_keep_newlines_and_tabs(utc: None) -> None:
    """The details' text and result show escapes as `\\x1b`; newlines and tabs are kept."""
    app = Dashboard(Hostile(), connect=False, clock=lambda: fixed.NOW)
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        await open_details(pilot, app)
        data = str(app.screen.query_one("#data", Static).render())
        result = str(app.screen.query_one("#result", Static).render())
        assert data == "\\x1b]2;PWNED\\x07 line\nnext\tcol"
        assert result == "\\x1b[31mred\\x1b[0m"


async def test_toasts_are_plain_text_without_control_characters(utc: None) -> None:
    """A toast with markup-like text or an escape shows it literally; nothing raises."""
    app = fixed.dashboard()
    async with app.run_test(size=SIZE) as pilot:
        await loaded_fixed(pilot)
        app.jobs_screen.notify("job [/oops] \x1b]2;PWNED\x07 [bold]x[/bold]", title="\x1b[31m")
        await pilot.pause()
        (note,) = [n for n in app._notifications if "oops" in n.message]
        assert note.message == "job [/oops] \\x1b]2;PWNED\\x07 [bold]x[/bold]"
        assert note.title == "\\x1b[31m"
        assert not note.markup


async def test_the_filter_box_leaves_the_header_and_the_tables_width(utc: None) -> None:
    """Typing a filter at 60x15 keeps the header in sight and the table the whole width;
    the footer offers escape to clear it."""
    app = fixed.dashboard()
    async with app.run_test(size=(60, 15)) as pilot:
        await loaded_fixed(pilot)
        await pilot.press("slash", *"swap")
        await settle(pilot, lambda: screen_text(app).splitlines()[2].strip() == "swap", "filter")
        shown = screen_text(app).splitlines()
        assert "taskrpc" in shown[0]
        assert shown[2].strip() == "swap"
        assert table(app).region.width == 60
        assert "esc Clear filter" in shown[-1]


async def test_details_follow_a_running_job_to_its_result(start_server: StartServer) -> None:
    """Opened while the job runs, the details show it running, then done with its result
    (through the client's `follow`, the one way to follow a job)."""
    server = await start_server(time_scale=1.5)  # 3 s: long enough to open the details
    job = await server.store.submit("reverse", "пример")
    async with Client(server.url) as client:
        app = Dashboard(client)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: job.id in table(app), "the row")
            await settle(pilot, lambda: job.status is JobStatus.RUNNING, "running")
            await pilot.press("enter")
            await settle(pilot, lambda: isinstance(app.screen, DetailScreen), "details")
            screen = app.screen
            assert isinstance(screen, DetailScreen)
            await settle(pilot, lambda: screen.job is not None, "the job")
            assert screen.job is not None
            assert screen.job["status"] == "running"
            await settle(pilot, lambda: screen.result == "ремирп", "the result")
            assert screen.job["status"] == "done"
