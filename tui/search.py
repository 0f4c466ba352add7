"""The filter's search of the server's older jobs: those below the window the feed keeps.

The dashboard holds the newest jobs (the snapshot's window, kept current by the feed) and
perhaps a few older ones a notification brought (an old job that just ran). The search
pages through `list` from just below the window's floor, so it reads every older job once,
and says "searched" only when it has read to the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from backend.protocol import LIST_LIMIT, JobStatus, JobSummary
from tui import model
from tui.status import Search

SEARCH_PAGE = LIST_LIMIT  # jobs per `list` call
SEARCH_OLDER = 5_000  # a filter reads at most this many older jobs


@runtime_checkable
class Pager(Protocol):
    """A backend that pages through every job the server knows (`list`). `Client` has it."""

    async def jobs(
        self, status: JobStatus | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[JobSummary], dict[str, int], str | None]: ...


class OlderSearch:
    """The state of one search: what it has read, and the older jobs it added."""

    def __init__(self, jobs: model.Jobs) -> None:
        self.jobs = jobs
        self.state = Search.NONE
        self.searched = 0  # older jobs read
        self.older: set[str] = set()  # ids of the older jobs added (not kept by the feed)

    @property
    def held(self) -> int:
        """Jobs the feed keeps current: the snapshot's and those changed since."""
        return len(self.jobs.by_id) - len(self.older)

    def needed(self, words: list[str], pager: object) -> JobStatus | bool | None:
        """False if there is nothing to search; else the one status to ask for, or None."""
        if not words or self.jobs.total <= self.held or not isinstance(pager, Pager):
            return False
        statuses = model.wanted_statuses(words)
        if not statuses:
            return False  # e.g. `status:done status:failed`: no job matches
        return statuses.pop() if len(statuses) == 1 else None

    def forget(self) -> None:
        """Forget the older jobs found (the caller redraws)."""
        for job_id in self.older:
            self.jobs.forget(job_id)
        self.older.clear()
        self.jobs.forget_unseen()
        self.state = Search.NONE
        self.searched = 0

    async def run(
        self,
        pager: Pager,
        words: list[str],
        status: JobStatus | None,
        still_wanted: Callable[[], bool],
        added: Callable[[list[str]], None],
    ) -> None:
        """Page through the older jobs, newest first; `added(ids)` after each page."""
        self.state, self.searched = Search.RUNNING, 0
        cursor: str | None = str(self.jobs.floor)  # `list` starts just below the window
        while cursor is not None and self.searched < SEARCH_OLDER:
            page, _, cursor = await pager.jobs(status, SEARCH_PAGE, cursor)
            if not still_wanted():
                return
            added(self.merge(page, words))
        self.state = Search.DONE if cursor is None else Search.PARTIAL

    def merge(self, page: list[JobSummary], words: list[str]) -> list[str]:
        """Keep the page's matching jobs not held yet; the ids kept."""
        kept: list[str] = []
        for summary in page:
            self.searched += 1
            if summary["id"] in self.jobs.by_id:
                continue  # held: the feed keeps it current
            if model.Job.from_update(summary).matches(words):
                job, _ = self.jobs.put(summary)
                self.older.add(job.id)
                kept.append(job.id)
            else:
                self.jobs.note_unseen(summary)
        return kept
