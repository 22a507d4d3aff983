"""The data, augment, train and report steps' scripts stay thin: ``main`` is short and hands the
work to one package function (argument parsing may sit in its own function beside it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
STEPS = [
    "augment",
    "compare",
    "download",
    "fetch_weights",
    "make_synthetic",
    "merge",
    "report",
    "resize",
    "split",
    "stale",
    "train",
]
MAX_MAIN_LINES = 40


def _main_and_package_names(script: Path) -> tuple[ast.FunctionDef, set[str]]:
    tree = ast.parse(script.read_text(encoding="utf-8"))
    package = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("leukopipe")
        for alias in node.names
    }
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    return main, package


def _root_name(func: ast.expr) -> str | None:
    while isinstance(func, ast.Attribute):
        func = func.value
    return func.id if isinstance(func, ast.Name) else None


@pytest.mark.parametrize("step", STEPS)
def test_main_is_short_and_calls_one_package_function(step):
    main, package = _main_and_package_names(SCRIPTS / f"{step}.py")
    lines = main.end_lineno - main.lineno + 1
    assert lines <= MAX_MAIN_LINES, f"scripts/{step}.py: main has {lines} lines"
    # calls into the package, request dataclasses (capitalised) aside: the step's one function
    calls = sorted(
        name
        for node in ast.walk(main)
        if isinstance(node, ast.Call)
        and (name := _root_name(node.func)) in package
        and not name[0].isupper()
    )
    assert len(calls) == 1, f"scripts/{step}.py: main calls {calls or 'no package function'}"
