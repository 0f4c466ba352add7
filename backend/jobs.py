"""Job types: pure text transforms, their delays and their descriptions.

Nothing here knows about HTTP, asyncio or JSON. Adding a job type means adding
one `JobType` to `JOB_TYPES`; the server, `types()` and the OpenRPC document
all read this registry.

Text is handled as user-perceived characters (extended grapheme clusters), so
`👍🏽`, flags and `e` + combining accent are never split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import regex

_GRAPHEME = regex.compile(r"\X")


def graphemes(text: str) -> list[str]:
    """Split `text` into extended grapheme clusters."""
    return _GRAPHEME.findall(text)


def reverse(text: str) -> str:
    """Reverse the text: `пример` → `ремирп`."""
    return "".join(reversed(graphemes(text)))


def swap(text: str) -> str:
    """Swap characters pairwise, 1st↔2nd, 3rd↔4th…: `пример` → `рпмире`, `кот` → `окт`."""
    chars = graphemes(text)
    chars[0:-1:2], chars[1::2] = chars[1::2], chars[0:-1:2]
    return "".join(chars)


def repeat(text: str) -> str:
    """Repeat each character by its 1-based position: `абв` → `аббввв`."""
    return "".join(char * n for n, char in enumerate(graphemes(text), start=1))


def same_length(text: str) -> int:
    """Result length (code points) of a transform that only reorders characters."""
    return len(text)


def repeat_length(text: str) -> int:
    """Result length (code points) of `repeat(text)`, computed without building it."""
    return sum(n * len(char) for n, char in enumerate(graphemes(text), start=1))


@dataclass(frozen=True, slots=True)
class JobType:
    """One kind of job: a code and a name to ask for it by, and what it does."""

    code: int
    name: str
    description: str
    delay: float  # seconds of simulated work, before the time scale
    transform: Callable[[str], str]
    result_length: Callable[[str], int]  # exact length of the result, cheaply

    def describe(self) -> dict[str, object]:
        """The type as the `types` method reports it."""
        return {
            "code": self.code,
            "name": self.name,
            "description": self.description,
            "delay": self.delay,
        }


JOB_TYPES: tuple[JobType, ...] = (
    JobType(1, "reverse", "Reverse the text: пример → ремирп", 2.0, reverse, same_length),
    JobType(
        2,
        "swap",
        "Swap characters pairwise, 1st↔2nd, 3rd↔4th…: пример → рпмире",
        5.0,
        swap,
        same_length,
    ),
    JobType(
        3,
        "repeat",
        "Repeat each character by its position: пример → прриииммммееееерррррр",
        7.0,
        repeat,
        repeat_length,
    ),
)

_BY_KEY: dict[int | str, JobType] = {
    **{t.code: t for t in JOB_TYPES},
    **{t.name: t for t in JOB_TYPES},
}

ALLOWED = ", ".join([*(str(t.code) for t in JOB_TYPES), *(repr(t.name) for t in JOB_TYPES)])


def lookup(key: object) -> JobType | None:
    """The job type named by a code (1, 2, 3) or a name, or None."""
    if isinstance(key, bool) or not isinstance(key, int | str):
        return None  # True == 1 in Python, but not on the wire
    return _BY_KEY.get(key)
