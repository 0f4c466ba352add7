"""The job table: rows drawn on demand from the job model, columns fitted to the width.

A `ScrollView` whose `render_line` builds the line of the row it is asked for (as Toolong
does for huge logs): only the rows on screen are ever drawn, so 10 000 rows cost a list of
ids, a change costs one refresh, and a queued row's wait and "starts in" are current each
time it is drawn. No Textual internals are touched.

Columns drop in a fixed order (RAN, then WAITED, then SUBMITTED) when the terminal is too
narrow for them; TEXT takes the width that is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui import model

ID_FULL = 16  # every character of a job id
ID_SHORT = 8  # on narrow terminals (`y` copies the whole id)
WIDE = 110  # columns of the table from which the whole id shows
MIN_TEXT = 24  # TEXT keeps at least this width before an optional column is shown
GAP = 1  # spaces before each column


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its key, heading and width."""

    key: str
    label: str
    width: int
    justify: str = "left"


FIXED = (Column("type", "TYPE", 7), Column("status", "STATUS", model.STATUS_WIDTH))
OPTIONAL = (  # shown in this order while they fit: dropped from the end
    Column("submitted", "SUBMITTED", 9),
    Column("waited", "WAITED", 7, "right"),
    Column("ran", "RAN", 7, "right"),
)


@lru_cache(maxsize=16)
def layout(width: int) -> tuple[Column, ...]:
    """The columns shown in `width` cells, TEXT taking the width that is left."""
    first = Column("id", "ID", ID_FULL if width >= WIDE else ID_SHORT)
    used = sum(GAP + column.width for column in (first, *FIXED)) + GAP  # + TEXT's gap
    extra: list[Column] = []
    for column in OPTIONAL:
        if width - used - column.width - GAP < MIN_TEXT:
            break
        extra.append(column)
        used += column.width + GAP
    return (first, *FIXED, Column("text", "TEXT", max(1, width - used)), *extra)


