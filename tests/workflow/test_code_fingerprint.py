"""Code fingerprints: edits in substance change them, words for people and layout do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from leukopipe.workflow.code_fingerprint import (
    code_fingerprint,
    file_print,
    normalised_source,
    reached_modules,
)

ROOT = Path(__file__).resolve().parents[2]

ORIGINAL = '''"""Module docstring."""
import logging

log = logging.getLogger(__name__)


def scale(x, factor=2):
    """Multiply."""
    if factor < 0:
        raise ValueError(f"factor must be >= 0, got {factor}")
    log.info("scaling %s by %s", x, factor)
    return x * factor  # the work
'''

COSMETIC = {
    "comment": ORIGINAL.replace("# the work", "# multiply, nothing else"),
    "docstring": ORIGINAL.replace('"""Multiply."""', '"""Multiply ``x`` by ``factor``."""'),
    "module docstring": ORIGINAL.replace("Module docstring.", "Another text."),
    "blank lines": ORIGINAL.replace("\n\n\ndef", "\n\n\n\n\ndef"),
    "formatting": ORIGINAL.replace("return x * factor", "return (x *\n            factor)"),
    "log message": ORIGINAL.replace('"scaling %s by %s"', '"now scaling %s, factor %s"'),
    "error message": ORIGINAL.replace("must be >= 0", "cannot be negative"),
    "docstring removed": ORIGINAL.replace('    """Multiply."""\n', ""),
}

SEMANTIC = {
    "constant": ORIGINAL.replace("factor=2", "factor=3"),
    "operator": ORIGINAL.replace("x * factor", "x + factor"),
    "condition": ORIGINAL.replace("factor < 0", "factor <= 0"),
    "exception type": ORIGINAL.replace("raise ValueError", "raise TypeError"),
}


def _print(tmp_path: Path, text: str, name: str) -> str:
    path = tmp_path / f"{name.replace(' ', '_')}.py"
    path.write_text(text)
    return file_print(path)


@pytest.mark.parametrize("edit", sorted(COSMETIC))
def test_cosmetic_edits_keep_the_print(tmp_path, edit):
    assert _print(tmp_path, COSMETIC[edit], edit) == _print(tmp_path, ORIGINAL, "original")


@pytest.mark.parametrize("edit", sorted(SEMANTIC))
def test_edits_in_substance_change_the_print(tmp_path, edit):
    assert _print(tmp_path, SEMANTIC[edit], edit) != _print(tmp_path, ORIGINAL, "original")


def test_argparse_help_is_not_substance(tmp_path):
    a = 'p.add_argument("--lr", type=float, required=True, help="learning rate")\n'
    b = 'p.add_argument("--lr", type=float, required=True, help="Adam learning rate")\n'
    c = 'p.add_argument("--lr", type=int, required=True, help="learning rate")\n'
    assert _print(tmp_path, a, "a") == _print(tmp_path, b, "b") != _print(tmp_path, c, "c")


def test_normalised_source_keeps_the_computation(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(ORIGINAL)
    text = normalised_source(path)
    assert "Mult" in text and "factor" in text and "Module docstring" not in text


def test_training_reaches_its_code_but_not_validator_layout_or_plotting():
    reached = set(reached_modules(ROOT / "scripts" / "train.py"))
    assert {"train.loop", "train.models", "train.loader", "train.weights"} <= reached
    for unwanted in ("workflow.config", "data.raw_layout", "report.figures", "report.compare"):
        assert unwanted not in reached, unwanted


def test_evaluation_reaches_metrics_through_other_modules():
    reached = set(reached_modules(ROOT / "scripts" / "evaluate.py"))
    assert "evaluate.metrics" in reached  # imported by eval_record, not by the script
    assert "workflow.config" not in reached


def test_fingerprint_names_each_file_with_its_print():
    line = code_fingerprint(ROOT / "scripts" / "merge.py")
    files = dict(part.split("=") for part in line.split())
    assert "scripts/merge.py" in files and "leukopipe/data/merge.py" in files
    assert all(len(v) == 12 for v in files.values())
