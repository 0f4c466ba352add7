"""`mutmut run`, with changes to its steps, and the time each step took (TESTING.md).

mutmut 3.8.1 (`make mutate` runs this instead of `mutmut run`; the arguments are the same):

- **The coverage and stats runs in parallel**, `--max-children` processes sharing the test
  files (the tests mostly wait); the coverage run stops when a test fails twice.
- **The type check maps mypy's errors to mutants with ast**, not libcst, and drops (and
  prints) the errors outside a mutant, which stop mutmut.

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
  It ends the process (a thread's timer), as a test that spins the event loop would not
  let a raised timeout through. The clean runs (coverage, stats, clean) keep the suite's
  own timeout.
- **A mutant's run ends at its first failing test**, without tearing down: its process is
  mutmut's throw-away fork.

Each step's wall time is printed at the end and written to `mutants/timings.txt`.

Usage: python tools/mutate.py [--max-children N] [MUTANT_NAME_PATTERN...]
       python tools/mutate.py --save-killers   (tools/killers.txt from the last run's kills)
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import coverage
import mutmut.__main__ as mutmut_main
import pytest
from mutmut.code_coverage import _excluded_lines
from mutmut.configuration import config
from mutmut.mutation.file_mutation import FailedTypeCheckMutant, MutatedMethodLocation
from mutmut.runners import harness
from mutmut.state import state
from mutmut.type_checking import run_type_checker
from mutmut.utils.file_utils import change_cwd, walk_source_files
from mutmut.utils.format_utils import get_mutant_name, is_mutated_method_name
from mutmut.workers import isolation

TIMEOUT_FLOOR = 15.0  # seconds: setup, teardown and a loaded machine, for any test
TIMEOUT_FACTOR = 10.0  # times the test's own duration in the stats run

TIMED = [  # mutmut.__main__'s steps, by the name it calls them by, and ours
    ("create_mutants", "writing mutants"),
    ("run_forced_fail_test", "forced-fail check"),
]
STEPS: list[tuple[str, float]] = []  # (step, seconds), in the order they ran
_fresh_stats = False  # a full stats run passed in this process
WORKERS = 4  # processes for the coverage and stats runs (`--max-children`)
NO_TESTS = 5  # pytest's exit code when a file's tests are all deselected


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, recording the wall time of each call under `name`."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return function(*args, **kwargs)
        finally:
            STEPS.append((name, time.monotonic() - start))

    return timed


def _selection() -> list[str]:
    """The test files of the selection, largest first (a rough guide to the longest first):
    the units the parallel runs share out. `pytest_add_cli_args_test_selection` if set,
    else tests/test_*.py less the `--ignore`d files of `pytest_add_cli_args` (the other
    options, `-k`, `-m`, `--deselect`, still apply to each file)."""
    chosen = config().pytest_add_cli_args_test_selection
    if chosen:
        return list(chosen)
    args = config().pytest_add_cli_args
    ignored = {args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--ignore"}
    files = [path for path in Path("tests").glob("test_*.py") if str(path) not in ignored]
    return [str(path) for path in sorted(files, key=lambda path: -path.stat().st_size)]


def _share_out(units: list[str], run_one: Callable[[str], int], index: Any) -> int:
    """Run the units this process takes from the shared `index`, until none is left or one
    fails twice (which stops the other processes too, after their current unit, as `-x`
    would). Once is not enough: a few dashboard tests watch a state that lasts a few
    seconds of a job's run, and at times missed it with four processes running tests under
    coverage on a loaded machine. A second run of the file adds its lines and its stats to
    the first's (both are unions), so it costs time only."""
    while True:
        with index.get_lock():
            taken = index.value
            index.value += 1
        if taken >= len(units):
            return 0
        code = run_one(units[taken])
        if code not in (0, NO_TESTS):  # once more: a test that saw a loaded machine, or broken?
            print(f"\n{units[taken]} failed (exit code {code}): once more", flush=True)
            code = run_one(units[taken])
        if code not in (0, NO_TESTS):
            with index.get_lock():
                index.value = len(units)
            return code


def _log(number: int) -> Path:
    """Where parallel process `number` writes its pytest output (shown when it fails)."""
    return Path("mutants").absolute() / f"parallel-{number}.log"


