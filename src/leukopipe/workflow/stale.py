"""Which finished outputs were made by code that has changed since, and which files changed.

Snakemake keeps, per output, the params of the job that made it (``.snakemake/metadata``, its
default file backend: one JSON file per output, named by the output path in URL-safe base64,
split into ``@``-prefixed folders when too long). Every rule carries its code fingerprint as a
param (``leukopipe.workflow.code_fingerprint``); comparing the recorded fingerprint with the
current one names the files whose substance changed. ``snakemake --list-changes params`` lists
the same outputs among all param changes, without the why.
"""

from __future__ import annotations

import ast
import base64
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from leukopipe.workflow.code_fingerprint import code_fingerprint

METADATA = Path(".snakemake") / "metadata"


@dataclass(frozen=True)
class StaleOutput:
    """One output whose code changed: the rule, and the files that differ in substance."""

    path: str
    rule: str
    changed: tuple[str, ...]


def _prints(fingerprint: str) -> dict[str, str]:
    """``{file: print}`` from a fingerprint line ``file=print file=print ...``."""
    return dict(part.split("=", 1) for part in fingerprint.split())


def _decode(record_file: Path, root: Path) -> str:
    parts = record_file.relative_to(root).parts
    encoded = "".join(p.removeprefix("@") for p in parts)
    return base64.urlsafe_b64decode(encoded.encode()).decode()


def _recorded_fingerprint(params: list[str]) -> str | None:
    for value in params:
        text = ast.literal_eval(value) if value[:1] in "'\"" else value
        if isinstance(text, str) and text.startswith("scripts/"):
            return text
    return None


def stale_outputs(workdir: Path, scripts_dir: Path) -> list[StaleOutput]:
    """Outputs under ``workdir`` whose recorded code differs from today's, sorted by path."""
    root = workdir / METADATA
    if not root.is_dir():
        return []
    current: dict[str, dict[str, str]] = {}
    out = []
    for record_file in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rule = record.get("rule")
        output = _decode(record_file, root)
        if not rule or not (workdir / output).exists():
            continue
        script = scripts_dir / f"{rule}.py"
        if not script.is_file():
            continue  # a rule without a script (all)
        if rule not in current:
            current[rule] = _prints(code_fingerprint(script))
        recorded = _recorded_fingerprint(record.get("params") or [])
        if recorded is None:
            out.append(StaleOutput(output, rule, ("<no code fingerprint recorded>",)))
            continue
        before, now = _prints(recorded), current[rule]
        files = before.keys() | now.keys()
        changed = tuple(sorted(f for f in files if before.get(f) != now.get(f)))
        if changed:
            out.append(StaleOutput(output, rule, changed))
    return out


def print_stale(workdir: Path, scripts_dir: Path) -> list[StaleOutput]:
    """The stale command: one line per stale output on stdout (path, rule, changed files, tab
    separated), the count on stderr; returns them."""
    stale = stale_outputs(workdir, scripts_dir)
    for s in stale:
        print(f"{s.path}\t{s.rule}\t{', '.join(s.changed)}")
    print(f"{len(stale)} output(s) out of date with respect to code", file=sys.stderr)
    return stale
