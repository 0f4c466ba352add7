"""`mutmut run`, with two changes to its steps, and the time each step took (TESTING.md).

mutmut 3.8.1 (`make mutate` runs this instead of `mutmut run`; the arguments are the same):

- **No clean run after a fresh stats run.** mutmut runs the whole selection three times
  before the first mutant: under coverage (to mutate covered lines only), to record which
  test calls which function (the stats run), and unmutated, to check it passes (the clean
  run). The stats run *is* an unmutated run: its trampolines call the original functions
  and only record who called them, and mutmut stops when it fails. When the stats were
  collected in this invocation (a fresh `mutants/`, or a change to the test selection),
  the clean run repeats it and is skipped. When the stats come from the cache, or only new
  tests were run for stats, the clean run goes ahead as mutmut has it.
- **A per-test timeout in the mutant runs**, from each test's duration in the stats run
  (`TIMEOUT_FLOOR + TIMEOUT_FACTOR * duration`), instead of the suite's 120 s: a mutant that
  makes a test hang costs seconds. A test stopped there fails, so the mutant counts as
  killed, which is right only if the clean code never gets near the limit: the floor covers
  fixture setup (the recorded duration is the test's call only) and a loaded machine.
  The clean runs (coverage, stats, clean) keep the suite's own timeout.

Each step's wall time is printed at the end and written to `mutants/timings.txt`.

Usage: python tools/mutate.py [--max-children N] [MUTANT_NAME_PATTERN...]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import mutmut.__main__ as mutmut_main
import pytest
from mutmut.runners import harness
from mutmut.state import state
from mutmut.utils.file_utils import change_cwd
from mutmut.workers import isolation

TIMEOUT_FLOOR = 15.0  # seconds: setup, teardown and a loaded machine, for any test
TIMEOUT_FACTOR = 10.0  # times the test's own duration in the stats run

TIMED = [  # mutmut.__main__'s steps, by the name it calls them by, and ours
    ("store_lines_covered_by_tests", "coverage run"),
    ("create_mutants", "writing mutants"),
    ("filter_mutants_with_type_checker", "type check"),
    ("run_forced_fail_test", "forced-fail check"),
]
STEPS: list[tuple[str, float]] = []  # (step, seconds), in the order they ran
_fresh_stats = False  # a full stats run passed in this process


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, recording the wall time of each call under `name`."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return function(*args, **kwargs)
        finally:
            STEPS.append((name, time.monotonic() - start))

    return timed


def _stats_run(runner: Any, tests: Iterable[str] | None = None) -> None:
    """mutmut's stats run; remembers a full one (no test list) that passed: mutmut exits
    the process when a stats run fails, so returning means it passed."""
    global _fresh_stats
    _original_stats_run(runner, tests)
    if not tests:
        _fresh_stats = True


def _clean_run(self: isolation.ForkRunner, tests: Iterable[str]) -> int:
    """mutmut's clean run, unless a full stats run already ran the same tests unmutated."""
    if _fresh_stats:
        print("    skipped: the stats run of this invocation ran these tests unmutated")
        return 0
    return _original_clean_run(self, tests)


class PerTestTimeout:
    """A pytest plugin for the mutant runs: each test's timeout from its stats duration."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Mark each test with its own timeout, ahead of any other timeout marker."""
        durations = state().duration_by_test
        for item in items:
            limit = TIMEOUT_FLOOR + TIMEOUT_FACTOR * durations.get(item.nodeid, 0.0)
            item.add_marker(pytest.mark.timeout(limit), append=False)


def _run_tests(self: harness.PytestRunner, *, mutant_name: str | None, tests: Iterable[str]) -> int:
    """mutmut's test run (a mutant's, the clean one, the forced failure), with the per-test
    timeout when a mutant is under test."""
    plugins = [PerTestTimeout()] if mutant_name else []
    with change_cwd("mutants"):
        return int(self.execute_pytest(self._pytest_args_regular_run(tests), plugins=plugins))


_original_stats_run = mutmut_main.run_stats_collection
_original_clean_run = isolation.ForkRunner.run_clean_tests


def install() -> None:
    """Put the changes above into mutmut's modules (they look their functions up at call
    time, so replacing the module attributes is enough)."""
    mutmut_main.run_stats_collection = _timed("stats run", _stats_run)
    for attribute, name in TIMED:
        setattr(mutmut_main, attribute, _timed(name, getattr(mutmut_main, attribute)))
    isolation.ForkRunner.run_clean_tests = _timed("clean run", _clean_run)  # type: ignore[method-assign]
    harness.PytestRunner.run_tests = _run_tests  # type: ignore[method-assign]


def report(total: float) -> str:
    """The steps' times, and the mutants' share (what is left of the total)."""
    lines = [f"{name:<20} {seconds:7.1f} s" for name, seconds in STEPS]
    rest = total - sum(seconds for _, seconds in STEPS)
    lines.append(f"{'mutants':<20} {rest:7.1f} s")
    lines.append(f"{'total':<20} {total:7.1f} s")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Run mutmut's `run` command with the changes installed; print the step times."""
    install()
    start = time.monotonic()
    code = 0
    try:
        mutmut_main.cli(["run", *argv], standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    timings = report(time.monotonic() - start)
    print("\nTime by step\n" + timings)
    if Path("mutants").is_dir():
        Path("mutants/timings.txt").write_text(timings, encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