def _in_forks(numbers: range, work: Callable[[int], Any]) -> list[Any]:
    """`work(n)` for each n in `numbers`, in forked processes at once; their results in
    order. Process n's output goes to `_log(n)`."""
    children = []
    for number in numbers:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read)
            log = _log(number).open("w", encoding="utf-8")
            sys.stdout = sys.stderr = log
            try:
                result: tuple[str, Any] = ("ok", work(number))
            except BaseException:
                result = ("error", traceback.format_exc())
            log.flush()
            with os.fdopen(write, "wb") as pipe:
                pickle.dump(result, pipe)
            os._exit(0)
        os.close(write)
        children.append((pid, read))
    results = []
    for pid, read in children:
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        os.waitpid(pid, 0)
        status, value = pickle.loads(data) if data else ("error", "the process died")
        if status != "ok":
            raise RuntimeError(f"a parallel run failed:\n{value}")
        results.append(value)
    return results


def _failed(codes: dict[int, int], step: str) -> None:
    """Stop, with the output of the processes, if any of them failed (codes by process)."""
    if any(code not in (0, NO_TESTS) for code in codes.values()):
        for number, code in codes.items():
            if code not in (0, NO_TESTS):
                print(_log(number).read_text(encoding="utf-8")[-20000:], file=sys.__stdout__)
        print(f"the {step} failed (exit codes {codes}): nothing was mutated", file=sys.__stderr__)
        raise SystemExit(1)


def _coverage_run() -> None:
    """mutmut's coverage run (the lines the tests run, to mutate those only), in WORKERS
    processes sharing the test files; unlike mutmut's, it stops when a test fails (mutmut
    then mutates only what the tests before it reached, and says nothing)."""
    if not config().mutate_only_covered_lines:
        return
    units, index = _selection(), multiprocessing.Value("i", 0)
    sources = list(walk_source_files())
    for source in sources:
        # A kept mutants/ holds the last run's mutated files, and mutmut copies a source only
        # where none is: the tests would run against old code. The plain source, with its
        # own mtime (mutmut's sign of "not mutated yet"), is what the coverage run must see.
        shutil.copy2(source, Path("mutants") / source)

    def work(number: int) -> tuple[int, dict[str, set[int]], dict[str, set[int]]]:
        runner = harness.PytestRunner()
        cov = coverage.Coverage(data_file=None)
        with change_cwd("mutants"), cov.collect():
            code = _share_out(
                units,
                lambda unit: runner.execute_pytest(runner._pytest_args_regular_run([unit])),
                index,
            )
        data = cov.get_data()
        covered, excluded = {}, {}
        for source in sources:
            path = str((Path("mutants") / source).absolute())
            covered[path] = set(data.lines(path) or [])
            excluded[path] = _excluded_lines(cov, path)
        return code, covered, excluded

    results = _in_forks(range(WORKERS), work)
    _failed({number: result[0] for number, result in enumerate(results)}, "coverage run")
    covered_lines: dict[str, set[int]] = {}
    excluded_lines: dict[str, set[int]] = {}
    for _, covered, excluded in results:
        for path, lines in covered.items():
            covered_lines.setdefault(path, set()).update(lines)
        for path, lines in excluded.items():
            excluded_lines.setdefault(path, set()).update(lines)
    state()._covered_lines = covered_lines
    state()._excluded_lines = excluded_lines


