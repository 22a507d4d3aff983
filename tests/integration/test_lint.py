"""The code-quality gates of the project run as tests, so CI enforces them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "cmd",
    [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "snakemake"), "--lint"],
        [str(BIN / "snakefmt"), "--check", "Snakefile", "rules/"],
        [str(BIN / "lint-imports")],
    ],
    ids=["ruff", "snakemake-lint", "snakefmt", "import-layers"],
)
def test_clean(cmd):
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("profile", ["demo", "slurm"])
def test_profiles_print_failed_jobs_logs(profile):
    # without it a failed cluster job says only "check log file(s) for error details"
    import yaml

    root = Path(__file__).resolve().parents[2]
    settings = yaml.safe_load((root / "profiles" / profile / "config.yaml").read_text())
    assert settings.get("show-failed-logs") is True


@pytest.mark.parametrize("script", ["sweep.py", "augment.py"])
def test_help_is_whole_and_states_each_default_once(script):
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "scripts" / script), "--help"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    description = out.split("\n\n")[1]
    assert description.rstrip().endswith("."), description  # not cut off mid-sentence
    options = out.split("options:")[1]
    for block in re.split(r"\n  (?=-)", options):
        assert len(re.findall(r"\bdefault", block, flags=re.IGNORECASE)) <= 1, block


def test_layer_contract_catches_an_upward_import(tmp_path):
    """The checker is not vacuous: plumbing importing a stage breaks the layer contract."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    atomic = src / "leukopipe" / "plumbing" / "atomic.py"
    atomic.write_text(atomic.read_text() + "\nimport leukopipe.report.tables  # noqa\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run([str(BIN / "lint-imports")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "leukopipe.plumbing.atomic -> leukopipe.report.tables" in proc.stdout, proc.stdout[-2000:]
