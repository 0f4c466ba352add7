"""Dashboard model and job-type behaviours that planted faults once slipped past (issue 14)."""

from __future__ import annotations

import pytest

from backend.jobs import JOB_TYPES, repeat, repeat_length, reverse, swap
from backend.protocol import JobStatus
from tui import model


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (59.4, "59s"),
        (60, "1m00s"),
        (185, "3m05s"),
        (185.9, "3m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (7260, "2h01m"),
        (86399, "23h59m"),
        (86400, "1d00h"),
        (3 * 86400 + 4 * 3600, "3d04h"),
    ],
)
def test_durations_of_a_minute_and_more(seconds: float, shown: str) -> None:
    """Durations from 60 s up read as minutes and seconds, hours and minutes, days and hours."""
    assert model.duration(seconds) == shown
    assert model.duration(seconds, whole=True) == shown


def _job(preview: str) -> model.Job:
    return model.Job(
        id="abcdefghijklmnop",
        seq=1,
        type="reverse",
        status=JobStatus.QUEUED,
        preview=preview,
        length=len(preview),
        delay=2.0,
        submitted_at=0.0,
        started_at=None,
        finished_at=None,
    )


def test_the_filter_is_case_insensitive_on_text() -> None:
    """A lowercase filter word (the filter box lowercases what is typed) finds mixed-case text."""
    job = _job("Hello WORLD Straße")
    assert job.matches(["hello"])
    assert job.matches(["world", "hello"])
    assert job.matches(["straße"])
    assert not job.matches(["goodbye"])
    assert not job.matches(["hello", "goodbye"])


# One example per kind of multi-code-point grapheme cluster, so a mutant that counts
# clusters or code points wrongly dies on every run, not when Hypothesis happens to draw one.
CLUSTERS = {
    "combining accent": "e\u0301",
    "emoji with skin tone": "\U0001f44d\U0001f3fd",
    "flag": "\U0001f1eb\U0001f1f7",
    "zero-width-joiner family": "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "keycap": "1\ufe0f\u20e3",
    "hangul jamo": "\u1100\u1161\u11a8",
    "crlf": "\r\n",
    "variation selector": "\u2764\ufe0f",
}


@pytest.mark.parametrize("kind", sorted(CLUSTERS))
def test_result_length_checks_on_multi_code_point_characters(kind: str) -> None:
    """Every type's result_length is the length of its result, with clusters of many code points."""
    text = "a" + CLUSTERS[kind] + "bc" + CLUSTERS[kind]
    assert [t.result_length(text) for t in JOB_TYPES] == [
        len(reverse(text)),
        len(swap(text)),
        len(repeat(text)),
    ]
    assert len(repeat(text)) == repeat_length(text) > len(text)