def _collect_stats(self: isolation.ForkRunner, tests: Iterable[str] | None) -> int:
    """mutmut's stats run: for new tests only, as mutmut has it; for the whole selection,
    in WORKERS processes sharing the test files, this one among them (the mutants are
    forked from it: it should have imported what the tests import), the others' findings
    merged into this one's."""
    if tests:
        return _original_collect_stats(self, tests)
    units, index = _selection(), multiprocessing.Value("i", 0)

    def work(number: int) -> dict[str, Any]:
        state().tests_by_mangled_function_name.clear()
        state().duration_by_test.clear()
        state().function_dependencies.clear()
        code = _share_out(units, lambda unit: self.test_runner.run_stats(tests=[unit]), index)
        return {
            "code": code,
            "tests": dict(state().tests_by_mangled_function_name),
            "durations": dict(state().duration_by_test),
            "dependencies": dict(state().function_dependencies),
        }

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # one process forks the other helpers, while this one takes its share
        os.close(read_end)
        with os.fdopen(write_end, "wb") as out:
            try:
                pickle.dump(("ok", _in_forks(range(1, WORKERS), work)), out)
            except BaseException:
                pickle.dump(("error", traceback.format_exc()), out)
        os._exit(0)
    os.close(write_end)
    own = _share_out(units, lambda unit: self.test_runner.run_stats(tests=[unit]), index)
    with os.fdopen(read_end, "rb") as back:
        status, others = pickle.loads(back.read())
    os.waitpid(pid, 0)
    if status != "ok":
        raise RuntimeError(f"a parallel stats run failed:\n{others}")
    for other in others:
        for name, found in other["tests"].items():
            state().tests_by_mangled_function_name[name] |= found
        state().duration_by_test.update(other["durations"])
        for name, callers in other["dependencies"].items():
            state().function_dependencies[name] |= callers
    # this process's own failure is mutmut's to report (it shows its output)
    _failed({number: other["code"] for number, other in enumerate(others, 1)}, "stats run")
    return own if own not in (0, NO_TESTS) else 0


