"""What code a step runs, fingerprinted by substance rather than by file time.

A step reruns when the code that determines its outputs changes: its script and every package
module the script imports, directly or through other modules (found by reading the imports, not
by running them). Each file is fingerprinted from its syntax tree with docstrings, log messages,
help texts and exception messages blanked, so comments, docstrings, blank lines, formatting and
message wording change nothing, while any change to what the code computes changes the print.

The fingerprint is a rule param: Snakemake stores it with every output, reruns the outputs whose
print changed, and ``snakemake --list-changes params`` lists them.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "leukopipe"
PACKAGE_DIR = Path(__file__).resolve().parents[1]

# Calls whose string arguments are words for people, not computation.
_LOG_METHODS = frozenset(
    {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
)
_MESSAGE_KEYWORDS = frozenset({"help", "description", "epilog", "metavar"})
_BLANK = ast.Constant(value="<message>")


class _Normaliser(ast.NodeTransformer):
    """Blank the strings that only talk to people: docstrings, log and exception messages,
    argparse help; keep everything that computes."""

    def _drop_docstring(self, node: ast.AST) -> None:
        body = getattr(node, "body", None)
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]

    def visit_Module(self, node: ast.Module) -> ast.AST:
        self._drop_docstring(node)
        return self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self._drop_docstring(node)
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self._drop_docstring(node)
        return self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        # a raised exception's message never reaches an output
        if isinstance(node.exc, ast.Call):
            node.exc.args = [_BLANK for _ in node.exc.args]
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in _LOG_METHODS and isinstance(func, ast.Attribute):
            node.args = [_BLANK for _ in node.args]
        for kw in node.keywords:
            if kw.arg in _MESSAGE_KEYWORDS:
                kw.value = _BLANK
        return self.generic_visit(node)


@cache
def _analysed(path: Path) -> tuple[str, frozenset[str]]:
    """The file's substance print and the package modules it imports, from one parse (every
    Snakemake start fingerprints every step's files: parsing each once halves that cost)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imports = _imports_of(tree)  # before the normaliser rewrites the tree in place
    dumped = ast.dump(_Normaliser().visit(tree), annotate_fields=False, include_attributes=False)
    return hashlib.sha256(dumped.encode()).hexdigest()[:12], imports


def normalised_source(path: Path) -> str:
    """The substance of a Python file: its syntax tree without the words for people."""
    tree = _Normaliser().visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def file_print(path: Path) -> str:
    """12 hex digits identifying the substance of one file."""
    return _analysed(path)[0]


def module_file(module: str) -> Path | None:
    """Source file of ``leukopipe.<module>`` (a module or a package's ``__init__``)."""
    base = PACKAGE_DIR.joinpath(*module.split(".")) if module else PACKAGE_DIR
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(module: str) -> set[str]:
    """``module`` and the packages Python imports first to reach it."""
    parts = module.split(".") if module else []
    return {".".join(parts[:i]) for i in range(len(parts) + 1)}


def direct_imports(path: Path) -> frozenset[str]:
    """Package modules (dotted, without ``leukopipe.``) that the file at ``path`` imports,
    deferred imports inside functions included."""
    return _analysed(path)[1]


def _imports_of(tree: ast.AST) -> frozenset[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != PACKAGE:
                continue
            base = ".".join(parts[1:])
            found |= _with_parents(base)
            # `from leukopipe.pkg import name`: name may itself be a module
            found.update(f"{base}.{a.name}".lstrip(".") for a in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    found |= _with_parents(alias.name.partition(".")[2])
    return frozenset(m for m in found if module_file(m) is not None)


def reached_modules(script: Path) -> list[str]:
    """Every package module the script imports, directly or through other modules, sorted."""
    seen: set[str] = set()
    todo = list(direct_imports(script))
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module)
        if path is not None:
            todo.extend(direct_imports(path))
    return sorted(seen)


def step_code_files(script: Path) -> list[Path]:
    """The script and the source files of every package module it reaches."""
    files = [module_file(m) for m in reached_modules(script)]
    return [script, *sorted(f for f in files if f is not None)]


def code_fingerprint(script: Path) -> str:
    """One line naming each file a step runs with its substance print, e.g.
    ``scripts/train.py=1a2b… leukopipe/train/loop.py=3c4d… …``.

    Carried as a rule param: a changed print reruns the step, and the line says which file
    changed.
    """
    parts = [f"{script.parent.name}/{script.name}={file_print(script)}"]
    for module in reached_modules(script):
        path = module_file(module)
        if path is not None:
            rel = path.relative_to(PACKAGE_DIR.parent).as_posix()
            parts.append(f"{rel}={file_print(path)}")
    return " ".join(parts)
