"""The live status of `taskrpc wait` on stderr.

On a terminal: one line that is redrawn ten times a second with the time elapsed
and the time left (from the local clock: no server traffic). Elsewhere: one line
per change of status or position, so logs stay readable.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import TextIO

from backend.protocol import JobObject
from cli.render import status_line, time_left

REDRAW_EVERY = 0.1  # seconds between redraws of the terminal line


class LiveStatus:
    """Shows a job's status as it changes; `close()` leaves the last state on screen."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._job: JobObject | None = None
        self._began = time.monotonic()
        self._last_key: tuple[str, int | None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    def show(self, job: JobObject) -> None:
        """Record the newest state of the job and show it."""
        self._job = job
        if self._tty:
            self._draw()
            if self._ticker is None:
                self._ticker = asyncio.create_task(self._tick())
            return
        key = (job["status"], job["position"])
        if key != self._last_key:
            self._last_key = key
            self._stream.write(f"{self._describe(job)}\n")
            self._stream.flush()

    def close(self) -> None:
        """Stop redrawing and end the terminal line."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._tty and self._job is not None:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(REDRAW_EVERY)
            self._draw()

    def _draw(self) -> None:
        if self._job is None:
            return
        elapsed = time.monotonic() - self._began
        line = f"{self._describe(self._job)} · {elapsed:.1f} s elapsed"
        left = time_left(self._job, time.time())
        if left is not None:
            line += f" · ~{left:.1f} s left"
        width = shutil.get_terminal_size().columns - 1  # a wrapped line could not be redrawn
        self._stream.write(f"\r\x1b[K{line[:width]}")
        self._stream.flush()

    @staticmethod
    def _describe(job: JobObject) -> str:
        return f"{job['id']} {job['type']}: {status_line(job, time.time())}"
