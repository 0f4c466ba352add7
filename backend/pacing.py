"""Bursts spread over turns of the event loop, so that no burst holds the loop for long.

One turn of asyncio's loop runs every callback that is ready. When 50 clients holding
1 000 waits each go away together, aiohttp cancels their 50 handlers, `asyncio.gather`
cancels their 50 000 tasks at once, and unwinding each costs ~35 µs (more with the
garbage collector): 1.8 to 4 s in a single turn, during which nobody else is answered.
Here the tasks of a cancelled batch are handed to one reaper per loop that cancels
`SLICE` of them per turn, and a wake of many futures is paced the same way.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

SLICE = 256  # tasks cancelled, or futures woken, per turn of the loop (~10 ms of unwinding)
DECODE_PER_TURN = 256 * 1024  # bytes of request bodies decoded per turn (~6 ms; one is never cut)


async def side_by_side(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Run `calls` as tasks at once and return their results in order, as `asyncio.gather`.

    They are started at most `SLICE` per turn of the loop, counting every batch's, and
    if the caller is cancelled, they are cancelled at most `SLICE` per turn likewise:
    50 batches of 1 000 waits arriving together held the loop 5.9 s when started at once.
    """
    pacer = _pacer()
    waiting = list(calls)
    tasks: list[asyncio.Future[T]] = []
    try:
        for call in waiting:
            if not pacer.may_start():
                await pacer.next_turn()  # this turn's starts are used up
            tasks.append(asyncio.ensure_future(call))
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        pacer.cancel(tasks)
        for call in waiting[len(tasks) :]:  # never started: close them without running them
            if asyncio.iscoroutine(call):
                call.close()
        raise
    return [task.result() for task in tasks]


async def decode_turn(size: int) -> None:
    """Return in a turn of the loop where a body of `size` bytes may be decoded.

    Decoding JSON costs ~25 ms a MiB: 50 batches of 1 000 waits (86 KB each) that arrive
    together were decoded in one turn, 86 ms of CPU. At most DECODE_PER_TURN bytes, or
    one body however large, are decoded per turn, counting every request's.
    """
    pacer = _pacer()
    while not pacer.may_decode(size):
        await pacer.turn()


def wake(futures: Iterable[asyncio.Future[None]]) -> None:
    """Set the result of each future still pending, `SLICE` per turn, from the next turn on."""
    _pacer().wake(futures)


class _Pacer:
    """One loop's queue of tasks to cancel and futures to wake, worked off a slice a turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._work: deque[tuple[bool, asyncio.Future[Any]]] = deque()  # (cancel?, which)
        self._scheduled = False
        self._started = 0  # tasks started in this turn
        self._decoded = 0  # bytes of bodies decoded in this turn
        self._counting = False  # a reset of the counts is scheduled for the next turn
        self._next: asyncio.Future[None] | None = None  # done when a new turn begins

    def may_start(self) -> bool:
        """Count one task start in this turn; False once SLICE were started."""
        if self._started >= SLICE:
            return False
        self._count()
        self._started += 1
        return True

    def may_decode(self, size: int) -> bool:
        """Count `size` bytes decoded in this turn; False if that would pass DECODE_PER_TURN."""
        if self._decoded and self._decoded + size > DECODE_PER_TURN:
            return False
        self._count()
        self._decoded += size
        return True

    async def next_turn(self) -> None:
        """Return in a later turn, and count a start there (False from may_start came first)."""
        while True:
            await self.turn()
            if self.may_start():
                return

    async def turn(self) -> None:
        """Return once a new turn begins (something was counted in this one)."""
        if self._next is None:
            self._next = self._loop.create_future()
        await asyncio.shield(self._next)  # shared: one caller's cancel must not end it

    def _count(self) -> None:
        if not self._counting:
            self._counting = True
            self._loop.call_soon(self._new_turn)

    def _new_turn(self) -> None:
        self._started = 0
        self._decoded = 0
        self._counting = False
        if self._next is not None:
            self._next.set_result(None)
            self._next = None

    def cancel(self, tasks: Iterable[asyncio.Future[Any]]) -> None:
        self._add((True, task) for task in tasks)

    def wake(self, futures: Iterable[asyncio.Future[None]]) -> None:
        self._add((False, future) for future in futures)

    def _add(self, work: Iterable[tuple[bool, asyncio.Future[Any]]]) -> None:
        self._work.extend(work)
        if self._work and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._turn)

    def _turn(self) -> None:
        for _ in range(min(SLICE, len(self._work))):
            cancel, future = self._work.popleft()
            if future.done():
                continue
            if cancel:
                future.cancel()
            else:
                future.set_result(None)
        if self._work:
            self._loop.call_soon(self._turn)  # the next slice, after what is ready now
        else:
            self._scheduled = False


_PACERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pacer] = weakref.WeakKeyDictionary()


def _pacer() -> _Pacer:
    loop = asyncio.get_running_loop()
    pacer = _PACERS.get(loop)
    if pacer is None:
        pacer = _PACERS[loop] = _Pacer(loop)
    return pacer
