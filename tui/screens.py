"""The dashboard's other screens: submit, details, confirm cancel, help."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from backend.protocol import (
    InvalidParams,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobObject,
    JobStatus,
    QueueFull,
    RpcError,
    Unauthorized,
)
from cli.client import TransportError

if TYPE_CHECKING:
    from tui.app import Dashboard

LONG_POLL = 25.0  # seconds one `wait` call may block while the detail screen is open


class SubmitScreen(ModalScreen[JobObject | None]):
    """A new job: its type and its text. The server's refusal is shown here, input kept."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_none", "Close")]

    def __init__(self, types: list[dict[str, Any]]) -> None:
        super().__init__()
        self._types = types

    def compose(self) -> ComposeResult:
        options = [(f"{t['name']} — {t['description']}", str(t["name"])) for t in self._types]
        with Vertical(id="dialog"):
            yield Label("New job", id="dialog-title")
            yield Select(options, value=options[0][1], allow_blank=False, id="type")
            yield Input(placeholder="text to transform", id="text")
            yield Static("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Submit", variant="primary", id="submit")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#text", Input).focus()

    @on(Button.Pressed, "#cancel")
    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#submit")
    @on(Input.Submitted, "#text")
    def submit(self) -> None:
        self.send()

    @work(exclusive=True, group="submit")
    async def send(self) -> None:
        app: Dashboard = self.app  # type: ignore[assignment]
        job_type = str(self.query_one("#type", Select).value)
        text = self.query_one("#text", Input).value
        error = self.query_one("#error", Static)
        try:
            job = await app.backend.submit(job_type, text)
        except (InvalidParams, QueueFull, Unauthorized) as exc:
            error.update(Text(str(exc)))
            self.query_one("#text", Input).focus()
            return
        except (RpcError, TransportError) as exc:
            error.update(Text(f"could not submit: {exc}"))
            return
        self.dismiss(job)


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self._question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(self._question), id="question")
            with Horizontal(id="buttons"):
                yield Button("Yes, cancel it (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class DetailScreen(Screen[None]):
    """Every field of one job, its full text and its full result; live while it runs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("c", "copy_result", "Copy result"),
        Binding("y", "copy_id", "Copy id"),
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: JobObject | None = None
        self.result: str | None = None

    def compose(self) -> ComposeResult:
        yield Header(icon="⚙")
        with VerticalScroll(id="detail"):
            yield Static(Text(f"job {self.job_id}"), id="fields")
            yield Label("Text", classes="heading")
            yield Static("", id="data")
            yield Label("Result", classes="heading")
            yield Static(Text("…"), id="result")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.job_id
        self.follow()

    @work(exclusive=True, group="detail")
    async def follow(self) -> None:
        """Show the job, then each change until it finishes, then its result."""
        app: Dashboard = self.app  # type: ignore[assignment]
        try:
            job = await app.backend.status(self.job_id)
            self.show(job)
            while not JobStatus(job["status"]).finished:
                job = await app.backend.wait(self.job_id, LONG_POLL, seen=job)
                self.show(job)
            if job["status"] == JobStatus.DONE:
                self.result = await app.backend.result(self.job_id)
                self.query_one("#result", Static).update(Text(self.result))
        except (JobFailed, JobCancelled) as exc:
            self.query_one("#result", Static).update(Text(str(exc)))
        except JobNotFound:
            self.query_one("#result", Static).update(
                Text("the server does not know this job (it restarted, or forgot the job)")
            )
        except (RpcError, TransportError) as exc:
            self.query_one("#result", Static).update(Text(f"cannot load this job: {exc}"))
            app.notify(str(exc), title="Details", severity="error")
        except asyncio.CancelledError:
            raise

    def show(self, job: JobObject) -> None:
        self.job = job
        lines = Text()
        for name in (
            "id",
            "type",
            "status",
            "position",
            "delay",
            "submitted_at",
            "started_at",
            "finished_at",
            "estimated_finish_at",
            "error",
        ):
            value = job.get(name)
            lines.append(f"{name:>20}  ", style="bold")
            lines.append(
                "" if value is None else str(value),
                style=_status_style(job) if name == "status" else "",
            )
            lines.append("\n")
        self.query_one("#fields", Static).update(lines)
        self.query_one("#data", Static).update(Text(job["data"]))
        status = JobStatus(job["status"])
        if not status.finished:
            self.query_one("#result", Static).update(Text(f"not ready: the job is {status}"))
        elif status is JobStatus.FAILED:
            self.query_one("#result", Static).update(Text(f"failed: {job['error']}"))
        elif status is JobStatus.CANCELLED:
            self.query_one("#result", Static).update(Text("cancelled: no result"))

    def action_copy_result(self) -> None:
        if self.result is None:
            self.notify("no result to copy yet", severity="warning")
            return
        self.app.copy_to_clipboard(self.result)
        self.notify(f"copied the result ({len(self.result)} characters)")

    def action_copy_id(self) -> None:
        self.app.copy_to_clipboard(self.job_id)
        self.notify(f"copied {self.job_id}")


class HelpScreen(ModalScreen[None]):
    """Every key."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        from tui.app import KEYS

        table = Text()
        for key, what in KEYS:
            table.append(f"{key:>8}  ", style="bold")
            table.append(f"{what}\n")
        with Vertical(id="dialog"):
            yield Label("Keys", id="dialog-title")
            yield Static(table)


def _status_style(job: JobObject) -> str:
    from tui.model import STATUS_STYLE

    return STATUS_STYLE[JobStatus(job["status"])]