def _mutant_spans(path: Path) -> list[tuple[int, int, str]]:
    """(first line, last line, name) of each mutant function (and `…__mutmut_orig`) in a
    file of mutants/, with ast: mutmut's libcst walk of the same files took most of the type
    check step (about 100 of its 138 s at load 7 to 10, mypy itself 26 s)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.end_lineno or node.lineno, node.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and is_mutated_method_name(node.name)
    ]


def _type_checked() -> dict[str, FailedTypeCheckMutant]:
    """mutmut's `filter_mutants_with_type_checker`: the mutants with a type error in their
    body, by name, less the errors outside a mutant: mutmut stops on those, and it makes one
    itself: it puts its table of a function's mutants between the `@overload`s and the
    implementation (`backend/store.py`'s `iso`). Each of those is printed."""
    caught: dict[str, FailedTypeCheckMutant] = {}
    spans: dict[Path, list[tuple[int, int, str]]] = {}
    with change_cwd("mutants"):
        for error in run_type_checker(config().type_check_command):
            path = error.file_path
            if path not in spans:
                spans[path] = _mutant_spans(path)
            inside = [span for span in spans[path] if span[0] <= error.line_number <= span[1]]
            if not inside:
                print(
                    f"    not a mutant's: {path}:{error.line_number}: {error.error_description}",
                    file=sys.__stdout__,
                )
                continue
            start, end, function = inside[0]
            name = get_mutant_name(path.relative_to(Path(".").absolute()), function)
            location = MutatedMethodLocation(path, function, start, end)
            caught[name] = FailedTypeCheckMutant(location, name, error)
    return caught


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


KILLERS = Path("mutants/killers.txt").absolute()  # "function<TAB>test" per kill, this run's
# The killers of earlier runs, a few per function (`make mutate-killers` rewrites it from the
# last run's): a fresh clone's first mutants of each function start with them too.
SEEDS = Path(__file__).with_name("killers.txt")
SEEDS_PER_FUNCTION = 3


def _function(mutant_name: str) -> str:
    """The function a mutant mutates: `backend.jobs.x_swap__mutmut_3` -> `backend.jobs.x_swap`."""
    return mutant_name.rpartition("__mutmut_")[0]


def _kills(path: Path) -> list[tuple[str, str]]:
    """(function, test) for each kill a killers file records."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [(name, test) for name, _, test in (line.partition("\t") for line in lines) if test]


def _killers(function: str) -> list[str]:
    """The tests that killed mutants of `function`, most kills first: this run's, then the
    earlier runs' (the seeds)."""
    kills = Counter(test for name, test in _kills(KILLERS) if name == function)
    seeds = [test for name, test in _kills(SEEDS) if name == function and test not in kills]
    return [test for test, _ in kills.most_common()] + seeds


def save_killers() -> int:
    """Rewrite the seeds from the last run's kills: the most killing tests of each function."""
    by_function: dict[str, Counter[str]] = {}
    for name, test in _kills(KILLERS):
        by_function.setdefault(name, Counter())[test] += 1
    lines = [
        f"{name}\t{test}\n"
        for name in sorted(by_function)
        for test, _ in by_function[name].most_common(SEEDS_PER_FUNCTION)
    ]
    SEEDS.write_text("".join(lines), encoding="utf-8")
    print(f"{len(lines)} killers of {len(by_function)} functions written to {SEEDS}")
    return 0


def _ordered(mutant_name: str, tests: list[str]) -> list[str]:
    """`tests` (mutmut's order: fastest first), the killers of the function's other mutants
    first: a function's mutants are mostly killed by the same few tests, which mutmut's
    order often reaches only after hundreds that pass."""
    covering = set(tests)
    first = [test for test in _killers(_function(mutant_name)) if test in covering]
    chosen = set(first)
    return first + [test for test in tests if test not in chosen]


class PerTestTimeout:
    """A pytest plugin for the mutant runs: each test's timeout from its stats duration, and
    an end at the first failure without tearing down."""

    def __init__(self, mutant_name: str) -> None:
        self.function = _function(mutant_name)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Mark each test with its own timeout, ahead of any other timeout marker. The
        timeout ends the process (pytest-timeout's thread method, exit 1) rather than raising
        in the test (its signal method): a mutant that spins the event loop runs the raised
        exception through asyncio's handler for callbacks, which logs it and spins on, until
        mutmut's CPU limit 89 s later (`_Pacer.may_start` 2 to 4)."""
        durations = state().duration_by_test
        for item in items:
            limit = TIMEOUT_FLOOR + TIMEOUT_FACTOR * durations.get(item.nodeid, 0.0)
            item.add_marker(pytest.mark.timeout(limit, method="thread"), append=False)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """The first failure kills the mutant: leave the process now, as pytest's -x would
        after tearing down. A mutant can make a fixture's teardown hang (a server that never
        stops) until mutmut's own wall-clock limit, minutes later; this process is mutmut's
        throw-away fork for one mutant, so nothing needs tearing down."""
        if report.failed and os.getpid() != _MAIN_PID:
            test = report.nodeid.removeprefix("mutants/")
            with KILLERS.open("a", encoding="utf-8") as killers:  # one short append: atomic
                killers.write(f"{self.function}\t{test}\n")
            _end_children()
            os._exit(1)  # pytest's own code for "tests failed": mutmut counts it killed


def _end_children() -> None:
    """Kill this process's children: the servers a test started, which its teardown would
    have stopped; left running, each held its memory and port until the run ended."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # "pid (name) state ppid ...": the name may hold spaces and parentheses
            parent = int(stat.read_text(encoding="utf-8").rpartition(")")[2].split()[1])
            if parent == me:
                os.kill(int(stat.parent.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not a process's
            continue


def _run_tests(self: harness.PytestRunner, *, mutant_name: str | None, tests: Iterable[str]) -> int:
    """mutmut's test run (a mutant's, the clean one, the forced failure), with the per-test
    timeout when a mutant is under test."""
    plugins: list[object] = []
    tests = list(tests)
    if mutant_name:
        plugins.append(PerTestTimeout(mutant_name))
        tests = _ordered(mutant_name, tests)
    with change_cwd("mutants"):
        return int(self.execute_pytest(self._pytest_args_regular_run(tests), plugins=plugins))


_MAIN_PID = os.getpid()  # mutmut's own process: never left early, whatever runs in it
_original_stats_run = mutmut_main.run_stats_collection
_original_collect_stats = isolation.ForkRunner.collect_stats
_original_clean_run = isolation.ForkRunner.run_clean_tests


def install() -> None:
    """Put the changes above into mutmut's modules (they look their functions up at call
    time, so replacing the module attributes is enough)."""
    mutmut_main.run_stats_collection = _timed("stats run", _stats_run)
    mutmut_main.store_lines_covered_by_tests = _timed("coverage run", _coverage_run)
    isolation.ForkRunner.collect_stats = _collect_stats  # type: ignore[method-assign]
    setattr(mutmut_main, "filter_mutants_with_type_checker", _timed("type check", _type_checked))  # noqa: B010
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
    global WORKERS
    if argv == ["--save-killers"]:
        return save_killers()
    if "--max-children" in argv:
        WORKERS = max(1, int(argv[argv.index("--max-children") + 1]))
    # A process started in the background by a shell without job control ignores SIGINT,
    # and Python then leaves it ignored: the tests of Ctrl+C fail (the clean run stops),
    # and mutmut cannot be stopped with Ctrl+C. Its default, whoever started us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
