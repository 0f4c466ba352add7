"""Summarise a `mutmut run`: killed K of M covered (P %) per module, per package and overall.

mutmut keeps each module's verdicts in mutants/<path>.meta (JSON, `exit_code_by_key`).
"Covered" leaves out the mutants no test reaches (mutmut's "no tests"): with
`mutate_only_covered_lines` there are few, and they say nothing about the tests. A mutant
that timed out counts as killed (the suite noticed it, by hanging); a survivor, a
"suspicious" one and one not yet checked count against the score.

Usage: python tools/mutation_report.py [--survivors FILE] [PREFIX...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

TIMEOUTS = {36, 24, -24, 152, 255}  # a test or mutmut's own limit stopped it (SIGXCPU)
KILLED = {1, 3, 37, -9, -11} | TIMEOUTS  # failed, errors, mypy rejects it, crashes, timeouts
NO_TESTS = {5, 33, 34}  # no test covers it, or skipped


def load(root: Path) -> dict[str, dict[str, int | None]]:
    """Exit code of each mutant, by module path (`backend/jobs.py`)."""
    verdicts: dict[str, dict[str, int | None]] = {}
    for meta in sorted(root.rglob("*.py.meta")):
        module = meta.relative_to(root).as_posix().removesuffix(".meta")
        verdicts[module] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    return verdicts


def score(codes: dict[str, int | None]) -> tuple[int, int, int, int, list[str]]:
    """(killed, covered, not yet checked, killed by a timeout, survivor names) of one
    module's verdicts.

    A run stopped early leaves mutants unchecked: they count in neither K nor M."""
    killed = sum(1 for code in codes.values() if code in KILLED)
    unchecked = sum(1 for code in codes.values() if code is None)
    covered = sum(1 for code in codes.values() if code not in NO_TESTS) - unchecked
    timeouts = sum(1 for code in codes.values() if code in TIMEOUTS)
    left = KILLED | NO_TESTS | {None}
    survivors = sorted(name for name, code in codes.items() if code not in left)
    return killed, covered, unchecked, timeouts, survivors


def line(name: str, killed: int, covered: int, unchecked: int = 0, timeouts: int = 0) -> str:
    """`backend/jobs.py  killed 41 of 42 covered (97.6 %)`, how many of the killed were
    stopped by a timeout (a hang; worth a look if many), and how many are not checked yet."""
    percent = 100.0 * killed / covered if covered else 100.0
    rest = f", {timeouts} by timeout" if timeouts else ""
    rest += f", {unchecked} not checked" if unchecked else ""
    return f"{name:<24} killed {killed} of {covered} covered ({percent:.1f} %){rest}"


def main(argv: list[str] | None = None) -> int:
    """Print the scores; write the survivors, one mutant name a line, with their status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("mutants"))
    parser.add_argument("--survivors", type=Path, default=Path("mutants/survivors.txt"))
    parser.add_argument("prefixes", nargs="*", help="only modules whose path starts so")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"no {args.root}/: run `make mutate` first", file=sys.stderr)
        return 1
    totals: dict[str, Counter[str]] = {}  # by package (`backend/`), and "overall"
    survivors: list[str] = []
    for module, codes in load(args.root).items():
        if args.prefixes and not module.startswith(tuple(args.prefixes)):
            continue
        killed, covered, unchecked, timeouts, left = score(codes)
        if not codes:
            continue
        print(line(module, killed, covered, unchecked, timeouts))
        for key in (module.split("/")[0] + "/", "overall"):
            totals.setdefault(key, Counter()).update(
                killed=killed, covered=covered, unchecked=unchecked, timeouts=timeouts
            )
        survivors += [f"{name}  {_status(codes[name])}" for name in left]
    for key, total in sorted(totals.items(), key=lambda item: item[0] == "overall"):
        print(line(key, total["killed"], total["covered"], total["unchecked"], total["timeouts"]))
    args.survivors.write_text("".join(f"{s}\n" for s in survivors), encoding="utf-8")
    print(f"{len(survivors)} survivors in {args.survivors} (`mutmut show NAME` for the diff)")
    return 0


def _status(code: int | None) -> str:
    return {0: "survived", 35: "suspicious"}.get(code or 0, f"exit {code}")


if __name__ == "__main__":
    sys.exit(main())
