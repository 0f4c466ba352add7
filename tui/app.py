"""The taskrpc dashboard: a live job table fed by the server's WebSocket, keyboard-driven."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import os
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

from rich.text import Text
from textual import on, work
from textual._two_way_dict import TwoWayDict
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.widgets.data_table import CellDoesNotExist, DuplicateKey, Row, RowKey

from backend.protocol import (
    LIST_LIMIT,
    Changes,
    JobObject,
    JobStatus,
    JobSummary,
    RpcError,
    Snapshot,
    Unauthorized,
)
from cli.client import Client, Subscription, TransportError
from tui import model
from tui.screens import ConfirmScreen, DetailScreen, HelpScreen, SubmitScreen

MAX_ROWS = 10_000  # newest jobs asked for in a snapshot; the title says when there are more
# Seconds between redraws of the running job's progress (local clock only). Any cell update
# makes Textual's DataTable redraw every visible row, 30-70 ms here: every 0.1 s, that kept
# a core 70 % busy just to move a progress bar; every second, it is under 10 %.
TICK = 1.0
BACKOFF_FIRST = 0.25  # seconds before the first reconnect attempt, doubled each time…
BACKOFF_CAP = 3.0  # …up to this
FILTER_DEBOUNCE = 0.15  # seconds of quiet typing before the filter is applied
SEARCH_PAGE = LIST_LIMIT  # jobs per `list` call when a filter searches the server's older jobs
SEARCH_OLDER = 5_000  # a filter reads at most this many older jobs (beyond those held)

KEYS: tuple[tuple[str, str], ...] = (
    ("n", "new job: type and text"),
    ("enter", "details: every field, the full text and result"),
    ("c / y", "(in details) copy the result / the id"),
    ("x", "cancel the selected job (asks first)"),
    ("/", "filter: free text, status:failed, type:swap"),
    ("escape", "clear the filter / go back"),
    ("s / S", "cycle the sort column / reverse the order"),
    ("f", "follow the newest job"),
    ("ctrl+p", "command palette"),
    ("?", "this help"),
    ("q", "quit"),
)


# The actions of the main screen's keys: other screens show (and obey) their own keys only.
MAIN_ACTIONS = frozenset(
    ("new", "cancel_job", "filter", "clear_filter", "sort", "reverse", "follow", "help", "leave")
)


class Backend(Protocol):
    """What the dashboard needs from the client library (`cli.client.Client` has it all)."""

    url: str

    async def submit(self, job_type: int | str, data: str) -> JobObject: ...
    async def status(self, job_id: str) -> JobObject: ...
    async def result(self, job_id: str) -> str: ...
    async def wait(
        self, job_id: str, timeout: float, seen: JobObject | None = None
    ) -> JobObject: ...
    async def cancel(self, job_id: str) -> JobObject: ...
    async def types(self) -> list[dict[str, Any]]: ...
    def subscribe(self, limit: int = 1000) -> Subscription: ...


@runtime_checkable
class Pager(Protocol):
    """A backend that also pages through every job the server knows (`list`): the filter
    uses it to search the jobs older than the snapshot. `Client` has it."""

    async def jobs(
        self, status: JobStatus | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[JobSummary], dict[str, int], str | None]: ...


class Search(enum.Enum):
    """How far the filter's search of the server's older jobs got."""

    NONE = "none"  # no filter, or the dashboard holds every job the server knows
    RUNNING = "running"
    DONE = "done"  # every older job that can match was read
    PARTIAL = "partial"  # stopped after SEARCH_OLDER older jobs: the server has more
    FAILED = "failed"


class Link(enum.StrEnum):
    """The state of the connection to the server."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"


