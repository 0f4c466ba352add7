"""Every key of the job table, in a dialog."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

# First in every full screen's bindings, so the footer shows them at any width.
HELP_AND_QUIT: list[BindingType] = [
    Binding("question_mark", "app.help", "Help", key_display="?"),
    Binding("q", "app.leave", "Quit"),
]

KEYS: tuple[tuple[str, str], ...] = (
    ("n", "new job: type and text"),
    ("enter", "details: every field, the full text and result"),
    ("y", "copy the selected job's id (in details: c copies the result)"),
    ("x", "cancel the selected job (asks first)"),
    ("/", "filter: free text, status:failed, type:swap"),
    ("escape", "clear the filter / go back"),
    ("j k ↑ ↓", "move the cursor (ends follow mode)"),
    ("g G", "first / last row (also Home / End)"),
    ("s / S", "cycle the sort column / reverse the order"),
    ("f", "follow the newest job (the footer shows it)"),
    ("ctrl+p", "command palette"),
    ("?", "this help"),
    ("q ctrl+c", "quit"),
)


class HelpScreen(ModalScreen[None]):
    """Every key."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark", "dismiss", "Close"),
        Binding("q", "app.leave", "Quit"),
    ]

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))  # a long line wraps in its own column
        table.add_column(justify="right", style="bold", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with Vertical(id="dialog"):
            yield Label("Keys", id="dialog-title")
            with VerticalScroll():
                yield Static(table)
        yield Footer()
