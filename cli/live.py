"""The live status of `taskrpc wait` on stderr.

On a terminal: one line, redrawn ten times a second by a small thread from the local
clock (no server traffic), while the main thread blocks in a long poll. Elsewhere: one
line per change of status or position, so logs stay readable.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import TextIO

from backend.display import visible
from backend.protocol import JobObject, JobStatus
from cli.render import status_line

REDRAW_EVERY = 0.1  # seconds between redraws of the terminal line


class LiveStatus:
    """Shows a job's status as it changes; `close()` leaves the last state on screen."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._job: JobObject | None = None
        self._began = time.monotonic()
        self._last_key: tuple[str, int | None] | None = None
        self._lock = threading.Lock()  # the ticker and the main thread both draw
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._note: str | None = None  # shown after the status, e.g. "server busy; ..."

    def show(self, job: JobObject) -> None:
        """Record the newest state of the job and show it."""
        with self._lock:
            self._job = job
        if self._tty:
            self._draw()
            if self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, daemon=True)
                self._ticker.start()
            return
        key = (job["status"], job["position"])
        if key != self._last_key:
            self._last_key = key
            self._stream.write(f"{self._describe(job)}\n")
            self._stream.flush()

    def note(self, text: str | None) -> None:
        """Show `text` after the status until the next note (None takes it away)."""
        with self._lock:
            self._note = text
        if self._tty:
            self._draw()
        elif text is not None:
            self._stream.write(f"{text}\n")
            self._stream.flush()

    def busy(self, pause: float | None) -> None:
        """The server is busy and is asked again in `pause` s; None: it answers again."""
        self.note(None if pause is None else f"server busy; asking again in {pause:g} s")

    def close(self) -> None:
        """Stop redrawing and end the terminal line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self._tty and self._job is not None:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()
            self._job = None

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW_EVERY):
            self._draw()

    def _draw(self) -> None:
        with self._lock:
            if self._job is None:
                return
            line = self._describe(self._job)
            if self._job["status"] == JobStatus.QUEUED:  # a running line already shows progress
                line += f" · {time.monotonic() - self._began:.1f} s elapsed"
            if self._note is not None:
                line += f" · {self._note}"
            width = shutil.get_terminal_size().columns - 1  # a wrapped line could not be redrawn
            self._stream.write(f"\r\x1b[K{line[:width]}")
            self._stream.flush()

    @staticmethod
    def _describe(job: JobObject) -> str:
        return visible(f"{job['id']} {job['type']}: {status_line(job, time.time())}")
