"""The evaluation-stage step scripts stay thin: argument parsing, one package call, exit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("evaluate", "ensemble", "pool_folds", "knn_probe", "predict")
MAX_MAIN_LINES = 40


@pytest.mark.parametrize("step", SCRIPTS)
def test_main_is_at_most_40_lines(step):
    tree = ast.parse((ROOT / "scripts" / f"{step}.py").read_text(encoding="utf-8"))
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert len(mains) == 1, f"scripts/{step}.py has no top-level main"
    main = mains[0]
    lines = main.end_lineno - main.lineno + 1
    assert lines <= MAX_MAIN_LINES, (
        f"scripts/{step}.py: main is {lines} lines (at most {MAX_MAIN_LINES}); move the logic"
        " into the package's evaluate stage"
    )