class JobTable(ScrollView, can_focus=True):
    """Rows keyed by job id, in the order the screen gives; a cursor that stays on its job."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup,ctrl+b", "page_up", "Page up", show=False),
        Binding("pagedown,ctrl+f,space", "page_down", "Page down", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "last", "Last", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "job-table--header",
        "job-table--cursor",
        "job-table--odd",
    }
    DEFAULT_CSS = """
    JobTable { width: 100%; overflow-x: hidden; }
    JobTable > .job-table--header { text-style: bold; background: $panel; }
    JobTable > .job-table--cursor { background: $block-cursor-background; }
    JobTable:blur > .job-table--cursor { background: $block-cursor-blurred-background; }
    JobTable > .job-table--odd { background: $surface-lighten-1 20%; }
    """

    class CursorMoved(Message):
        """The user moved the cursor (a key or a click): follow mode ends."""

    class Selected(Message):
        """The user chose the row under the cursor (enter or a double click)."""

    def __init__(self, jobs: model.Jobs, clock: Callable[[], float]) -> None:
        super().__init__(id="jobs")
        self.jobs = jobs
        self.clock = clock
        self.ids: list[str] = []
        self._index: dict[str, int] = {}
        self.cursor = 0

    # -- rows -----------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.ids)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._index

    def set_rows(self, ids: Sequence[str], keep: str | None = None) -> None:
        """Show these jobs in this order; the cursor stays on `keep` (default: its job)."""
        keep = keep if keep is not None else self.cursor_key
        self.ids = list(ids)
        self._index = {job_id: row for row, job_id in enumerate(self.ids)}
        self.virtual_size = Size(self.scrollable_content_region.width, len(self.ids) + 1)
        row = self._index.get(keep, self.cursor) if keep is not None else self.cursor
        self._put_cursor(row)
        self.refresh()

    def refresh_job(self, job_id: str) -> None:
        """Redraw this job's line if it is on screen."""
        row = self._index.get(job_id)
        if row is not None and self.on_screen(job_id):
            self.refresh_line(row + 1)

    @property
    def cursor_key(self) -> str | None:
        """The id of the job under the cursor."""
        return self.ids[self.cursor] if self.ids else None

    def move_to(self, job_id: str | None) -> None:
        """Put the cursor on this job's row, if it is shown."""
        row = self._index.get(job_id) if job_id is not None else None
        if row is not None:
            self._put_cursor(row)

    def on_screen(self, job_id: str) -> bool:
        """Is this job's row in the part of the table on screen?"""
        row = self._index.get(job_id)
        top = round(self.scroll_y)
        return row is not None and top <= row < top + self._page

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)  # less the heading

    def _put_cursor(self, row: int) -> None:
        self.cursor = max(0, min(row, len(self.ids) - 1))
        top = round(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + self._page:
            self.scroll_to(y=self.cursor - self._page + 1, animate=False)
        self.refresh()

    def _user_moves(self, row: int) -> None:
        self._put_cursor(row)
        self.post_message(self.CursorMoved())

    def action_cursor_up(self) -> None:
        self._user_moves(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self._user_moves(self.cursor + 1)

    def action_page_up(self) -> None:
        self._user_moves(self.cursor - self._page)

    def action_page_down(self) -> None:
        self._user_moves(self.cursor + self._page)

    def action_first(self) -> None:
        self._user_moves(0)

    def action_last(self) -> None:
        self._user_moves(len(self.ids) - 1)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self._user_moves(round(self.scroll_y) + event.y - 1)
            if event.chain == 2:
                self.post_message(self.Selected())

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self.ids) + 1)
        self._put_cursor(self.cursor)

    # -- drawing --------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        columns = layout(width)
        if y == 0:
            line = _line(columns, [Text(c.label) for c in columns])
            style = self.get_component_rich_style("job-table--header")
        else:
            row = round(self.scroll_y) + y - 1
            if row >= len(self.ids):
                return Strip.blank(width, self.rich_style)
            job = self.jobs.by_id.get(self.ids[row])
            if job is None:
                return Strip.blank(width, self.rich_style)
            line = _line(columns, self._cells(job, columns))
            style = self.rich_style
            if row == self.cursor:
                style += self.get_component_rich_style("job-table--cursor")
            elif row % 2:
                style += self.get_component_rich_style("job-table--odd")
        segments = list(line.render(self.app.console, end=""))
        return Strip(Segment.apply_style(segments, style), line.cell_len).adjust_cell_length(
            width, style
        )

    def _cells(self, job: model.Job, columns: Sequence[Column]) -> list[Text]:
        now = self.clock()
        cells: dict[str, Callable[[], Text]] = {
            "id": lambda: model.plain(job.id),
            "type": lambda: model.plain(job.type),
            "status": lambda: model.status_cell(job, self.jobs, now),
            "text": lambda: model.text_cell(job, columns[3].width),
            "submitted": lambda: model.clock(int(job.submitted_at)),
            "waited": lambda: model.duration_cell(job.waited(now)),
            "ran": lambda: model.duration_cell(job.ran(now)),
        }
        return [cells[column.key]() for column in columns]

    def cell_text(self, job_id: str, key: str) -> str:
        """What the cell of this job's row in column `key` reads (as drawn, padding stripped)."""
        columns = layout(max(self.scrollable_content_region.width, 200))
        job = self.jobs.by_id[job_id]
        (cell,) = (
            cell
            for column, cell in zip(columns, self._cells(job, columns), strict=True)
            if column.key == key
        )
        return cell.plain.strip()


def _line(columns: Sequence[Column], cells: Sequence[Text]) -> Text:
    """One line: each cell cut or padded to its column's width, a gap before each."""
    line = Text(no_wrap=True, end="")
    for column, cell in zip(columns, cells, strict=True):
        shown = cell.copy()
        shown.overflow = "crop" if column.key == "id" else "ellipsis"  # `y` copies the id
        shown.align("right" if column.justify == "right" else "left", column.width)
        line.append(" " * GAP)
        line.append_text(shown)
    return line
