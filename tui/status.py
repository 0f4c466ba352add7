"""The status bar (connection, worker, counts) and the table's title: what the user reads
about the state of things, in a long form and a short one for narrow terminals."""

from __future__ import annotations

import enum
import time
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from backend.display import visible
from backend.protocol import RUNNER, STANDBY, JobStatus
from tui import model


class Link(enum.StrEnum):
    """The state of the connection to the server."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"  # given up: the token was refused


class Search(enum.Enum):
    """How far the filter's search of the server's older jobs got."""

    NONE = "none"  # no filter, or the dashboard holds every job the server knows
    RUNNING = "running"
    DONE = "done"  # every older job that can match was read
    PARTIAL = "partial"  # stopped after SEARCH_OLDER older jobs: the server has more
    FAILED = "failed"


SHORT = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE, JobStatus.FAILED)


class StatusBar(Widget):
    """One line under the header; it redraws itself when any of its state changes."""

    DEFAULT_CSS = """
    StatusBar { height: auto; padding: 0 1; background: $panel; }
    """

    # The link and its reason can add a second line (`layout`); the counts only redraw.
    link: reactive[Link] = reactive(Link.CONNECTING, layout=True)
    attempt: reactive[int] = reactive(0)
    reason: reactive[str] = reactive("", layout=True)  # why the link is down: stays until it is up
    counts: reactive[dict[str, int] | None] = reactive(None)  # None: never heard from the server
    as_of: reactive[float | None] = reactive(None)  # when the counts were last current
    worker: reactive[str] = reactive("")  # the running job's type, if any

    def render(self) -> Text:
        return status_line(
            self.link,
            self.counts,
            width=self.content_region.width,
            attempt=self.attempt,
            reason=self.reason,
            as_of=self.as_of,
            worker=self.worker,
        )


def status_line(
    link: Link,
    counts: dict[str, int] | None,
    *,
    width: int,
    attempt: int = 0,
    reason: str = "",
    as_of: float | None = None,
    worker: str = "",
) -> Text:
    """`● connected · worker busy (swap) · 3 queued · …`, or the short form if that is too wide:
    `● 3 queued · 1 running · 17 done · 0 failed`. While not connected the counts are "—",
    or those last known "as of" a time, and the reason stays (on a second line if need be)."""
    mark = {
        Link.CONNECTING: Text("◌ connecting", style="yellow"),
        Link.CONNECTED: Text("● connected", style="green"),
        Link.RECONNECTING: Text(f"◌ reconnecting, attempt {attempt}", style="yellow"),
        Link.DISCONNECTED: Text("✖ disconnected", style="bold red"),
    }[link]
    symbol = mark[:1]
    live = link is Link.CONNECTED
    known = counts is not None and (live or as_of is not None)
    stamp = Text("" if live or not known else f"as of {_hhmmss(as_of)}: ", style="dim")

    def tally(statuses: tuple[JobStatus, ...]) -> Text:
        return stamp + Text(" · ").join(
            Text(
                f"{counts.get(s.value, 0) if counts is not None and known else '—'} {s.value}",
                style=model.STATUS_STYLE[s],
            )
            for s in statuses
        )

    dot = Text(" · ")
    if live:
        worker_part = Text(f"worker busy ({visible(worker)})" if worker else "worker idle")
        forms = [
            dot.join([mark, worker_part, tally(tuple(JobStatus))]),
            symbol + " " + tally(SHORT),
        ]
    else:  # the reason goes last; if the line cannot hold it, it gets a line of its own
        heads = [dot.join([mark, tally(tuple(JobStatus))]), dot.join([mark, tally(SHORT)])]
        heads.append(symbol + " " + tally(SHORT))
        why = Text(visible(reason), style="italic")
        if reason and heads[0].cell_len + 3 + why.cell_len <= width:
            return dot.join([heads[0], why])
        head = next((head for head in heads if head.cell_len <= width), heads[-1])
        forms = [head]
        if reason:
            why.truncate(width, overflow="ellipsis")
            return _cut(head, width) + "\n" + why
    return _cut(next((form for form in forms if form.cell_len <= width), forms[-1]), width)


def _cut(line: Text, width: int) -> Text:
    line.truncate(width, overflow="ellipsis")
    return line


def _hhmmss(when: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when or 0))


def server_title(url: str, health: dict[str, Any]) -> str:
    """The header's subtitle: the server's URL and, for a server on a shared PostgreSQL queue,
    which server runs the jobs: `http://b:8000 · standby, the runner is http://a:8000`."""
    role = health.get("role")
    if role == RUNNER:
        return visible(f"{url} · the runner")
    if role == STANDBY:
        runner = health.get("runner")
        who = f"the runner is {runner}" if isinstance(runner, str) else "no runner yet"
        return visible(f"{url} · standby, {who}")
    return visible(url)


def title(
    *,
    shown: int,
    held: int,
    known: int,
    total: int,
    words: list[str],
    search: Search,
    searched: int,
    sort: str,
    reverse: bool,
) -> Text:
    """The table's border title: how many rows of how many jobs, the filter, the sort."""
    if search is Search.DONE:  # every job on the server was looked at
        text = f"Jobs — {shown} of {total}"
    else:
        text = f"Jobs — {shown} of {known}"
        if total > held:
            text += f" (newest {held} of {total} on the server)"
    if words:
        text += f" · filter: {visible(' '.join(words))}"
    text += {
        Search.NONE: "",
        Search.RUNNING: " · searching the server's older jobs…",
        Search.DONE: " · searched the server's older jobs",
        Search.PARTIAL: f" · searched {searched} older jobs, more on the server",
        Search.FAILED: " · the server's older jobs not searched",
    }[search]
    text += f" · sorted by {sort} {'↓' if reverse else '↑'}"
    return Text(text)
