"""`visible`: no control character reaches a person's terminal; printable text is untouched."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backend.display import visible

BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def unsafe(char: str, *, multiline: bool) -> bool:
    """What must never be shown raw: C0, DEL, C1 and the bidirectional controls."""
    if multiline and char in "\n\t":
        return False
    return unicodedata.category(char) == "Cc" or char in BIDI


@given(st.text())
@example("\x1b]2;PWNED\x07 hi")
@example("\x1b[31mred")
@example("exe.\u202etxt")
@example("a\u2066b\u2069")
@example("\x9b31m")
def test_output_holds_no_control_character(text: str) -> None:
    """Whatever the text, the one-line form holds no control or bidi override at all."""
    shown = visible(text)
    assert not any(unsafe(char, multiline=False) for char in shown)


@given(st.text())
@example("line one\nline\ttwo\x1b[2J")
def test_multiline_keeps_newline_and_tab_only(text: str) -> None:
    """The multi-line form keeps newlines and tabs, and escapes every other control."""
    shown = visible(text, multiline=True)
    assert not any(unsafe(char, multiline=True) for char in shown)
    assert shown.count("\n") == text.count("\n")
    assert shown.count("\t") == text.count("\t")


@given(st.text(st.characters(exclude_categories=["Cc"]).filter(lambda c: c not in BIDI)))
@example("пример")
@example("👍🏽 e\u0301 한국어")
def test_printable_text_passes_unchanged(text: str) -> None:
    """Text with no control character comes back as it was, in any script."""
    assert visible(text) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b]2;PWNED\x07 hi", "\\x1b]2;PWNED\\x07 hi"),
        ("a\nb", "a\\x0ab"),
        ("\x7f\x85", "\\x7f\\x85"),
        ("x\u202ey", "x\\u202ey"),
        ("\u2069", "\\u2069"),
    ],
)
def test_escapes_read_as_python_escapes(text: str, shown: str) -> None:
    """Each control is written as the escape a programmer would type for it."""
    assert visible(text) == shown


def test_the_servers_log_lines_show_no_control_character() -> None:
    """A message or traceback carrying escapes is logged with them visible, one line a message."""
    import io
    import logging

    from backend.main import VisibleFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(VisibleFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("taskrpc.test_display")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("job failed: %s", "\x1b]2;PWNED\x07\nFAKE forged line")
        try:
            raise ValueError("\x1b[31mred")
        except ValueError:
            logger.exception("raised")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "WARNING job failed: \\x1b]2;PWNED\\x07\\x0aFAKE forged line"
    assert not any(unsafe(char, multiline=True) for char in stream.getvalue())
    assert "ValueError: \\x1b[31mred" in stream.getvalue()
