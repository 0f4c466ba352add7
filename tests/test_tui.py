"""The dashboard against a real server on a free port, driven with Textual's pilot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from textual.pilot import Pilot
from textual.widgets import Input, Static

from backend.app import STORE, start
from backend.protocol import JobStatus, JobSummary
from backend.settings import Settings
from cli.client import Client, Unreachable
from tests.conftest import Server, StartServer, until
from tui import search as tui_search
from tui.app import Dashboard
from tui.confirm import ConfirmScreen
from tui.details import DetailScreen
from tui.status import Link, Search
from tui.submit import SubmitScreen
from tui.table import JobTable

SIZE = (120, 36)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    """The client library, connected to `server`."""
    async with Client(server.url) as connected:
        yield connected


async def settle(pilot: Pilot[None], predicate: object, what: str) -> None:
    """Let the app run until `predicate()` holds."""
    assert callable(predicate)
    await until(predicate, what=what)
    await pilot.pause()


def table(app: Dashboard) -> JobTable:
    return app.jobs_screen.table


def cell(app: Dashboard, job_id: str, key: str) -> str:
    """What the job's row shows in column `key`."""
    return table(app).cell_text(job_id, key)


def search(app: Dashboard) -> Search:
    return app.jobs_screen.search.state


async def test_submit_watch_and_read_the_result(server: Server, client: Client) -> None:
    """Submit through the modal → the row appears → it is done → details show the result."""
    app = Dashboard(client)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: app.link is Link.CONNECTED, "connected")
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, SubmitScreen), "the submit modal")
        await pilot.press(*"пример", "enter")
        await settle(pilot, lambda: table(app).row_count == 1, "the new row")
        (job,) = server.store.newest()
        assert table(app).cursor_key == job.id
        await settle(pilot, lambda: app.jobs.by_id[job.id].status is JobStatus.DONE, "done")
        assert cell(app, job.id, "status") == "done"
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen), "details")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await settle(pilot, lambda: screen.result is not None, "the result")
        assert screen.result == "ремирп"
        shown = {active.binding.action for active in screen.active_bindings.values()}
        assert {"app.pop_screen", "copy_result", "copy_id"} <= shown
        assert not shown & {"new", "cancel_job", "filter", "sort"}  # the table's keys
        await pilot.press("n")  # the table's keys do nothing here
        assert app.screen is screen
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


async def test_the_servers_validation_message_shows_in_the_modal(
    server: Server, client: Client
) -> None:
    """A text the server refuses keeps the modal open with the server's message and the input."""
    app = Dashboard(client)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: app.link is Link.CONNECTED, "connected")
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, SubmitScreen), "the submit modal")
        app.screen.query_one("#text", Input).value = "x" * (server.store.limits.max_text_chars + 1)
        await pilot.press("enter")
        error = app.screen.query_one("#error", Static)
        await settle(pilot, lambda: "the limit is" in str(error.render()), "the server's message")
        assert isinstance(app.screen, SubmitScreen)
        assert (
            len(app.screen.query_one("#text", Input).value)
            == server.store.limits.max_text_chars + 1
        )
        assert server.store.queued == 0


async def test_cancel_asks_first(start_server: StartServer) -> None:
    """`x` asks for confirmation; `n` keeps the job, `y` cancels it."""
    server = await start_server(time_scale=1000)
    running = await server.store.submit("reverse", "busy")
    waiting = await server.store.submit("swap", "waiting")
    async with Client(server.url) as client:
        app = Dashboard(client)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: table(app).row_count == 2, "two rows")
            table(app).move_to(waiting.id)
            await pilot.press("x")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            await pilot.press("n")
            await settle(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "no question")
            # A job submitted now shows only after a notification's round trip: a cancel sent
            # on `n` would have reached the server by then.
            later = await server.store.submit("reverse", "later")
            await settle(pilot, lambda: table(app).row_count == 3, "the later job's row")
            assert waiting.status is JobStatus.QUEUED
            await server.store.cancel(later.id)
            await pilot.press("x")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            await pilot.press("y")
            await settle(pilot, lambda: server.store.get(waiting.id).status.finished, "cancelled")
            await settle(pilot, lambda: cell(app, waiting.id, "status") == "cancelled", "row")
            assert running.status is JobStatus.RUNNING


