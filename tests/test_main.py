"""The server's log lines (backend/main.py): stamps formatted once a second, lines gathered."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from backend.main import LineHandler, VisibleFormatter
from tests.conftest import until


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through a LineHandler into a string, and that string."""
    stream = io.StringIO()
    handler = LineHandler(stream)
    handler.setFormatter(VisibleFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("taskrpc.test_main")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    "created", [1700000000.0, 1700000000.9995, 1700000001.5, 1764539009.123456]
)
def test_the_stamp_is_loggings_own(created: float) -> None:
    """The stamp cached per second reads as logging's own, milliseconds included."""
    ours = VisibleFormatter("%(asctime)s %(message)s")
    plain = logging.Formatter("%(asctime)s %(message)s")
    for when in (created, created + 0.25, created + 1):  # a second apart: a new stamp
        record = logging.makeLogRecord({"msg": "m", "created": when, "msecs": (when % 1) * 1000})
        assert ours.format(record) == plain.format(record)


async def test_info_lines_are_gathered_and_a_warning_writes_them_in_order(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    """While the loop runs, info lines wait for the next flush; a warning writes them, then
    itself, at once; a line left gathered is written within FLUSH_EVERY."""
    logger, stream = logged
    logger.info("one")
    logger.debug("two")
    assert stream.getvalue() == ""  # gathered, not written yet
    logger.warning("three")
    assert stream.getvalue() == "INFO one\nDEBUG two\nWARNING three\n"
    logger.info("four")
    await until(lambda: stream.getvalue().endswith("INFO four\n"), timeout=5, what="the flush")


def test_without_a_running_loop_every_line_is_written_at_once(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    """Starting or stopping (no event loop running), an info line is written as it comes."""
    logger, stream = logged
    logger.info("starting")
    assert stream.getvalue() == "INFO starting\n"
