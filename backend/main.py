"""`taskrpc-server`: parse settings, configure logging, serve until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from backend.app import STORE, start
from backend.collector import keep_out_of_floods
from backend.display import visible
from backend.journal import Refused
from backend.loops import LoopUnavailable, choose
from backend.settings import Settings, token_on_command_line

USAGE = 2  # exit status: the server cannot start as told (a bad option, an unusable database)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; returns the exit status."""
    settings = Settings.from_args(argv)
    configure_logging(settings.log_level)
    if token_on_command_line(argv):
        logging.getLogger("taskrpc").warning(
            "--token is visible to every user of this machine (ps, /proc/PID/cmdline): "
            "use --token-file PATH or TASKRPC_TOKEN instead"
        )
    try:
        label, factory = choose(settings.loop)
    except LoopUnavailable as exc:
        print(f"taskrpc-server: {exc}", file=sys.stderr)
        return USAGE
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(settings, label))
    except Refused as exc:
        print(f"taskrpc-server: {exc}", file=sys.stderr)
        return USAGE
    except OSError as exc:
        print(
            f"taskrpc-server: cannot listen on {settings.host}:{settings.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        pass  # a second Ctrl+C during shutdown: still no traceback
    return 0


class VisibleFormatter(logging.Formatter):
    """Log lines with their control characters made visible (`backend.display.visible`).

    A job's text or error, a header or a request line can reach a log line; raw, it could
    forge further lines (a newline) or drive the operator's terminal (an escape sequence).
    A message stays one line; a traceback keeps its newlines and escapes everything else.
    """

    _second = -1  # the second whose stamp is in _stamp
    _stamp = ""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return visible(super().formatMessage(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's own stamp (`2026-11-30 21:40:09,123`), its date and time formatted once a
        second: server CPU per job in a drain at info 62 → 57 µs (48 at warning; A/B, bench
        row "drain, taskrpc logging at info")."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:  # local time changes only on whole seconds
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        msec_format = self.default_msec_format
        return self._stamp if msec_format is None else msec_format % (self._stamp, record.msecs)

    def formatException(self, ei: Any) -> str:
        return visible(super().formatException(ei), multiline=True)

    def formatStack(self, stack_info: str) -> str:
        return visible(super().formatStack(stack_info), multiline=True)


def configure_logging(level: str) -> None:
    """The one place logging is set up: lines on stderr, control characters made visible."""
    # Nothing in our format uses the caller, thread or process of a record: skip looking
    # them up (the logging HOWTO's "Optimization"; bench row "drain … at log level info").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)  # each line written as it comes
    handler.setFormatter(VisibleFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


async def serve(settings: Settings, loop_name: str = "asyncio") -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully; `loop_name` says which loop."""
    runner, url = await start(settings)
    logging.getLogger("taskrpc").info("event loop: %s", loop_name)
    collector = asyncio.create_task(keep_out_of_floods(), name="taskrpc-collector")
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(
            f"taskrpc-server listening on {url} "
            f"(time scale {settings.time_scale:g}; jobs kept {runner.app[STORE].location}; "
            "Ctrl+C to stop)",
            flush=True,
        )
        await stop.wait()
        logging.getLogger("taskrpc").info("stopping")
    finally:
        collector.cancel()
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
