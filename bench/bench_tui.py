"""The dashboard at scale: load 10 000 jobs, apply bursts of 1 000 changes, then idle.

Runs the real server in-process and the real dashboard headless (Textual's
`run_test`), and times: the first snapshot until all 10 000 rows are in the
table; a burst of 1 000 cancels (rows change in place) and a burst of 1 000
submits (rows added), each until the table shows all of it, and the longest
single `apply_changes` call (how long the screen could freeze); then, with nothing
changing, the CPU it uses with the running job's row out of sight and on screen.

`python -m bench.bench_tui` prints the figures; `rows()` feeds `python -m bench`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from textual import events

from backend.app import STORE, start
from backend.protocol import Changes, JobStatus
from backend.settings import Settings
from backend.store import Store
from bench.common import Row, log
from cli.client import Client
from tui.app import Dashboard

JOBS = 10_000
BURST = 1_000
LOAD_TARGET = 2.0  # seconds
FREEZE_TARGET = 0.25  # seconds
IDLE_WINDOW = 3.0  # seconds of no changes, a job running, over which CPU use is measured
RATE = 1_000  # submits a second during the key-latency burst…
BURST_SECONDS = 5.0  # …for this long
KEY_EVERY = 0.05  # seconds between two key presses during it
KEY_TARGET = 0.1  # seconds: a key is answered within this, at the 95th percentile


async def _until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the dashboard never caught up")
        await asyncio.sleep(0.001)


async def _cpu_share(seconds: float) -> float:
    """The share of one core this process used over the next `seconds`."""
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


async def measure() -> dict[str, float]:
    """Seconds for each phase, and the longest apply_changes."""
    settings = Settings(port=0, time_scale=1000.0, max_queued=JOBS * 2, db=":memory:")
    runner, url = await start(settings)
    store = runner.app[STORE]
    jobs = [
        await store.submit(("reverse", "swap", "repeat")[n % 3], f"job number {n}")
        for n in range(JOBS)
    ]
    figures: dict[str, float] = {}
    try:
        async with Client(url) as client:
            dashboard = Dashboard(client)
            longest = 0.0
            screen = dashboard.jobs_screen
            apply = screen.apply_changes

            def timed(changes: Changes) -> None:
                nonlocal longest
                began = time.perf_counter()
                apply(changes)
                longest = max(longest, time.perf_counter() - began)

            screen.apply_changes = timed  # type: ignore[method-assign]
            began = time.perf_counter()
            async with dashboard.run_test(size=(120, 36)) as pilot:
                table = screen.table
                await _until(lambda: table.row_count == JOBS)
                await pilot.pause()
                figures["load"] = time.perf_counter() - began

                targets = jobs[-BURST:]  # queued jobs: cancel them all at once
                began = time.perf_counter()
                for job in targets:
                    await store.cancel(job.id)
                await _until(
                    lambda: all(
                        dashboard.jobs.by_id[j.id].status is JobStatus.CANCELLED for j in targets
                    )
                )
                await pilot.pause()
                figures["burst_update"] = time.perf_counter() - began

                began = time.perf_counter()
                added = [await store.submit("swap", f"burst {n}") for n in range(BURST)]
                # the row cap holds: the newest come in, as many of the oldest go
                await _until(lambda: added[-1].id in table and table.row_count == JOBS)
                await pilot.pause()
                figures["burst_add"] = time.perf_counter() - began
                figures["longest_apply"] = longest

                running = store.running
                assert running is not None
                for place, job_id in (("out_of_sight", jobs[-1].id), ("on_screen", running.id)):
                    table.move_to(job_id)
                    await pilot.pause()
                    assert table.on_screen(running.id) is (place == "on_screen")
                    figures[f"cpu_{place}"] = await _cpu_share(IDLE_WINDOW)
    finally:
        await runner.cleanup()
    return figures


async def _burst(store: Store, stop: asyncio.Event) -> int:
    """Submit RATE jobs a second, in slices of 10 ms, until `stop` is set."""
    submitted = 0
    began = time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - began) * RATE)
        for n in range(submitted, due):
            await store.submit("swap", f"burst {n}")
        submitted = max(submitted, due)
        await asyncio.sleep(0.01)
    return submitted


async def key_latency() -> list[float]:
    """Seconds from each key press (j, k in turn) until the table's cursor moved, while
    RATE submits a second arrive at a dashboard that holds JOBS rows."""
    settings = Settings(port=0, time_scale=1000.0, max_queued=JOBS * 4, db=":memory:")
    runner, url = await start(settings)
    store = runner.app[STORE]
    for n in range(JOBS):
        await store.submit("reverse", f"job number {n}")
    latencies: list[float] = []
    try:
        async with Client(url) as client:
            dashboard = Dashboard(client)
            async with dashboard.run_test(size=(120, 36)) as pilot:
                table = dashboard.jobs_screen.table
                await _until(lambda: table.row_count == JOBS)
                await pilot.pause()
                table.move_to(table.ids[5])
                stop = asyncio.Event()
                burst = asyncio.create_task(_burst(store, stop))
                began = time.perf_counter()
                keys = ("j", "k")
                while time.perf_counter() - began < BURST_SECONDS:
                    before = table.cursor
                    key = keys[len(latencies) % 2]
                    pressed = time.perf_counter()
                    assert dashboard._driver is not None
                    dashboard._driver.send_message(events.Key(key, key))
                    await _until(lambda before=before: table.cursor != before, timeout=10)
                    latencies.append(time.perf_counter() - pressed)
                    await asyncio.sleep(KEY_EVERY)
                stop.set()
                await burst
                assert len(dashboard.jobs.by_id) <= JOBS  # the cap held
    finally:
        await runner.cleanup()
    return latencies


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def rows() -> list[Row]:
    """The benchmark as rows of the results table."""
    log(f"dashboard: {JOBS} jobs, then bursts of {BURST} changes")
    figures = asyncio.run(measure())
    log(f"dashboard: key latency during a burst of {RATE} submits/s at {JOBS} rows")
    latencies = asyncio.run(key_latency())
    p95, worst = _percentile(latencies, 0.95), max(latencies)
    return [
        Row(
            f"dashboard: key answered during {RATE} submits/s at {JOBS} rows (p95)",
            f"{p95 * 1000:.0f} ms",
            "—",
            None,
            f"< {KEY_TARGET * 1000:.0f} ms",
            p95 < KEY_TARGET,
            f"{len(latencies)} presses over {BURST_SECONDS:g} s; worst {worst * 1000:.0f} ms",
        ),
        Row(
            f"dashboard: load {JOBS} jobs (snapshot → all rows)",
            f"{figures['load']:.2f} s",
            "—",
            None,
            f"< {LOAD_TARGET:g} s",
            figures["load"] < LOAD_TARGET,
        ),
        Row(
            f"dashboard: burst of {BURST} cancels shown",
            f"{figures['burst_update']:.2f} s",
            "—",
            None,
            "report",
            None,
        ),
        Row(
            f"dashboard: burst of {BURST} submits shown",
            f"{figures['burst_add']:.2f} s",
            "—",
            None,
            "report",
            None,
        ),
        Row(
            "dashboard: longest single apply_changes (freeze)",
            f"{figures['longest_apply'] * 1000:.0f} ms",
            "—",
            None,
            f"< {FREEZE_TARGET * 1000:.0f} ms",
            figures["longest_apply"] < FREEZE_TARGET,
        ),
        *(
            Row(
                f"dashboard: CPU with no changes, the running job's row {where}",
                f"{figures[key]:.0%} of a core",
                "—",
                None,
                "report",
                None,
                "dashboard and server in one process; rows on screen redraw twice a second",
            )
            for where, key in (("out of sight", "cpu_out_of_sight"), ("on screen", "cpu_on_screen"))
        ),
    ]


if __name__ == "__main__":
    for row in rows():
        print(f"{row.what}: {row.value} (target {row.target})")
