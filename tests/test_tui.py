"""The dashboard against a real server on a free port, driven with Textual's pilot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from textual.pilot import Pilot
from textual.widgets import Input, Static

from backend.app import QUEUE, start
from backend.protocol import JobStatus
from backend.settings import Settings
from cli.client import Client
from tests.conftest import Server, StartServer, until
from tui.app import Dashboard, JobTable, Link
from tui.screens import ConfirmScreen, DetailScreen, SubmitScreen

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
    return app.query_one(JobTable)


async def test_submit_watch_and_read_the_result(server: Server, client: Client) -> None:
    """Submit through the modal → the row appears → it is done → details show the result."""
    app = Dashboard(client)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: app.link is Link.CONNECTED, "connected")
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, SubmitScreen), "the submit modal")
        await pilot.press(*"пример", "enter")
        await settle(pilot, lambda: table(app).row_count == 1, "the new row")
        (job,) = server.queue.newest()
        assert table(app).cursor_key == job.id
        await settle(pilot, lambda: app.jobs.by_id[job.id].status is JobStatus.DONE, "done")
        assert str(table(app).get_cell(job.id, "status")) == "done"
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen), "details")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await settle(pilot, lambda: screen.result is not None, "the result")
        assert screen.result == "ремирп"
        shown = {active.binding.action for active in screen.active_bindings.values()}
        assert {"app.pop_screen", "copy_result", "copy_id"} <= shown
        assert not shown & {"new", "cancel_job", "filter", "sort", "leave"}  # the table's keys
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
        app.screen.query_one("#text", Input).value = "x" * (server.queue.max_text_chars + 1)
        await pilot.press("enter")
        error = app.screen.query_one("#error", Static)
        await settle(pilot, lambda: "the limit is" in str(error.render()), "the server's message")
        assert isinstance(app.screen, SubmitScreen)
        assert len(app.screen.query_one("#text", Input).value) == server.queue.max_text_chars + 1
        assert server.queue.queued == 0


async def test_cancel_asks_first(start_server: StartServer) -> None:
    """`x` asks for confirmation; `n` keeps the job, `y` cancels it."""
    server = await start_server(time_scale=1000)
    running = server.queue.submit("reverse", "busy")
    waiting = server.queue.submit("swap", "waiting")
    async with Client(server.url) as client:
        app = Dashboard(client)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: table(app).row_count == 2, "two rows")
            table(app).move_to(waiting.id)
            await pilot.press("x")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            await pilot.press("n")
            await pilot.pause()
            assert waiting.status is JobStatus.QUEUED
            await pilot.press("x")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            await pilot.press("y")
            await settle(pilot, lambda: server.queue.get(waiting.id).status.finished, "cancelled")
            await settle(
                pilot, lambda: str(table(app).get_cell(waiting.id, "status")) == "cancelled", "row"
            )
            assert running.status is JobStatus.RUNNING


async def test_filter_and_sort_keep_the_cursor_on_its_job(start_server: StartServer) -> None:
    """Filtering, sorting and reversing move rows, never the cursor off its job; escape clears."""
    server = await start_server(time_scale=1000)
    jobs = [
        server.queue.submit(kind, f"{kind} {n}") for n in range(5) for kind in ("reverse", "swap")
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
            first = server.queue.submit("swap", "first")
            await settle(pilot, lambda: first.id in app.jobs.by_id, "first shown")
            await settle(pilot, lambda: app.jobs.by_id[first.id].status.finished, "first done")
            second = server.queue.submit("swap", "second")
            await settle(pilot, lambda: first.id not in table(app).rows, "the first row gone")
            await settle(pilot, lambda: second.id in table(app).rows, "the second row")
            assert list(app.jobs.by_id) == [second.id]
            assert "1 of 1" in str(table(app).border_title)


async def test_server_restart_shows_reconnecting_then_a_fresh_snapshot() -> None:
    """Stop the server: rows stay, marked stale, reconnecting; a new server: its jobs only."""
    first, url = await _serve(0)
    old = first.app[QUEUE].submit("reverse", "old server")
    port = int(url.rsplit(":", 1)[1])
    try:
        async with Client(url) as client:
            app = Dashboard(client)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot, lambda: old.id in table(app).rows, "the old job")
                await first.cleanup()
                await settle(pilot, lambda: app.link is Link.RECONNECTING, "reconnecting")
                assert old.id in table(app).rows
                assert table(app).has_class("-stale")
                second, _ = await _serve(port)
                try:
                    new = second.app[QUEUE].submit("swap", "new server")
                    await settle(pilot, lambda: app.link is Link.CONNECTED, "connected again")
                    await settle(pilot, lambda: new.id in table(app).rows, "the new job")
                    assert old.id not in table(app).rows
                    assert not table(app).has_class("-stale")
                finally:
                    await second.cleanup()
    finally:
        await first.cleanup()


async def _serve(port: int) -> tuple[web.AppRunner, str]:
    """A server on 127.0.0.1:`port` whose lifetime the test controls."""
    return await start(Settings(port=port, time_scale=1000))
