"""The measurement and sweep scripts are thin: their ``main`` parses, calls one package function
and exits (issue 21: scripts thin, contracts in the package), read from the real files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_MAIN_LINES = 40


@pytest.mark.parametrize("script", ["benchmark.py", "sweep.py", "gpu_check.py"])
def test_main_is_at_most_40_lines(script: str) -> None:
    tree = ast.parse((ROOT / "scripts" / script).read_text())
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert len(mains) == 1, f"scripts/{script} has no top-level main"
    (main,) = mains
    lines = main.end_lineno - main.lineno + 1
    assert lines <= MAX_MAIN_LINES, f"scripts/{script}: main is {lines} lines"
