"""The code-quality gates of the project run as tests, so CI enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "cmd",
    [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "snakemake"), "--lint"],
        [str(BIN / "snakefmt"), "--check", "Snakefile", "rules/"],
    ],
    ids=["ruff", "snakemake-lint", "snakefmt"],
)
def test_clean(cmd):
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