class JobTable(DataTable[model.Cell]):
    """The job table: fixed-width columns (nothing to measure), rows keyed by job id."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "app.details", "Details"),
    ]

    def order_by(self, key: Callable[[str], Any], reverse: bool) -> None:
        """Reorder the rows by a key of their job id; the cursor stays on its job."""
        keep = self.cursor_key
        self.sort("id", key=lambda cell: key(cell.job_id), reverse=reverse)
        self.move_to(keep)

    @property
    def cursor_key(self) -> str | None:
        """The id of the job under the cursor."""
        if not self.row_count:
            return None
        with contextlib.suppress(CellDoesNotExist):
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        return None

    def move_to(self, job_id: str | None) -> None:
        """Put the cursor on this job's row, if it is shown."""
        if job_id is not None and job_id in self.rows:
            self.move_cursor(row=self.get_row_index(job_id), animate=False, scroll=True)

    def on_screen(self, job_id: str) -> bool:
        """Is this job's row in the part of the table on screen (give or take a row)?"""
        if job_id not in self.rows:
            return False
        top = round(self.scroll_y)  # every row is one line high
        return top - 1 <= self.get_row_index(job_id) <= top + self.size.height


def splice_rows(
    table: JobTable,
    remove: Collection[str] = (),
    add: Sequence[tuple[str, Sequence[model.Cell]]] = (),
) -> None:
    """Remove and append many rows in one pass, then redraw (with nothing to do: just redraw).

    The one place that touches DataTable internals (Textual 8.2.8, pinned). The public
    `remove_row` renumbers every row on each call (1 000 of 10 000 rows: seconds) and
    `add_row` measures every new cell; here every column has a fixed width and every row
    is one line high, so nothing needs measuring and one renumbering is enough. Bumping
    `_update_count` drops the render caches (a queued cell's rank is read when drawn).
    """
    gone = {RowKey(job_id) for job_id in remove if job_id in table.rows}
    locations = table._row_locations
    order = [cast(RowKey, locations.get_key(index)) for index in range(len(locations))]
    if gone:
        order = [row_key for row_key in order if row_key not in gone]
        for row_key in gone:
            del table.rows[row_key]
            del table._data[row_key]
    columns = [column.key for column in table.ordered_columns]
    for job_id, row in add:
        row_key = RowKey(job_id)
        if row_key in table.rows:
            raise DuplicateKey(f"row {job_id} is already in the table")
        order.append(row_key)
        table._data[row_key] = dict(zip(columns, row, strict=True))
        table.rows[row_key] = Row(row_key, 1)
    if gone or add:
        table._row_locations = TwoWayDict({row_key: i for i, row_key in enumerate(order)})
        table._require_update_dimensions = True  # the scrollable height, on idle
        table.cursor_coordinate = table.cursor_coordinate  # clamped to the rows left
        table.check_idle()
    table._update_count += 1
    table.refresh()


