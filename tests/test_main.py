"""The server's log lines (backend/main.py): stamps formatted once a second."""

from __future__ import annotations

import logging

import pytest

from backend.main import VisibleFormatter


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