async def test_filter_and_sort_keep_the_cursor_on_its_job(start_server: StartServer) -> None:
    """Filtering, sorting and reversing move rows, never the cursor off its job; escape clears."""
    server = await start_server(time_scale=1000)
    jobs = [
        await server.store.submit(kind, f"{kind} {n}")
        for n in range(5)
        for kind in ("reverse", "swap")
    ]
    target = jobs[3]  # a swap job
    async with Client(server.url) as client:
        app = Dashboard(client)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: table(app).row_count == 10, "ten rows")
            table(app).move_to(target.id)
            for key in ("s", "s", "S", "s"):
                await pilot.press(key)
                assert table(app).cursor_key == target.id, key
            await pilot.press("slash", *"type:swap", "enter")
            await settle(pilot, lambda: table(app).row_count == 5, "five swap rows")
            assert table(app).cursor_key == target.id
            assert "5 of 10" in str(table(app).border_title)
            await pilot.press("escape")
            await settle(pilot, lambda: table(app).row_count == 10, "all rows again")
            assert table(app).cursor_key == target.id


async def test_rows_of_jobs_the_server_forgets_go(start_server: StartServer) -> None:
    """A finished job the server evicts loses its row, though it did not change just then."""
    server = await start_server(max_finished=1)
    async with Client(server.url) as client:
        app = Dashboard(client)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: app.link is Link.CONNECTED, "connected")
            first = await server.store.submit("swap", "first")
            await settle(pilot, lambda: first.id in app.jobs.by_id, "first shown")
            await settle(pilot, lambda: app.jobs.by_id[first.id].status.finished, "first done")
            second = await server.store.submit("swap", "second")
            await settle(pilot, lambda: first.id not in table(app), "the first row gone")
            await settle(pilot, lambda: second.id in table(app), "the second row")
            assert list(app.jobs.by_id) == [second.id]
            assert "1 of 1" in str(table(app).border_title)


class Recorder(Client):
    """The client library, noting each `list` call (`fail`: each one fails as if unreachable)."""

    def __init__(self, url: str, fail: bool = False) -> None:
        super().__init__(url)
        self.fail = fail
        self.calls: list[tuple[JobStatus | None, int, str | None]] = []

    async def jobs(
        self, status: JobStatus | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[JobSummary], dict[str, int], str | None]:
        self.calls.append((status, limit, cursor))
        if self.fail:
            raise Unreachable(self.url, "connection refused")
        return await super().jobs(status, limit, cursor)


async def test_the_filter_finds_old_jobs_beyond_the_snapshot(start_server: StartServer) -> None:
    """With only the newest 5 jobs held, a filter asks the server for the older ones; escape
    drops them again."""
    server = await start_server(time_scale=1000)
    await server.store.submit("reverse", "busy")  # runs for a long time: the others stay queued
    needle = await server.store.submit("swap", "needle in the hay")
    hay = [await server.store.submit("reverse", f"hay {n}") for n in range(20)]
    async with Recorder(server.url) as client:
        app = Dashboard(client, max_rows=5)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: table(app).row_count == 5, "the newest five")
            assert "(newest 5 of 22 on the server)" in str(table(app).border_title)
            assert needle.id not in table(app)
            await pilot.press("slash")  # the whole filter at once: a half-typed one may search
            app.jobs_screen.query_one("#filter", Input).value = "needle"
            await pilot.press("enter")
            await settle(pilot, lambda: search(app) is Search.DONE, "the search")
            assert table(app).ids == [needle.id]
            assert cell(app, needle.id, "status").startswith("queued #1 ")
            title = str(table(app).border_title)
            assert "1 of 22" in title
            assert "searched the server's older jobs" in title
            # one page, from just before the oldest job held
            assert client.calls == [(None, tui_search.SEARCH_PAGE, str(hay[15].seq))]
            await pilot.press("escape")
            await settle(pilot, lambda: table(app).row_count == 5, "the newest five again")
            assert needle.id not in app.jobs.by_id
            assert "(newest 5 of 22 on the server)" in str(table(app).border_title)