class Dashboard(App[None]):
    """The live dashboard of one taskrpc server."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "taskrpc"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new", "New"),
        Binding("x", "cancel_job", "Cancel"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse", key_display="S"),
        Binding("f", "follow", "Follow"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "leave", "Quit"),
    ]

    def __init__(
        self,
        backend: Backend,
        *,
        connect: bool = True,
        clock: Callable[[], float] = time.time,
        max_rows: int = MAX_ROWS,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.connect = connect
        self.clock = clock
        self.max_rows = max_rows
        self.jobs = model.Jobs()
        self.link = Link.CONNECTING
        self.attempt = 0
        self.filter_words: list[str] = []
        self.sort_column = model.SORTS[0]
        self.sort_reverse = True  # newest first
        self.following = False
        self._focus_when_shown: str | None = None
        self._types: list[dict[str, Any]] | None = None  # the server's job types, once connected
        self._filter_timer: Any = None
        self._anchor: str | None = None  # the job the cursor returns to while a filter is typed
        self.search = Search.NONE
        self._searched = 0  # older jobs the current search has read
        self._older: set[str] = set()  # ids of the older jobs the search added (not in the feed)
        self._progress_stale = False  # a tick passed while the running row was out of sight
        # Kept, not queried: the feed may still deliver while the app shuts its screen down.
        self._table = JobTable(id="jobs", cursor_type="row", zebra_stripes=True)
        self._status_bar = Static(id="status-bar")

    # -- layout ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(icon="⚙")
        yield self._status_bar
        yield Input(
            placeholder="filter: words, status:failed, type:swap — escape clears", id="filter"
        )
        table = self._table
        for key, label, width in model.COLUMNS:
            table.add_column(label, width=width, key=key)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.backend.url
        self.query_one("#filter", Input).display = False
        self._table.focus()
        self.refresh_status()
        self.set_interval(TICK, self.tick)
        self.watch(self._table, "scroll_y", self._scrolled, init=False)
        if self.connect:
            self.follow_server()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The table's keys work, and show in the footer, on the table's screen only."""
        screen = self.screen  # a modal screen stops the keys itself, and dims the footer
        return action not in MAIN_ACTIONS or screen is self.screen_stack[0] or screen.is_modal

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if screen is not self.screen_stack[0]:
            return
        yield SystemCommand("New job", "Submit a job (n)", self.action_new)
        yield SystemCommand("Details", "Show the selected job (enter)", self.action_details)
        yield SystemCommand("Cancel job", "Cancel the selected job (x)", self.action_cancel_job)
        yield SystemCommand("Filter", "Filter the jobs (/)", self.action_filter)
        yield SystemCommand("Clear filter", "Show every job (escape)", self.action_clear_filter)
        yield SystemCommand("Sort", "Sort by the next column (s)", self.action_sort)
        yield SystemCommand("Reverse", "Reverse the sort order (S)", self.action_reverse)
        yield SystemCommand("Follow", "Follow the newest job (f)", self.action_follow)
        yield SystemCommand("Help", "Every key (?)", self.action_help)

    # -- the feed -------------------------------------------------------------------

    @work(exclusive=True, group="feed", exit_on_error=False)
    async def follow_server(self) -> None:
        """Subscribe; apply every change; on any failure back off and subscribe again."""
        while True:
            try:
                async with self.backend.subscribe(self.max_rows) as feed:
                    assert feed.snapshot is not None
                    self.set_link(Link.CONNECTED)
                    self._types = await self.backend.types()
                    self.apply_snapshot(feed.snapshot)
                    async for event in feed:
                        if "removed" in event:
                            self.apply_changes(cast(Changes, event))
                        else:
                            self.apply_snapshot(event)
                raise TransportError("the server closed the connection")
            except Unauthorized as exc:
                self.set_link(Link.DISCONNECTED, str(exc))
                return  # the same token will be refused again
            except (TransportError, RpcError, OSError) as exc:
                self.attempt += 1
                self.set_link(Link.RECONNECTING, str(exc))
                await asyncio.sleep(min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (self.attempt - 1)))

    def set_link(self, link: Link, reason: str = "") -> None:
        """Record the connection state; notify only when it changes."""
        changed = link is not self.link
        previous, self.link = self.link, link
        if link is Link.CONNECTED:
            self.attempt = 0
        self._table.set_class(link is not Link.CONNECTED, "-stale")
        self.refresh_status()
        if not changed:
            return
        if link is Link.CONNECTED and previous is not Link.CONNECTING:
            self.notify("connected again: fresh snapshot", title="Server")
        elif link is Link.RECONNECTING and previous is Link.CONNECTED:
            self.notify(
                f"connection lost, reconnecting: {reason}", title="Server", severity="warning"
            )
        elif link is Link.RECONNECTING and previous is Link.CONNECTING:
            self.notify(reason, title="Server", severity="warning")
        elif link is Link.DISCONNECTED:
            self.notify(reason, title="Server", severity="error", timeout=30)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Start over from a snapshot: rows of jobs the server no longer has go."""
        self.stop_search()
        self.jobs.reset(snapshot["jobs"], snapshot["counts"], snapshot["total"])
        self.jobs.limit = snapshot["limit"]
        self.rebuild()
        self.start_search()  # a filter searches the older jobs again
        # The snapshot's objects (some 10^5 for 10 000 jobs) live long: move them out of the
        # collector's reach, or every full collection rescans them (~0.1 s, mid-burst).
        gc.freeze()

    def apply_changes(self, changes: Changes) -> None:
        """Update the rows of the changed jobs in place, add and drop rows, in one batch."""
        table = self._table
        now = self.clock()
        remove: list[str] = []
        add: list[tuple[str, tuple[model.Cell, ...]]] = []
        with self.batch_update():
            self.jobs.counts = changes["counts"]
            self.jobs.total = sum(changes["counts"].values())
            for job_id in changes["removed"]:  # forgotten by the server
                self.jobs.forget(job_id)
                self._older.discard(job_id)
                remove.append(job_id)
            for update in changes["jobs"]:
                job, old = self.jobs.put(update)
                if not job.matches(self.filter_words):
                    remove.append(job.id)
                elif job.id in table.rows:
                    self._update_row(table, job, old, now)
                else:
                    add.append((job.id, model.cells(job, self.jobs, now)))
            splice_rows(table, remove, add)  # also redraws the queued ranks on screen
            if add or self.sort_column != "submitted":
                self.resort()
            self._after_change(table)

    def rebuild(self) -> None:
        """Fill the table anew (after a snapshot or a new filter); the cursor keeps its job."""
        table = self._table
        keep = self._anchor or table.cursor_key
        now = self.clock()
        words = self.filter_words
        rows = [
            (job.id, model.cells(job, self.jobs, now))
            for job in self.jobs.by_id.values()
            if job.matches(words)
        ]
        with self.batch_update():
            table.clear()
            splice_rows(table, add=rows)
            self.resort()
            table.move_to(keep)
            self._after_change(table)

    def _update_row(
        self, table: JobTable, job: model.Job, old: model.Job | None, now: float
    ) -> None:
        if old is None or old.preview != job.preview or old.length != job.length:
            row = model.cells(job, self.jobs, now)
            for (key, _, _), cell in zip(model.COLUMNS, row, strict=True):
                table.update_cell(job.id, key, cell)
            return
        table.update_cell(job.id, "status", model.status_cell(job, self.jobs, now))
        table.update_cell(job.id, "waited", model.duration_cell(job.waited(now)))
        table.update_cell(job.id, "ran", model.duration_cell(job.ran(now)))

    def _after_change(self, table: JobTable) -> None:
        if self._focus_when_shown is not None and self._focus_when_shown in table.rows:
            table.move_to(self._focus_when_shown)
            self._focus_when_shown = None
        elif self.following and table.row_count:
            newest = max(self.jobs.by_id.values(), key=lambda job: job.seq, default=None)
            if newest is not None:
                table.move_to(newest.id)
        self.refresh_title()
        self.refresh_status()

    def resort(self) -> None:
        table = self._table
        key = model.sort_key(self.sort_column, self.clock())
        by_id = self.jobs.by_id
        table.order_by(lambda job_id: key(by_id[job_id]), self.sort_reverse)

    def tick(self) -> None:
        """Advance the running job's progress from the local clock: no server traffic."""
        running = self.jobs.running
        if running is None or self.link is not Link.CONNECTED:
            return
        table = self._table
        if not table.on_screen(running.id):
            self._progress_stale = True  # any cell update redraws the table: none out of sight
            return
        now = self.clock()
        with self.batch_update():
            table.update_cell(running.id, "status", model.status_cell(running, self.jobs, now))
            table.update_cell(running.id, "ran", model.duration_cell(running.ran(now)))
        self._progress_stale = False

    def _scrolled(self) -> None:
        """Bring the running job's progress up to date as soon as its row comes into sight."""
        if self._progress_stale:
            self.tick()

    # -- the filter's search of the server's older jobs ------------------------------

    @property
    def held(self) -> int:
        """Jobs the feed keeps current: the snapshot's and those changed since."""
        return len(self.jobs.by_id) - len(self._older)

    def start_search(self) -> None:
        """If the server knows jobs the dashboard does not hold, look among them (newest
        first, in the background) for the filter's jobs."""
        words = self.filter_words
        if not words or self.jobs.total <= self.held or not isinstance(self.backend, Pager):
            return
        statuses = model.wanted_statuses(words)
        if not statuses:
            return  # e.g. `status:done status:failed`: no job matches
        self.search = Search.RUNNING
        self._searched = 0
        self.search_older(list(words), statuses.pop() if len(statuses) == 1 else None)

    def stop_search(self) -> None:
        """Cancel the search and forget the older jobs it found (the caller redraws)."""
        self.workers.cancel_group(self, "search")
        for job_id in self._older:
            self.jobs.forget(job_id)
        self._older.clear()
        self.jobs.forget_unseen()
        self.search = Search.NONE

    @work(exclusive=True, group="search", exit_on_error=False)
    async def search_older(self, words: list[str], status: JobStatus | None) -> None:
        """Page through the server's jobs with `list`; add the older ones that match."""
        pager = cast(Pager, self.backend)
        held = [job.seq for job in self.jobs.by_id.values()]
        cursor = str(min(held)) if held else None  # `list` starts just before the oldest held
        try:
            while True:
                page, _, cursor = await pager.jobs(status, SEARCH_PAGE, cursor)
                if words != self.filter_words:
                    return  # a newer filter has its own search
                self.merge_older(page)
                if cursor is None or self._searched >= SEARCH_OLDER:
                    break
        except (RpcError, TransportError, OSError, KeyError, TypeError, ValueError) as exc:
            self.search = Search.FAILED
            self.notify(
                f"cannot search the server's older jobs: {exc}", title="Filter", severity="error"
            )
        else:
            self.search = Search.DONE if cursor is None else Search.PARTIAL
        self.refresh_title()

    def merge_older(self, page: list[JobSummary]) -> None:
        """Add the page's matching jobs the dashboard does not hold yet, in one batch."""
        table = self._table
        now = self.clock()
        words = self.filter_words
        add: list[tuple[str, tuple[model.Cell, ...]]] = []
        for summary in page:
            if summary["id"] in self.jobs.by_id:
                continue  # held: the feed keeps it current
            self._searched += 1
            if model.Job.from_update(summary).matches(words):
                job, _ = self.jobs.put(summary)
                self._older.add(job.id)
                add.append((job.id, model.cells(job, self.jobs, now)))
            else:
                self.jobs.note_unseen(summary)
        with self.batch_update():
            if add:
                splice_rows(table, add=add)
                self.resort()
            self._after_change(table)

    def refresh_title(self) -> None:
        table = self._table
        arrow = "↓" if self.sort_reverse else "↑"
        known, held, total = len(self.jobs.by_id), self.held, self.jobs.total
        search = self.search
        if search is Search.DONE:  # every job on the server was looked at
            title = f"Jobs — {table.row_count} of {total}"
        else:
            title = f"Jobs — {table.row_count} of {known}"
            if total > held:
                title += f" (newest {held} of {total} on the server)"
        if self.filter_words:
            title += f" · filter: {' '.join(self.filter_words)}"
        title += {
            Search.NONE: "",
            Search.RUNNING: " · searching the server's older jobs…",
            Search.DONE: " · searched the server's older jobs",
            Search.PARTIAL: f" · searched {self._searched} older jobs, more on the server",
            Search.FAILED: " · the server's older jobs not searched",
        }[search]
        title += f" · sorted by {self.sort_column} {arrow}"
        if self.following:
            title += " · following"
        table.border_title = Text(title)

    def refresh_status(self) -> None:
        counts = self.jobs.counts
        link = {
            Link.CONNECTING: Text("◌ connecting", style="yellow"),
            Link.CONNECTED: Text("● connected", style="green"),
            Link.RECONNECTING: Text(f"◌ reconnecting, attempt {self.attempt}", style="yellow"),
            Link.DISCONNECTED: Text("✖ disconnected", style="bold red"),
        }[self.link]
        running = self.jobs.running
        worker = Text(f"worker busy ({running.type})" if running else "worker idle")
        parts: list[Text] = [link, worker]  # the header shows the server's URL
        parts += [
            Text(f"{counts.get(status.value, 0)} {status.value}", style=model.STATUS_STYLE[status])
            for status in JobStatus
        ]
        self._status_bar.update(Text(" · ").join(parts))

    # -- actions --------------------------------------------------------------------

    def selected(self) -> str | None:
        return self._table.cursor_key

    @work(exclusive=True, group="new")
    async def action_new(self) -> None:
        if self._types is None:  # loaded on connecting; while cut off, say so at once
            if self.link in (Link.RECONNECTING, Link.DISCONNECTED):
                self.notify("no server: cannot load the job types", title="New job")
                return
            try:
                self._types = await self.backend.types()
            except (RpcError, TransportError) as exc:
                self.notify(f"cannot load the job types: {exc}", title="New job", severity="error")
                return
        job = await self.push_screen_wait(SubmitScreen(self._types))
        if job is not None:
            self.notify(f"{job['type']} job {job['id']} queued", title="Submitted")
            self._focus_when_shown = job["id"]
            self._after_change(self._table)

    def action_details(self) -> None:
        job_id = self.selected()
        if job_id is not None:
            self.push_screen(DetailScreen(job_id))

    @work(exclusive=True, group="cancel")
    async def action_cancel_job(self) -> None:
        job_id = self.selected()
        if job_id is None:
            return
        job = self.jobs.by_id.get(job_id)
        if job is not None and job.status.finished:
            self.notify(f"job {job_id} is already {job.status}", severity="warning")
            return
        if not await self.push_screen_wait(ConfirmScreen(f"Cancel job {job_id}?")):
            return
        try:
            cancelled = await self.backend.cancel(job_id)
        except (RpcError, TransportError) as exc:
            self.notify(str(exc), title="Cancel", severity="error")
            return
        self.notify(f"job {cancelled['id']} cancelled", title="Cancel")

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()
        self._anchor = self.selected()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.display and not self.filter_words:
            return
        box.value = ""
        box.display = False
        self._table.focus()
        self._stop_filter_timer()
        self.set_filter("")
        self._anchor = None

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self._stop_filter_timer()
        self._filter_timer = self.set_timer(FILTER_DEBOUNCE, lambda: self.set_filter(event.value))

    @on(Input.Submitted, "#filter")
    def filter_submitted(self, event: Input.Submitted) -> None:
        self._stop_filter_timer()
        self.set_filter(event.value)
        statuses = {status.value for status in JobStatus}
        for word in self.filter_words:
            if word.startswith("status:") and word.removeprefix("status:") not in statuses:
                self.notify(
                    f"no status {word.removeprefix('status:')!r}: try {', '.join(statuses)}",
                    title="Filter",
                    severity="warning",
                )
        self._anchor = None
        self._table.focus()

    def _stop_filter_timer(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None

    def set_filter(self, text: str) -> None:
        words = text.lower().split()
        if words != self.filter_words:
            self.filter_words = words
            self.stop_search()  # older jobs found for the previous filter go; escape: all go
            self.rebuild()
            self.start_search()
            self.refresh_title()

    def action_sort(self) -> None:
        index = model.SORTS.index(self.sort_column)
        self.sort_column = model.SORTS[(index + 1) % len(model.SORTS)]
        self.resort()
        self.refresh_title()

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.resort()
        self.refresh_title()

    def action_follow(self) -> None:
        self.following = not self.following
        self.notify("following the newest job" if self.following else "stopped following")
        self._after_change(self._table)

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Save an SVG of the screen in the working directory (Textual's default: Downloads)."""
        try:
            saved = self.save_screenshot(filename, path or os.getcwd())
        except OSError as exc:
            self.notify(f"cannot save a screenshot: {exc}", title="Screenshot", severity="error")
        else:
            self.notify(f"saved {saved}", title="Screenshot")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_leave(self) -> None:
        """`q`: quit (a name of its own, so that ctrl+q keeps working on every screen)."""
        self.exit()


def run(url: str, token: str | None) -> None:
    """Run the dashboard against the server at `url` until the user quits."""

    async def main() -> None:
        async with Client(url, token) as client:
            await Dashboard(client).run_async()

    asyncio.run(main())
