"""A new job: its type and its text. The server's refusal shows here, the input kept."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from backend.display import visible
from backend.protocol import InvalidParams, JobObject, QueueFull, RpcError, Unauthorized
from cli.client import TransportError, Unreachable

SHORT = 20  # lines: a shorter terminal gets compact dialogs (`-short` in dashboard.tcss)
SUBMIT_TIMEOUT = 10.0  # seconds without an answer before the form says the job may exist


@dataclass(frozen=True, slots=True)
class Submitted:
    """How the form closed: the job queued, or a job to look for (the server did not answer)."""

    job_type: str
    job: JobObject | None = None
    look_for: str | None = None  # the text of a job that may have been created


def reason(exc: BaseException) -> str:
    """The error's message, never empty (a bare timeout has none)."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer in {SUBMIT_TIMEOUT:g} s"
    text = str(exc).strip()
    if text.endswith(":"):
        text += " no answer"
    return visible(text or type(exc).__name__)


class SubmitScreen(ModalScreen[Submitted | None]):
    """The form; `submit` sends the job (the screen does not know the client)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(
        self,
        types: list[dict[str, Any]],
        submit: Callable[[str, str], Awaitable[JobObject]],
        last_type: str | None = None,
    ) -> None:
        super().__init__()
        self._types = types
        self._submit = submit
        names = [str(t["name"]) for t in types]
        self._first = last_type if last_type in names else names[0]
        self._timed_out: str | None = None

    def compose(self) -> ComposeResult:
        options = [
            (visible(f"{t['name']} — {t['description']}"), str(t["name"])) for t in self._types
        ]
        with VerticalScroll(id="dialog"):
            yield Label("New job", id="dialog-title")
            yield Select(options, value=self._first, allow_blank=False, id="type")
            yield Input(placeholder="text to transform", id="text")
            yield Static("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Submit", variant="primary", id="submit")
                yield Button("Look for it", id="look", classes="-hidden")
                yield Button("Cancel", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#look", Button).display = False
        self.query_one("#text", Input).focus()

    def on_resize(self) -> None:
        """Borderless fields on a short terminal, so the whole form fits."""
        short = self.size.height < SHORT
        self.query_one("#type", Select).compact = short
        self.query_one("#text", Input).compact = short

    @property
    def job_type(self) -> str:
        return str(self.query_one("#type", Select).value)

    @on(Button.Pressed, "#cancel")
    def action_close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#look")
    def look(self) -> None:
        self.dismiss(Submitted(self.job_type, look_for=self._timed_out))

    @on(Button.Pressed, "#submit")
    @on(Input.Submitted, "#text")
    def submit(self) -> None:
        self.query_one("#error", Static).update(Text("submitting…", style="italic"))
        self.send(self.job_type, self.query_one("#text", Input).value)

    @work(exclusive=True, group="submit")
    async def send(self, job_type: str, text: str) -> None:
        error = self.query_one("#error", Static)
        try:
            job = await asyncio.wait_for(self._submit(job_type, text), SUBMIT_TIMEOUT)
        except (InvalidParams, QueueFull, Unauthorized) as exc:
            error.update(Text(reason(exc)))
            self.query_one("#text", Input).focus()
            return
        except Unreachable as exc:  # refused at once: nothing was created
            error.update(Text(f"could not submit: {reason(exc)}"))
            return
        except (TimeoutError, RpcError, TransportError) as exc:
            self._timed_out = text
            error.update(
                Text(
                    f"{reason(exc)}: the job may have been created. "
                    "Look for it before submitting again."
                )
            )
            self.query_one("#look", Button).display = True
            return
        self.dismiss(Submitted(job_type, job=job))
