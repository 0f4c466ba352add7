"""The cyclic garbage collector, kept out of floods: no full pass over what lives long.

Measured (issue 8 §3, 50 batches of 1 000 `wait` arriving on 50 connections): CPython
3.11 runs a full (generation 2) pass each time the objects that survived the younger
passes reach 25 % of the old ones. A parked wait keeps ~24 tracked objects alive (its
task, 7 coroutines, futures, a timeout and its timer handle, contexts), so while 50 000
arrive the heap grows from ~0.1 to ~1.3 million objects and 11 full passes of 40-350 ms
each ran during the arrival (gc.callbacks timing): that, not the waits' own work, was
the 250-680 ms /healthz stall. Fewer objects per wait would only shorten each pass.

Here the server takes the full passes out of the collector's hands: automatic ones
never run, and every `TICK` the young generations are collected and whatever survives
them is frozen (`gc.freeze`: out of every later pass), so a pass walks only what is new.
Objects freed by reference counting (almost all) are freed at once, frozen or not; only
reference cycles among long-lived objects wait for the full pass this module runs every
`FULL_EVERY` seconds (it stalls the loop for as long as it walks the heap).
Used by `taskrpc-server` only: a test process keeps the collector as Python sets it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

logger = logging.getLogger("taskrpc.collector")

TICK = 0.1  # seconds between collecting the young generations and freezing their survivors
FULL_EVERY = 600.0  # seconds between full passes, which reclaim cycles among old objects
NEVER = 2**31 - 1  # a generation-2 threshold that is never reached


async def keep_out_of_floods() -> None:
    """Run for as long as the server does (a task): freeze survivors, full pass rarely."""
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, NEVER)
    gc.collect()
    gc.freeze()  # what start-up built (modules, the app) is never walked again
    last_full = time.monotonic()
    try:
        while True:
            await asyncio.sleep(TICK)
            if time.monotonic() - last_full >= FULL_EVERY:
                full_pass()
                last_full = time.monotonic()
            else:
                gc.collect(1)  # the young generations only: what is garbage goes now
                gc.freeze()  # what survived lives long (a parked wait, a job): never walk it
    finally:  # the server is stopping: what is frozen stays so (a full pass would only delay)
        gc.set_threshold(young, middle, old)


def full_pass() -> None:
    """Walk everything once (cycles among frozen objects are reclaimed), then freeze again."""
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    took = time.perf_counter() - started
    logger.debug("full garbage collection: %d objects freed in %.0f ms", found, took * 1000)