async def test_the_search_passes_the_status_and_is_bounded(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`status:queued` is asked of the server; the search stops after SEARCH_OLDER older jobs
    and the title says the server has more."""
    monkeypatch.setattr(tui_search, "SEARCH_PAGE", 3)
    monkeypatch.setattr(tui_search, "SEARCH_OLDER", 4)
    server = await start_server(time_scale=1000)
    await server.store.submit("reverse", "busy")
    oldest = await server.store.submit("swap", "hay oldest")
    hay = [await server.store.submit("reverse", f"hay {n}") for n in range(20)]
    async with Recorder(server.url) as client:
        app = Dashboard(client, max_rows=5)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: table(app).row_count == 5, "the newest five")
            await pilot.press("slash")  # the whole filter at once: a half-typed one may search
            app.jobs_screen.query_one("#filter", Input).value = "status:queued hay"
            await pilot.press("enter")
            await settle(pilot, lambda: search(app) is Search.PARTIAL, "the search")
            assert {status for status, _, _ in client.calls} == {JobStatus.QUEUED}
            # pages of 3, starting just before the oldest held job: 6 older jobs read, enough
            assert [cursor for _, _, cursor in client.calls] == [
                str(hay[15].seq),
                str(hay[12].seq),
            ]
            assert set(table(app).ids) == {job.id for job in hay[9:]}
            assert oldest.id not in table(app)
            assert "searched 6 older jobs, more on the server" in str(table(app).border_title)
            # 21 queued: `hay 11` runs 13th, though the jobs before it are not held
            assert cell(app, hay[11].id, "status").startswith("queued #13 ")


async def test_a_failed_search_is_a_notification(start_server: StartServer) -> None:
    """The server's older jobs cannot be read: a notification, the title says so, rows stay."""
    server = await start_server(time_scale=1000)
    for n in range(8):
        await server.store.submit("reverse", f"hay {n}")
    async with Recorder(server.url, fail=True) as client:
        app = Dashboard(client, max_rows=5)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: table(app).row_count == 5, "the newest five")
            await pilot.press("slash", *"hay", "enter")
            await settle(pilot, lambda: search(app) is Search.FAILED, "the failed search")
            assert table(app).row_count == 5
            assert "older jobs not searched" in str(table(app).border_title)
            assert any("cannot search" in str(note.message) for note in app._notifications)


async def test_server_restart_shows_reconnecting_then_a_fresh_snapshot() -> None:
    """Stop the server: rows stay, marked stale, reconnecting; a new server: its jobs only."""
    first, url = await _serve(0)
    old = await first.app[STORE].submit("reverse", "old server")
    port = int(url.rsplit(":", 1)[1])
    try:
        async with Client(url) as client:
            app = Dashboard(client)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot, lambda: old.id in table(app), "the old job")
                await first.cleanup()
                await settle(pilot, lambda: app.link is Link.RECONNECTING, "reconnecting")
                assert old.id in table(app)
                assert table(app).has_class("-stale")
                second, _ = await _serve(port)
                try:
                    new = await second.app[STORE].submit("swap", "new server")
                    await settle(pilot, lambda: app.link is Link.CONNECTED, "connected again")
                    await settle(pilot, lambda: new.id in table(app), "the new job")
                    assert old.id not in table(app)
                    assert not table(app).has_class("-stale")
                finally:
                    await second.cleanup()
    finally:
        await first.cleanup()


async def _serve(port: int) -> tuple[web.AppRunner, str]:
    """A server on 127.0.0.1:`port` whose lifetime the test controls."""
    return await start(Settings(port=port, time_scale=1000, db=":memory:"))


async def test_screenshot_lands_in_the_working_directory(
    server: Server, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The palette's Screenshot saves an SVG where the dashboard was started."""
    monkeypatch.chdir(tmp_path)
    app = Dashboard(client)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: app.link is Link.CONNECTED, "the connection")
        app.action_screenshot()
        await pilot.pause()
    assert "taskrpc" in only_svg_in(tmp_path)


def only_svg_in(folder: Path) -> str:
    """The text of the one SVG file in `folder`."""
    (saved,) = folder.glob("*.svg")
    return saved.read_text()


async def test_new_job_without_a_server_says_so_at_once(start_server: StartServer) -> None:
    """While reconnecting, `n` tells there is no server instead of swallowing the next keys."""
    server = await start_server()
    async with Client(server.url) as client:
        app = Dashboard(client)
        async with app.run_test(size=SIZE) as pilot:
            # connected first: the types loaded on connecting must not land after this
            await settle(pilot, lambda: app.link is Link.CONNECTED, "connected")
            app.jobs_screen.types = None  # as if the types were never loaded
            app.jobs_screen.link = Link.RECONNECTING
            await pilot.press("n")
            await pilot.pause()
            assert not isinstance(app.screen, SubmitScreen)
            assert any("no server" in str(note.message) for note in app._notifications)


async def test_the_header_names_the_runner_of_a_cluster(
    pg_url: str, start_server: StartServer
) -> None:
    """On a shared PostgreSQL queue the header says which server runs the jobs: the runner
    says it is, a standby names the runner's URL."""
    runner = await start_server(db=pg_url)
    standby = await start_server(db=pg_url)
    await shows_in_header(runner.url, f"{runner.url} · the runner")
    await shows_in_header(standby.url, f"{standby.url} · standby, the runner is {runner.url}")


async def shows_in_header(url: str, header: str) -> None:
    """The dashboard connected to `url` comes to show `header` under its title."""
    async with Client(url) as client:
        app = Dashboard(client)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: app.sub_title == header, f"{header!r} in the header")
