"""Checking backbone names at every Snakemake start without importing torch: timm's model list is
cached per timm installation, and the rule files import nothing heavy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from leukopipe.workflow import backbone_names
from leukopipe.workflow.backbone_names import timm_models
from leukopipe.workflow.config import ConfigError, validate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "leukopipe"


def test_the_list_is_written_once_and_marks_vision_transformers(cache: Path) -> None:
    models = timm_models()
    (written,) = cache.glob("timm-models-*.json")
    assert json.loads(written.read_text()) == models
    assert models["resnet18"] is False and models["efficientnet_b0"] is False
    assert models["vit_small_patch16_224"] is True
    assert models["vit_small_patch14_dinov2"] is True


def test_a_damaged_cache_is_rebuilt(cache: Path) -> None:
    first = timm_models()
    (written,) = cache.glob("timm-models-*.json")
    written.write_text("{not json")
    assert timm_models() == first
    assert json.loads(written.read_text()) == first


def test_an_unwritable_cache_only_costs_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where the folder should be
    assert "resnet50" in timm_models()


def test_another_timm_installation_gets_its_own_list(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timm_models()
    monkeypatch.setattr(backbone_names, "_installation_key", lambda: "0.0.0-1")
    timm_models()
    assert sorted(p.name for p in cache.glob("timm-models-*.json"))[0] == "timm-models-with-tags-0.0.0-1.json"
    assert len(list(cache.glob("timm-models-*.json"))) == 2


def test_unknown_names_are_still_refused_with_similar_ones(cache: Path) -> None:
    timm_models()  # from the cache now
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["experiments"][0]["backbones"] = ["resnet50", "resnet5O"]
    with pytest.raises(ConfigError, match=r"experiments\[0\].backbones\[1\] = \"resnet5O\".*similar: .*resnet50"):
        validate(config)


def test_starting_the_workflow_imports_no_torch(cache: Path) -> None:
    """What the Snakefile and rules/common.smk import, plus validating a CNN config, with a warm
    cache: neither torch nor timm gets imported (a vision transformer's patch-grid check may)."""
    timm_models()
    imports = []
    for f in (ROOT / "Snakefile", ROOT / "rules" / "common.smk"):
        text = f.read_text()
        imports += re.findall(r"^from (leukopipe[\w.]*) import", text, flags=re.M)
    code = "\n".join(
        [f"import {m}" for m in sorted(set(imports))]
        + [
            "import sys, yaml",
            "from leukopipe.workflow.config import expand_experiments, validate",
            "c = yaml.safe_load(open('config.yaml'))",
            "c['experiments'] = [g for g in c['experiments'] if g['name'] == 'study_a']",
            "c['ensembles'] = []",
            "expand_experiments(validate(c))",
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))",
        ]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
