"""Every step script stays thin: ``main`` is short and hands the work to one package function
(argument parsing may sit in its own function beside it). A new script is checked too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
STEPS = sorted(p.stem for p in SCRIPTS.glob("*.py"))
MAX_MAIN_LINES = 40


def _main_and_package_names(script: Path) -> tuple[ast.FunctionDef, set[str]]:
    tree = ast.parse(script.read_text(encoding="utf-8"))
    # names bound to the package's modules and functions (leukopipe, leukopipe_tools), at any
    # level (gpu_check imports its package inside a try, to say how to install it)
    package = {
        alias.asname or alias.name.split(".")[0]
        for node in ast.walk(tree)
        if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("leukopipe"))
        or (isinstance(node, ast.Import) and node.names[0].name.startswith("leukopipe"))
        for alias in node.names
    }
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    return main, package


def _root_name(func: ast.expr) -> str | None:
    while isinstance(func, ast.Attribute):
        func = func.value
    return func.id if isinstance(func, ast.Name) else None


def _last_name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


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
        # a request dataclass (TrainRequest(...), TrainRequest.from_flags(...)) is no step
        and not (name[:1].isupper() or _last_name(node.func)[:1].isupper())
    )
    assert len(calls) == 1, f"scripts/{step}.py: main calls {calls or 'no package function'}"
