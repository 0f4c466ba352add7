"""Text shown to a person: control characters made visible, never sent raw to a terminal.

A job's text, result and error come from whoever submitted the job. Written to a terminal
as they are, `"\\x1b]2;PWNED\\x07"` renames the window and `"\\x1b[31m"` recolours the
screen; a right-to-left override makes `exe.txt` read as `txt.exe`. So everything a person
sees (the CLI's lines, the dashboard's cells, the server's log) passes through `visible`.
The JSON API is not touched: it carries the data exactly as it was sent.

This module is a leaf (standard library only), cheap for the CLI to import.
"""

from __future__ import annotations

import re

# What is escaped, and how: C0 controls, DEL and C1 controls as `\xNN`; the bidirectional
# embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) as `\uNNNN`.
_CONTROLS = (*range(0x20), *range(0x7F, 0xA0))
_BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
_ESCAPES = {chr(c): f"\\x{c:02x}" for c in _CONTROLS} | {chr(c): f"\\u{c:04x}" for c in _BIDI}
# Newline and tab are decided by the caller: a view of several lines keeps them.
_UNSAFE_ONE_LINE = re.compile("[" + re.escape("".join(_ESCAPES)) + "]")
_UNSAFE_MULTILINE = re.compile(
    "[" + re.escape("".join(char for char in _ESCAPES if char not in "\n\t")) + "]"
)


def _escape(match: re.Match[str]) -> str:
    return _ESCAPES[match.group()]


def visible(text: str, *, multiline: bool = False) -> str:
    """`text` with every control character written as an escape a person can read.

    `"\\x1b[31mred"` -> `"\\\\x1b[31mred"`; `"a\\u202eb"` -> `"a\\\\u202eb"`. Printable text,
    whatever its script, comes back unchanged. With `multiline`, newline and tab are kept
    (for views that show several lines); otherwise they are escaped too, so one line stays one.
    """
    pattern = _UNSAFE_MULTILINE if multiline else _UNSAFE_ONE_LINE
    if pattern.search(text) is None:
        return text  # the usual case: no copy
    return pattern.sub(_escape, text)
