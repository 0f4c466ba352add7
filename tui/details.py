"""One job: every field in local time with units, its full text and result, live while it
runs; `r` shows the job as the server sent it (JSON, raw values)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Static

from backend.display import visible
from backend.protocol import (
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobObject,
    JobStatus,
    RpcError,
)
from cli.client import TransportError
from tui import model
from tui.backend import Backend
from tui.help import HELP_AND_QUIT

CLIPBOARD_MAX = 100_000  # characters a terminal's clipboard (OSC 52) reliably takes
TICK = 1.0  # seconds between redraws of the fields ("12s ago" grows with the clock)


class DetailScreen(Screen[None]):
    """Every field of one job, its full text and its full result; live while it runs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *HELP_AND_QUIT,
        Binding("escape", "app.pop_screen", "Back"),
        Binding("c", "copy_result", "Copy result"),
        Binding("y", "copy_id", "Copy id"),
        Binding("s", "save_result", "Save result"),
        Binding("r", "raw", "JSON"),
    ]

    def __init__(
        self, job_id: str, backend: Backend, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.backend = backend
        self.clock = clock
        self.job: JobObject | None = None
        self.result: str | None = None
        self.raw = False

    def compose(self) -> ComposeResult:
        yield Header(icon="⚙")
        with VerticalScroll(id="detail"):
            yield Static(Text(f"job {visible(self.job_id)}"), id="fields")
            yield Label("Text", classes="heading")
            yield Static("", id="data")
            yield Label("Result", classes="heading")
            yield Static(Text("…"), id="result")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = visible(self.job_id)
        self.set_interval(TICK, self.tick)
        self.follow()

    def tick(self) -> None:
        """Redraw the fields: their times say how long ago, and the clock moves on."""
        if self.job is not None and not self.raw:
            self.query_one("#fields", Static).update(fields_view(self.job, self.clock()))

    @work(exclusive=True, group="detail")
    async def follow(self) -> None:
        """Show the job, then each change until it finishes, then its result."""
        try:
            job: JobObject | None = None
            async for job in self.backend.follow(self.job_id):  # the client's one way
                self.show(job)
            if job is not None and job["status"] == JobStatus.DONE:
                self.result = await self.backend.result(self.job_id)
                self._show_result(Text(visible(self.result, multiline=True)))
        except (JobFailed, JobCancelled) as exc:
            self._show_result(Text(visible(str(exc), multiline=True)))
        except JobNotFound:
            self._show_result(
                Text("the server does not know this job (it restarted, or forgot the job)")
            )
        except (RpcError, TransportError) as exc:
            self._show_result(Text(visible(f"cannot load this job: {exc}")))
            self.notify(visible(str(exc)), title="Details", severity="error")

    def _show_result(self, text: Text) -> None:
        self.query_one("#result", Static).update(text)

    def show(self, job: JobObject) -> None:
        self.job = job
        self.query_one("#fields", Static).update(
            raw_view(job) if self.raw else fields_view(job, self.clock())
        )
        self.query_one("#data", Static).update(Text(visible(job["data"], multiline=True)))
        status = JobStatus(job["status"])
        if not status.finished:
            self._show_result(Text(f"not ready: the job is {status}"))
        elif status is JobStatus.FAILED:
            self._show_result(Text(visible(f"failed: {job['error']}", multiline=True)))
        elif status is JobStatus.CANCELLED:
            self._show_result(Text("cancelled: no result"))

    def action_raw(self) -> None:
        """Switch between the readable fields and the job as the server sent it."""
        self.raw = not self.raw
        if self.job is not None:
            self.show(self.job)

    def action_copy_result(self) -> None:
        if self.result is None:
            self.notify("no result to copy yet", severity="warning")
            return
        if len(self.result) > CLIPBOARD_MAX:
            self.notify(
                f"the result is {len(self.result)} characters, too big for the terminal's "
                f"clipboard (about {CLIPBOARD_MAX}): press s to save it to a file",
                severity="warning",
                timeout=10,
            )
            return
        self.app.copy_to_clipboard(self.result)
        self.notify(f"copied the result ({len(self.result)} characters)")

    def action_save_result(self) -> None:
        if self.result is None:
            self.notify("no result to save yet", severity="warning")
            return
        path = Path(os.getcwd()) / f"taskrpc-{self.job_id}.txt"
        try:
            path.write_text(self.result, encoding="utf-8")
        except OSError as exc:
            self.notify(f"cannot save the result: {exc}", severity="error")
            return
        self.notify(f"saved the result in {visible(str(path))}")

    def action_copy_id(self) -> None:
        self.app.copy_to_clipboard(self.job_id)
        self.notify(f"copied {visible(self.job_id)}")


FIELDS: tuple[str, ...] = ("id", "type", "status", "attempts", "position", "delay")
FIELDS += ("submitted_at", "started_at", "finished_at", "estimated_finish_at", "error")
TIMES = {"submitted_at", "started_at", "finished_at", "estimated_finish_at"}


def fields_view(job: JobObject, now: float) -> Text:
    """Each field for a person: local times, durations with units."""
    lines = Text()
    values = dict(job)
    for name in FIELDS:
        value = values.get(name)
        lines.append(f"{name.replace('_', ' '):>20}  ", style="bold")
        if value is None:
            shown = "—"
        elif name in TIMES:
            shown = _local(str(value), now)
        elif name == "delay":
            shown = f"{float(str(value)):g} s"
        else:
            shown = visible(str(value))
        style = model.STATUS_STYLE[JobStatus(job["status"])] if name == "status" else ""
        lines.append(shown, style=style)
        lines.append("\n")
    return lines


def raw_view(job: JobObject) -> Text:
    """The job as the server sent it (the text and result have their own boxes)."""
    shown = {key: value for key, value in job.items() if key != "data"}
    return Text(visible(json.dumps(shown, indent=2, ensure_ascii=False), multiline=True))


def _local(stamp: str, now: float) -> str:
    """`2027-01-01 13:00:05 (12 s ago)` in local time, from the wire's ISO UTC."""
    when = model.seconds(stamp) or 0.0
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
    delta = now - when
    relative = f"{model.duration(abs(delta))} ago" if delta >= 0 else f"in {model.duration(-delta)}"
    return f"{local} ({relative})"
