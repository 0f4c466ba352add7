"""The dashboard's modules: no import cycle, no Textual internals, a small app module."""

from __future__ import annotations

import ast
from pathlib import Path

TUI = Path(__file__).resolve().parent.parent / "tui"


def imports_of(path: Path) -> set[str]:
    """The `tui.` modules a file imports (TYPE_CHECKING imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module == "tui":
                found |= {f"tui.{alias.name}" for alias in node.names}
            elif node.module.startswith("tui."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("tui.")}
    return found


def test_no_tui_module_imports_another_in_a_cycle() -> None:
    """The import graph of tui/ has no cycle (a module reaches itself through no path)."""
    graph = {f"tui.{path.stem}": imports_of(path) for path in TUI.glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, set()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cyclic = [module for module in graph if reaches(module, module, set())]
    assert cyclic == []


def test_no_textual_internals_and_a_small_app() -> None:
    """No `textual._private` import anywhere in tui/; tui/app.py stays under 300 lines."""
    for path in TUI.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("textual"):
                assert not any(part.startswith("_") for part in node.module.split(".")), path  # type: ignore[union-attr]
    assert len((TUI / "app.py").read_text().splitlines()) < 300
