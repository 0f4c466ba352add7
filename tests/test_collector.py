"""The server's garbage-collector policy: no automatic full pass, survivors frozen each tick."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref

import pytest

from backend import collector
from backend.collector import NEVER, full_pass, keep_out_of_floods
from tests.conftest import until


async def test_survivors_are_frozen_each_tick_and_the_settings_come_back() -> None:
    """While it runs no full pass is automatic and survivors are frozen; then all is restored."""
    original = gc.get_threshold()
    before = (701, 11, 12)  # this test's own: whatever an earlier test in the process left
    gc.set_threshold(*before)
    task = asyncio.create_task(keep_out_of_floods())
    try:
        await until(lambda: gc.get_threshold()[2] == NEVER, what="the full passes turned off")
        kept = [[n] for n in range(10_000)]  # tracked objects that live long
        frozen = gc.get_freeze_count()
        await until(lambda: gc.get_freeze_count() > frozen, what="the survivors to be frozen")
        assert kept[-1] == [9_999]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gc.unfreeze()  # give this test process its collector back whole
    threshold = gc.get_threshold()
    gc.set_threshold(*original)
    assert threshold == before


class _Node:
    """An object that can be in a cycle and be watched by a weak reference."""

    def __init__(self) -> None:
        self.me = self


def test_a_full_pass_reclaims_a_cycle_among_frozen_objects() -> None:
    """full_pass collects a garbage cycle that was frozen (an ordinary pass leaves it)."""
    try:
        node = _Node()
        watched = weakref.ref(node)
        gc.freeze()
        del node
        gc.collect()
        assert watched() is not None  # frozen: an ordinary full pass does not see it
        full_pass()
        assert watched() is None
        assert gc.get_freeze_count() > 0  # what lives is frozen again
    finally:
        gc.unfreeze()


async def test_each_tick_collects_the_young_generations_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between two full passes (FULL_EVERY apart) a tick never walks generation 2."""
    monkeypatch.setattr(collector, "TICK", 0.001)
    generations: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    task = asyncio.create_task(keep_out_of_floods())
    try:
        await until(lambda: gc.get_threshold()[2] == NEVER, what="the full passes turned off")
        gc.callbacks.append(seen)
        try:
            await until(lambda: len(generations) >= 5, what="five ticks")
        finally:
            gc.callbacks.remove(seen)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gc.unfreeze()
    assert 2 not in generations
    assert 1 in generations
