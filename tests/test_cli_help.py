"""`taskrpc --help` and each command's `--help`, word for word, against a checked-in copy.

The help is what a person reads first: a changed summary, option text, example or exit
status meaning shows here as a diff. After a deliberate change, write the copy again with
`.venv/bin/python -m tests.test_cli_help` and review the diff.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest

from cli.main import main

COPY = Path(__file__).parent / "fixtures" / "cli_help.txt"
COMMANDS = ("", "submit", "status", "result", "wait", "list", "cancel", "types", "completion")


def help_text() -> str:
    """Every help page at 100 columns, each under a `$ taskrpc ... --help` line."""
    pages = []
    for command in COMMANDS:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([command, "--help"] if command else ["--help"])
        pages.append(f"$ taskrpc {command + ' ' if command else ''}--help\n{out.getvalue()}")
    return "\n".join(pages)


def test_help_is_as_checked_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every --help page reads exactly as tests/fixtures/cli_help.txt."""
    monkeypatch.setenv("COLUMNS", "100")
    for name in ("TASKRPC_URL", "TASKRPC_TOKEN", "TASKRPC_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert help_text() == COPY.read_text(encoding="utf-8")


if __name__ == "__main__":
    os.environ["COLUMNS"] = "100"
    for variable in ("TASKRPC_URL", "TASKRPC_TOKEN", "TASKRPC_TOKEN_FILE"):
        os.environ.pop(variable, None)
    COPY.write_text(help_text(), encoding="utf-8")
    print(f"wrote {COPY}", file=sys.stderr)
