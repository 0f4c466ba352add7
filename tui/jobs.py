"""The job table's screen: the rows, the filter, the sort, follow mode, and the table's keys.

The app feeds it snapshots and changes (`apply_snapshot`, `apply_changes`) and sets the
connection state it watches; everything the user does to the table happens here.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input

from backend.display import visible
from backend.protocol import Changes, JobStatus, RpcError, Snapshot
from cli.client import TransportError
from tui import model
from tui.backend import Backend
from tui.confirm import ConfirmScreen
from tui.details import DetailScreen
from tui.help import HELP_AND_QUIT
from tui.search import OlderSearch, Pager
from tui.status import Link, Search, StatusBar, title
from tui.submit import SUBMIT_TIMEOUT, SubmitScreen, Submitted, reason
from tui.table import JobTable

MAX_ROWS = 10_000  # rows held at most, bursts included; the title says when there are more
TICK = 0.5  # seconds between redraws of the rows on screen (progress, queued waits)
REDRAW = 0.1  # seconds: rows are re-filtered and re-sorted at most this often in a burst
FILTER_DEBOUNCE = 0.15  # seconds of quiet typing before the filter is applied


class JobsScreen(Screen[None]):
    """The live job table."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *HELP_AND_QUIT,
        Binding("enter", "details", "Details"),
        Binding("n", "new", "New"),
        Binding("x", "cancel_job", "Cancel"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter"),
        # Follow mode is a state the footer shows: before the keys a narrow footer may cut
        # (every key is in the help, `?`).
        Binding("f", "follow", "Follow"),
        Binding("f", "unfollow", "Following ●"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse", key_display="S"),
        Binding("y", "copy_id", "Copy id"),
    ]

    following: reactive[bool] = reactive(False)
    words: reactive[tuple[str, ...]] = reactive(())  # the filter, lowercased
    sort_column: reactive[str] = reactive(model.SORTS[0])
    sort_reverse: reactive[bool] = reactive(True)  # newest first

    def __init__(self, backend: Backend, clock: Callable[[], float], max_rows: int) -> None:
        super().__init__()
        self.backend = backend
        self.clock = clock
        self.max_rows = max_rows
        self.jobs = model.Jobs()
        self.search = OlderSearch(self.jobs)
        self.types: list[dict[str, Any]] | None = None  # set by the app once connected
        self.link = Link.CONNECTING
        self.last_type: str | None = None  # the submit form starts on it
        self.table = JobTable(self.jobs, clock)
        self.bar = StatusBar(id="status-bar")
        self._focus_when_shown: str | None = None
        self._anchor: str | None = None  # the job the cursor returns to while a filter is typed
        self._filter_timer: Timer | None = None
        self._redraw_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header(icon="⚙")
        yield self.bar
        yield Input(
            placeholder="filter: words, status:failed, type:swap — escape clears",
            id="filter",
            compact=True,  # one line, under the status bar: the header stays in sight
        )
        yield self.table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.table.focus()
        self.set_interval(TICK, self.tick)
        self._retitle()

    # -- the feed -------------------------------------------------------------------

    def set_link(self, link: Link, attempt: int, reason: str) -> None:
        """The app's connection state: the status bar shows it, stale rows are dimmed."""
        if link is not Link.CONNECTED and self.link is Link.CONNECTED:
            self.bar.as_of = self.clock()
        self.link = link
        self.table.set_class(link is not Link.CONNECTED, "-stale")
        self.bar.link, self.bar.attempt, self.bar.reason = link, attempt, reason

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Start over from a snapshot: rows of jobs the server no longer has go."""
        self.stop_search()
        self.jobs.reset(snapshot["jobs"], snapshot["counts"], snapshot["total"])
        self._counts_changed()
        self.redraw()
        self.start_search()  # a filter searches the older jobs again
        # The snapshot's objects (some 10^5 for 10 000 jobs) live long: move them out of the
        # collector's reach, or every full collection rescans them (~0.1 s, mid-burst).
        gc.freeze()

    def apply_changes(self, changes: Changes) -> None:
        """Record the changes; rows on screen redraw now, the order at most every REDRAW s."""
        jobs = self.jobs
        jobs.counts = changes["counts"]
        jobs.total = sum(changes["counts"].values())
        for job_id in changes["removed"]:  # forgotten by the server
            jobs.forget(job_id)
            self.search.older.discard(job_id)
        for update in changes["jobs"]:
            jobs.put(update)
        for job_id in jobs.overflow(self.max_rows, self.search.older, self.table.cursor_key):
            jobs.forget(job_id)  # the cap holds in a burst: the oldest rows go
        self._counts_changed()
        self.table.refresh()
        if self._redraw_timer is None:
            self._redraw_timer = self.set_timer(REDRAW, self.redraw)

    def _counts_changed(self) -> None:
        self.bar.counts = dict(self.jobs.counts)
        running = self.jobs.running
        self.bar.worker = running.type if running is not None else ""

    def redraw(self) -> None:
        """Rows anew from the model: filtered, sorted; the cursor keeps its job."""
        self._redraw_timer = None
        key = model.sort_key(self.sort_column, self.clock())
        words = list(self.words)
        shown = [job for job in self.jobs.by_id.values() if job.matches(words)]
        shown.sort(key=key, reverse=self.sort_reverse)
        keep = self._anchor or self.table.cursor_key
        if self._focus_when_shown is not None and self._focus_when_shown in self.jobs.by_id:
            keep, self._focus_when_shown = self._focus_when_shown, None
        elif self.following:
            newest = max(self.jobs.by_id.values(), key=lambda job: job.seq, default=None)
            keep = newest.id if newest is not None else keep
        self.table.set_rows([job.id for job in shown], keep)
        self._retitle()

    def tick(self) -> None:
        """Redraw the rows on screen: progress and queued waits move with the local clock."""
        if self.link is Link.CONNECTED:
            self.table.refresh()

    def _retitle(self) -> None:
        self.table.border_title = title(
            shown=self.table.row_count,
            held=self.search.held,
            known=len(self.jobs.by_id),
            total=self.jobs.total,
            words=list(self.words),
            search=self.search.state,
            searched=self.search.searched,
            sort=self.sort_column,
            reverse=self.sort_reverse,
        )

    def watch_following(self) -> None:
        self.refresh_bindings()
        if self.following:
            self.redraw()

    def watch_sort_column(self) -> None:
        self.redraw()

    def watch_sort_reverse(self) -> None:
        self.redraw()

    def watch_words(self) -> None:
        self.refresh_bindings()
        self.stop_search()  # older jobs found for the previous filter go; escape: all go
        self.redraw()
        self.start_search()

    # -- the search of older jobs ---------------------------------------------------

    def start_search(self) -> None:
        status = self.search.needed(list(self.words), self.backend)
        if status is not False:
            self.search.state = Search.RUNNING
            self.search_older(list(self.words), status)
            self._retitle()

    def stop_search(self) -> None:
        self.workers.cancel_group(self, "search")
        self.search.forget()

    @work(exclusive=True, group="search", exit_on_error=False)
    async def search_older(self, words: list[str], status: JobStatus | None) -> None:
        """Page through the server's older jobs with `list`; add those that match."""
        assert isinstance(self.backend, Pager)
        try:
            await self.search.run(
                self.backend, words, status, lambda: words == list(self.words), self._found
            )
        except (RpcError, TransportError, OSError, KeyError, TypeError, ValueError) as exc:
            self.search.state = Search.FAILED
            self.notify(
                f"cannot search the server's older jobs: {visible(str(exc))}",
                title="Filter",
                severity="error",
            )
        self._retitle()

    def _found(self, ids: list[str]) -> None:
        self.redraw()

    # -- keys -----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Of the two `f` bindings, the footer shows the one that says whether follow is on."""
        if action == "follow":
            return not self.following
        if action == "unfollow":
            return self.following
        if action == "clear_filter":  # shown while there is a filter to clear
            return bool(self.words) or self.query_one("#filter", Input).display
        return True

    @on(JobTable.CursorMoved)
    def _user_moved(self) -> None:
        self.following = False  # the user took the cursor: stop snapping it to the newest

    @on(JobTable.Selected)
    def action_details(self) -> None:
        job_id = self.table.cursor_key
        if job_id is not None:
            self.app.push_screen(DetailScreen(job_id, self.backend, self.clock))

    @work(exclusive=True, group="new")
    async def action_new(self) -> None:
        if self.types is None:  # loaded on connecting; while cut off, say so at once
            if self.link in (Link.RECONNECTING, Link.DISCONNECTED):
                self.notify("no server: cannot load the job types", title="New job")
                return
            self.notify("loading the job types…", title="New job", timeout=2)
            try:
                self.types = await asyncio.wait_for(self.backend.types(), SUBMIT_TIMEOUT)
            except (TimeoutError, RpcError, TransportError) as exc:
                self.notify(f"cannot load the job types: {reason(exc)}", severity="error")
                return
        outcome = await self.app.push_screen_wait(
            SubmitScreen(self.types, self.backend.submit, self.last_type)
        )
        if isinstance(outcome, Submitted):
            self.submitted(outcome)

    def submitted(self, outcome: Submitted) -> None:
        self.last_type = outcome.job_type
        if outcome.job is not None:
            job = outcome.job
            queued = f"{visible(job['type'])} job {visible(job['id'])} queued"
            self.notify(queued, title="Submitted")
            self._focus_when_shown = job["id"]
            self.redraw()
        elif outcome.look_for is not None:
            self.set_filter(" ".join(outcome.look_for.split()[:3]) or outcome.job_type)

    @work(exclusive=True, group="cancel")
    async def action_cancel_job(self) -> None:
        job_id = self.table.cursor_key
        if job_id is None:
            return
        job = self.jobs.by_id.get(job_id)
        if job is not None and job.status.finished:
            self.notify(f"job {visible(job_id)} is already {job.status}", severity="warning")
            return
        question = f"Cancel job {visible(job_id)}?"
        if not await self.app.push_screen_wait(ConfirmScreen(question, "Yes, cancel it (y)")):
            return
        try:
            cancelled = await self.backend.cancel(job_id)
        except (RpcError, TransportError) as exc:
            self.notify(visible(str(exc)), title="Cancel", severity="error")
            return
        self.notify(f"job {visible(cancelled['id'])} cancelled", title="Cancel")

    def action_copy_id(self) -> None:
        job_id = self.table.cursor_key
        if job_id is not None:
            self.app.copy_to_clipboard(job_id)
            self.notify(f"copied {visible(job_id)}", title="Copy id")

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        self.refresh_bindings()
        box.focus()
        self._anchor = self.table.cursor_key

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.display and not self.words:
            return
        box.value = ""
        box.display = False
        self.refresh_bindings()
        self.table.focus()
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
        for word in self.words:
            if word.startswith("status:") and word.removeprefix("status:") not in statuses:
                self.notify(
                    f"no status {visible(word.removeprefix('status:'))!r}: "
                    f"try {', '.join(statuses)}",
                    title="Filter",
                    severity="warning",
                )
        self._anchor = None
        self.table.focus()

    def _stop_filter_timer(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None

    def set_filter(self, text: str) -> None:
        self.words = tuple(text.lower().split())

    def action_sort(self) -> None:
        index = model.SORTS.index(self.sort_column)
        self.sort_column = model.SORTS[(index + 1) % len(model.SORTS)]

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse

    def action_follow(self) -> None:
        self.following = True

    def action_unfollow(self) -> None:
        self.following = False

    def commands(self) -> Iterable[SystemCommand]:
        """The palette's entries for this screen."""
        yield SystemCommand("New job", "Submit a job (n)", self.action_new)
        yield SystemCommand("Details", "Show the selected job (enter)", self.action_details)
        yield SystemCommand("Cancel job", "Cancel the selected job (x)", self.action_cancel_job)
        yield SystemCommand("Copy id", "Copy the selected job's id (y)", self.action_copy_id)
        yield SystemCommand("Filter", "Filter the jobs (/)", self.action_filter)
        yield SystemCommand("Clear filter", "Show every job (escape)", self.action_clear_filter)
        yield SystemCommand("Sort", "Sort by the next column (s)", self.action_sort)
        yield SystemCommand("Reverse", "Reverse the sort order (S)", self.action_reverse)
        yield SystemCommand("Follow", "Follow the newest job (f)", self.action_follow)
