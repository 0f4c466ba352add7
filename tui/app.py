"""The taskrpc dashboard: the connection to the server and the screens.

The app owns the connection's state machine (connecting → connected → reconnecting, or
disconnected when the token is refused) and the feed that carries snapshots and changes
to the job table's screen (`tui.jobs`); each screen owns its keys.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, cast

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen

from backend.display import visible
from backend.protocol import Changes, JobStatus, RpcError, Unauthorized
from cli.client import TransportError
from tui.backend import Backend
from tui.confirm import ConfirmScreen
from tui.help import HelpScreen
from tui.jobs import MAX_ROWS, JobsScreen
from tui.model import Jobs
from tui.status import Link, server_title
from tui.submit import SHORT

BACKOFF_FIRST = 0.25  # seconds before the first reconnect attempt, doubled each time…
BACKOFF_CAP = 3.0  # …up to this
CLUSTER_EVERY = 2.0  # seconds between looks at which server of a cluster runs the jobs


class Dashboard(App[None]):
    """The live dashboard of one taskrpc server."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "taskrpc"
    # Textual reads it per class; typed ClassVar it clashes with App's declaration.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT, "")]  # noqa: RUF012
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "leave", "Quit", show=False, priority=True),
    ]

    link: reactive[Link] = reactive(Link.CONNECTING, init=False)
    attempt: reactive[int] = reactive(0, init=False)
    reason: reactive[str] = reactive("", init=False)  # why the link is not up

    def __init__(
        self,
        backend: Backend,
        *,
        connect: bool = True,
        clock: Callable[[], float] = time.time,
        max_rows: int = MAX_ROWS,
        local: bool = False,
        kept: bool = False,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.connect = connect
        self.local = local  # the server runs in this process: quitting stops its jobs
        self.kept = kept  # ...and keeps them in a file: they resume at the next start
        self.jobs_screen = JobsScreen(backend, clock, max_rows)

    def get_default_screen(self) -> Screen[Any]:
        return self.jobs_screen

    @property
    def jobs(self) -> Jobs:
        """The jobs the table holds."""
        return self.jobs_screen.jobs

    def on_mount(self) -> None:
        self.sub_title = visible(self.backend.url)
        if self.connect:
            self.follow_server()
            self.set_interval(CLUSTER_EVERY, self.show_runner)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title == "Screenshot":  # Textual's saves in ~/Downloads, or fails
                command = SystemCommand(
                    "Screenshot", "Save an SVG of the screen here", self.action_screenshot
                )
            yield command
        if screen is self.jobs_screen:
            yield from self.jobs_screen.commands()
        yield SystemCommand("Help", "Every key (?)", self.action_help)

    # -- the connection ---------------------------------------------------------------

    @work(exclusive=True, group="feed", exit_on_error=False)
    async def follow_server(self) -> None:
        """Subscribe; apply every change; on any failure back off and subscribe again."""
        screen = self.jobs_screen
        while True:
            try:
                async with self.backend.subscribe(screen.max_rows) as feed:
                    assert feed.snapshot is not None
                    screen.types = await self.backend.types()
                    self.set_link(Link.CONNECTED)
                    self.show_runner()
                    screen.apply_snapshot(feed.snapshot)
                    async for event in feed:
                        if "removed" in event:
                            screen.apply_changes(cast(Changes, event))
                        else:
                            screen.apply_snapshot(event)
                raise TransportError("the server closed the connection")
            except Unauthorized as exc:
                self.set_link(Link.DISCONNECTED, str(exc))
                return  # the same token will be refused again
            except (TransportError, RpcError, OSError) as exc:
                self.attempt += 1
                self.set_link(Link.RECONNECTING, str(exc) or type(exc).__name__)
                await asyncio.sleep(min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (self.attempt - 1)))

    @work(exclusive=True, group="runner", exit_on_error=False)
    async def show_runner(self) -> None:
        """Say in the header which server runs the jobs, when the server is one of a cluster
        (its /healthz names its role and the runner; a failover changes them)."""
        if self.link is not Link.CONNECTED:
            return
        try:
            health = await self.backend.health()
        except (TransportError, OSError):
            return  # the feed notices a lost server and says so
        self.sub_title = server_title(self.backend.url, health)

    def set_link(self, link: Link, reason: str = "") -> None:
        """Record the connection state; the status bar keeps the reason while it is down."""
        previous = self.link
        if link is Link.CONNECTED:
            self.attempt = 0
        self.reason = visible(reason)
        self.link = link
        self.jobs_screen.set_link(link, self.attempt, self.reason)
        if link is previous:
            return
        if link is Link.CONNECTED and previous is not Link.CONNECTING:
            self.notify("connected again: fresh snapshot", title="Server")
        elif link is Link.RECONNECTING and previous is Link.CONNECTED:
            self.notify(f"connection lost: {self.reason}", title="Server", severity="warning")
        elif link is Link.DISCONNECTED:
            self.notify(self.reason, title="Server", severity="error", timeout=30)

    # -- app-wide actions -------------------------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast is plain text (screens' toasts come here too): a job's text, an id or
        a server's message that looks like markup (`[/]`) shows as it is and cannot fail."""
        super().notify(
            visible(message, multiline=True),
            title=visible(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Save an SVG of the screen in the working directory (Textual's default: Downloads)."""
        try:
            saved = self.save_screenshot(filename, path or os.getcwd())
        except OSError as exc:
            self.notify(f"cannot save a screenshot: {exc}", title="Screenshot", severity="error")
        else:
            self.notify(f"saved {visible(saved)}", title="Screenshot")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    @work(exclusive=True, group="leave")
    async def action_leave(self) -> None:
        """`q`, ctrl+c: quit; with `--local` and jobs still to run, ask first."""
        counts = self.jobs.counts
        pending = counts.get(JobStatus.QUEUED, 0) + counts.get(JobStatus.RUNNING, 0)
        if self.local and pending and not isinstance(self.screen, ConfirmScreen):
            jobs = f"{pending} queued or running job{'' if pending == 1 else 's'}"
            fate = "stop now and resume at the next start" if self.kept else "will be lost"
            question = f"Quit? The server runs in this dashboard: its {jobs} {fate}."
            if not await self.push_screen_wait(ConfirmScreen(question, "Yes, quit (y)")):
                return
        self.exit()
