"""The job types: pure transforms on user-perceived characters, and their registry."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backend.jobs import JOB_TYPES, graphemes, lookup, repeat, repeat_length, reverse, swap

THUMB = "👍🏽"  # thumbs up + skin tone: two code points, one character
FLAG = "🇺🇦"  # two regional indicators, one flag
E_ACUTE = "e\u0301"  # e + combining acute accent
FAMILY = "👨\u200d👩\u200d👧"  # three emoji joined by zero-width joiners
KEYCAP = "1\ufe0f\u20e3"
# Whole characters to build texts from. Arbitrary code points are not enough: a text that
# starts with a lone combining mark re-attaches it to another character once moved.
CLUSTERS = st.sampled_from(
    ["a", "п", " ", "1", "字", "한", "\n", THUMB, FLAG, E_ACUTE, FAMILY, KEYCAP]
)
TEXTS = st.lists(CLUSTERS).map("".join)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("пример", "ремирп"),
        ("", ""),
        ("a", "a"),
        ("ab", "ba"),
        ("abc", "cba"),
        (f"a{THUMB}b", f"b{THUMB}a"),
        (f"{FLAG}{E_ACUTE}", f"{E_ACUTE}{FLAG}"),
    ],
)
def test_reverse(text: str, expected: str) -> None:
    """Reverse reverses characters, keeping clusters whole."""
    assert reverse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("пример", "рпмире"),
        ("кот", "окт"),
        ("", ""),
        ("a", "a"),
        ("ab", "ba"),
        ("abcd", "badc"),
        ("abcde", "badce"),
        (f"{THUMB}{FLAG}{E_ACUTE}", f"{FLAG}{THUMB}{E_ACUTE}"),
    ],
)
def test_swap(text: str, expected: str) -> None:
    """Swap exchanges 1st↔2nd, 3rd↔4th…; an odd last character stays."""
    assert swap(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("пример", "прриииммммееееерррррр"),
        ("", ""),
        ("a", "a"),
        ("ab", "abb"),
        (f"a{THUMB}", f"a{THUMB}{THUMB}"),
        (f"{E_ACUTE}{FLAG}", f"{E_ACUTE}{FLAG}{FLAG}"),
    ],
)
def test_repeat(text: str, expected: str) -> None:
    """Repeat writes each character as many times as its 1-based position."""
    assert repeat(text) == expected


def test_clusters_are_single_characters() -> None:
    """A skin-toned emoji, a flag and a combining accent each count as one character."""
    assert graphemes(f"{THUMB}{FLAG}{E_ACUTE}") == [THUMB, FLAG, E_ACUTE]


@given(TEXTS)
def test_reverse_is_an_involution(text: str) -> None:
    """Reversing twice gives the text back."""
    assert reverse(reverse(text)) == text


@given(TEXTS)
def test_swap_is_an_involution(text: str) -> None:
    """Swapping twice gives the text back."""
    assert swap(swap(text)) == text


@given(st.lists(CLUSTERS))
def test_repeat_length_is_triangular(chars: list[str]) -> None:
    """Repeat of n characters has n(n+1)/2 characters, emoji and accents included."""
    n = len(chars)
    assert len(graphemes(repeat("".join(chars)))) == n * (n + 1) // 2


@given(st.lists(CLUSTERS))
def test_reverse_keeps_clusters(chars: list[str]) -> None:
    """Reverse reverses the sequence of characters without splitting any."""
    assert graphemes(reverse("".join(chars))) == chars[::-1]


@given(st.text())
@example("e\u0301")  # a combining accent
@example("\U0001f44d\U0001f3fd")  # an emoji with a skin tone
@example("\U0001f1eb\U0001f1f7")  # a flag
@example("\U0001f468\u200d\U0001f469\u200d\U0001f467")  # a zero-width-joiner sequence
@example("1\ufe0f\u20e3")  # a keycap
@example("\u1100\u1161\u11a8")  # Hangul jamo
@example("\r\n")  # CR LF, one cluster
@example("ab\U0001f44d\U0001f3fde\u0301")  # clusters after single code points
def test_repeat_length_predicts_the_result(text: str) -> None:
    """repeat_length, used to refuse oversized jobs at submit, is exact for any text; one
    explicit example per kind of multi-code-point cluster, so no run depends on luck."""
    assert repeat_length(text) == len(repeat(text))


@pytest.mark.parametrize(
    ("key", "name"),
    [(1, "reverse"), (2, "swap"), (3, "repeat"), ("reverse", "reverse"), ("repeat", "repeat")],
)
def test_lookup_by_code_or_name(key: int | str, name: str) -> None:
    """A type is found by its code or its name."""
    found = lookup(key)
    assert found is not None
    assert found.name == name


@pytest.mark.parametrize("key", [0, 4, "1", "Reverse", True, None, 1.0, [1]])
def test_lookup_rejects_everything_else(key: object) -> None:
    """Other codes, names, strings of digits, booleans and other types are not types."""
    assert lookup(key) is None


def test_registry_delays() -> None:
    """The registry holds the contract: 1 reverse 2 s, 2 swap 5 s, 3 repeat 7 s."""
    assert [(t.code, t.name, t.delay) for t in JOB_TYPES] == [
        (1, "reverse", 2.0),
        (2, "swap", 5.0),
        (3, "repeat", 7.0),
    ]
