"""How jobs read to a person: one status line each. Pure functions of a job and a clock."""

from __future__ import annotations

from datetime import datetime

from backend.protocol import JobObject, JobStatus, JobSummary


def seconds(stamp: str | None) -> float | None:
    """An ISO 8601 time from the server as epoch seconds."""
    return None if stamp is None else datetime.fromisoformat(stamp).timestamp()


def status_line(job: JobObject | JobSummary, now: float) -> str:
    """`queued — 2 ahead, starts in ~9 s`, `running — 1.2 of 5 s`, `done in 5.0 s`, `failed: …`."""
    status = JobStatus(job["status"])
    started, finished = seconds(job["started_at"]), seconds(job["finished_at"])
    delay = job["delay"]
    if status is JobStatus.QUEUED:
        ahead = job["position"] or 0
        finish = seconds(job.get("estimated_finish_at"))  # type: ignore[arg-type]
        lead = "next" if ahead == 0 else f"{ahead} ahead"
        if finish is None:
            return f"queued — {lead}"
        return f"queued — {lead}, starts in ~{max(0.0, finish - delay - now):.0f} s"
    if status is JobStatus.RUNNING and started is not None:
        return f"running — {min(max(0.0, now - started), delay):.1f} of {delay:g} s"
    if status is JobStatus.DONE and started is not None and finished is not None:
        return f"done in {duration(finished - started)}"
    if status is JobStatus.FAILED:
        return f"failed: {job.get('error') or 'no reason given'}"
    return status.value


def duration(seconds: float) -> str:
    """`0.35 s`, `2.50 s`, `12.3 s`: hundredths under 10 s, where a tenth is a large share."""
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
