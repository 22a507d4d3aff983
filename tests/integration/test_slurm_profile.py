"""`make slurm-profile` once, then `snakemake --profile slurm` works as typed from the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "snakemake"


def _env(config_home: Path) -> dict[str, str]:
    env = dict(os.environ, XDG_CONFIG_HOME=str(config_home))
    env["PATH"] = f"{SNAKEMAKE.parent}{os.pathsep}{env['PATH']}"
    return env


def _make(config_home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("make") or "make", "-s", "slurm-profile"],
        cwd=REPO, env=_env(config_home), capture_output=True, text=True, check=False,
    )


def test_setup_then_the_literal_command_plans_the_real_run(tmp_path: Path) -> None:
    first = _make(tmp_path)
    assert first.returncode == 0, first.stderr
    link = tmp_path / "snakemake" / "slurm"
    assert link.is_symlink() and link.resolve() == REPO / "profiles" / "slurm"
    again = _make(tmp_path)  # idempotent
    assert again.returncode == 0 and "already links" in again.stdout
    plan = subprocess.run(
        [str(SNAKEMAKE), "--profile", "slurm", "-n"],
        cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, check=False,
    )
    out = plan.stdout + plan.stderr
    assert plan.returncode == 0, out[-3000:]
    # the real run of config.yaml: the data steps and the training jobs, on the SLURM executor
    assert "This was a dry-run" in out
    for rule in ("download", "merge", "train", "report"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule


def test_a_different_profile_of_the_same_name_is_never_replaced(tmp_path: Path) -> None:
    other = tmp_path / "snakemake" / "slurm"
    other.mkdir(parents=True)
    (other / "config.yaml").write_text("jobs: 1\n")
    result = _make(tmp_path)
    assert result.returncode != 0
    assert "refusing to replace it" in result.stderr and str(other) in result.stderr
    assert not other.is_symlink() and (other / "config.yaml").read_text() == "jobs: 1\n"
