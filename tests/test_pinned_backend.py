"""Backend behaviours that mutation testing found unpinned (issue 14).

Each test here failed with the mutants it is about applied (`mutmut apply NAME`, TESTING.md).
"""

from __future__ import annotations

import asyncio

from backend.waiters import Waiters
from tests.conftest import until


async def test_the_seqs_of_dropped_position_waits_do_not_pile_up() -> None:
    """Position waits that are dropped leave at most 64 stale seqs behind, however many."""
    waiters = Waiters()
    tasks = [asyncio.create_task(waiters.wait(f"job{seq}", seq)) for seq in range(1000)]
    await until(lambda: waiters.count == 1000, what="1000 parked waits")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert waiters.count == 0
    assert len(waiters._seqs) <= 64  # the sorted list of watched seqs, swept as it goes
    kept = asyncio.create_task(waiters.wait("job5000", 5000))  # a later wait is still woken
    await until(lambda: waiters.count == 1, what="a new parked wait")
    waiters.wake_positions_behind(4999)
    await asyncio.wait_for(kept, 5)
