"""Config validation: the shipped configs pass; each bad value fails with one line naming it."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from leukopipe.workflow.config import (
    ConfigError,
    expand_ensembles,
    expand_experiments,
    used_splits,
    validate,
)

ROOT = Path(__file__).resolve().parents[2]


def load(*files: str) -> dict:
    cfg: dict = {}
    for f in files:
        update_config(cfg, yaml.safe_load((ROOT / f).read_text()))
    return cfg


@pytest.fixture(scope="module")
def base() -> dict:
    """config.yaml as the workflow sees it: validated, every default filled."""
    return validate(load("config.yaml"))


def test_shipped_configs_are_valid():
    validate(load("config.yaml"))
    validate(load("config.yaml", "profiles/demo/demo-config.yaml"))


def test_default_config_runs_both_studies(base):
    exps = expand_experiments(base)
    study_a = {e.backbone for e in exps.values() if e.group == "study_a"}
    assert study_a == {
        "resnet50",
        "resnet101",
        "efficientnet_b0",
        "efficientnet_b1",
        "efficientnet_b3",
    }
    assert all(
        e.strategy == "full" and e.split == "image" for e in exps.values() if e.group == "study_a"
    )
    study_b = {(e.backbone, e.strategy) for e in exps.values() if e.group == "study_b"}
    # Study B's ResNets start from torchvision's original weights (timm tag tv_in1k)
    assert {
        ("resnet18.tv_in1k", "frozen"),
        ("resnet18.tv_in1k", "partial"),
        ("resnet50.tv_in1k", "partial"),
    } <= study_b
    assert used_splits(base) == [*(f"cv5-f{i}" for i in range(5)), "image", "official"]
    cv = [e for e in exps.values() if e.group == "study_a_cv"]
    assert len(cv) == 25 and {e.fold for e in cv} == set(range(5))
    assert "cv5-f3.efficientnet_b3.full.s0" in exps
    assert base["augment"]["target_per_class"] == 10000
    assert base["train"]["lr"] == 1e-4 and base["train"]["epochs"] == 50
    assert base["train"]["patience"] == 15


def _set(cfg: dict, dotted: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return cfg


@pytest.mark.parametrize(
    ("key", "value", "expect"),
    [
        ("split.test_fraction", 1.5, "strictly between 0 and 1"),
        ("split.val_fraction", 0, "strictly between 0 and 1"),
        ("split.near_duplicate_max_distance", 300, "a number from 0 to 256"),
        ("augment.target_per_class", -5, ">= 1"),
        ("train.lr", "fast", "type number"),
        ("train.batch_size", 3.5, "type integer"),
        ("data.source", "ftp", '"existing", "url", "kaggle", "synthetic"'),
        ("augment.transforms.crop_scale", [0.9, 0.2], "low <= high"),
        ("experiments.0.strategies", ["thawed"], '"frozen", "partial", "full"'),
        ("run", "my run/1", "matching"),
        ("data.sha256", "abc", "matching"),
    ],
)
def test_bad_value_names_key_value_and_allowed(base, key, value, expect):
    with pytest.raises(ConfigError) as err:
        validate(_set(base, key, value))
    msg = str(err.value)
    assert "\n" not in msg
    shown_key = key.replace(".0.", "[0].")
    assert shown_key in msg, msg
    assert expect in msg, msg


def test_unknown_key_is_named(base):
    cfg = copy.deepcopy(base)
    cfg["augment"]["rotaton_deg"] = 20
    with pytest.raises(
        ConfigError, match=r"unknown key augment\.rotaton_deg; allowed keys here: .*image_size"
    ):
        validate(cfg)


def test_unknown_backbone_is_named_with_suggestions(base):
    cfg = _set(base, "experiments.0.backbones", ["resnet50", "efficientnet_b9x"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert 'experiments[0].backbones[1] = "efficientnet_b9x"' in str(err.value)
    assert "timm model name" in str(err.value)


def test_url_source_needs_url(base):
    with pytest.raises(ConfigError, match=r"data\.url"):
        validate(_set(base, "data.source", "url"))


def test_experiment_names_are_unique_and_deduplicated(base):
    cfg = copy.deepcopy(base)
    cfg["experiments"].append(copy.deepcopy(cfg["experiments"][0]) | {"name": "again"})
    assert expand_experiments(cfg) == expand_experiments(base)
    assert "official.resnet18.tv_in1k.partial2.224px-none.s0" in expand_experiments(base)


def test_snakemake_fails_before_any_job_with_one_line(tmp_path):
    """The Snakefile validates at parse time: a dry run with a bad value exits non-zero."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("split:\n  test_fraction: 2.0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", "config.yaml", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("config error:")]
    assert lines == [
        "config error: split.test_fraction = 2.0 is not allowed; expected a number strictly between 0 and 1"
    ]


def test_cv_groups_expand_per_fold_and_ensembles_per_split(base):
    cfg = copy.deepcopy(base)
    cfg["split"]["folds"] = 3
    cfg["experiments"] = [
        {
            "name": "x",
            "split": "cv",
            "backbones": ["resnet18", "resnet50"],
            "strategies": ["full"],
            "seeds": [0],
        },
        {
            "name": "y",
            "split": "image",
            "backbones": ["resnet18"],
            "strategies": ["full"],
            "seeds": [0, 1],
        },
    ]
    cfg["ensembles"] = [{"name": "both", "groups": ["x"]}, {"name": "seeds", "groups": ["y"]}]
    validate(cfg, check_backbones=False)
    exps = expand_experiments(cfg)
    assert sorted(n for n in exps if n.startswith("cv3-f1.")) == [
        "cv3-f1.resnet18.full.s0",
        "cv3-f1.resnet50.full.s0",
    ]
    ens = expand_ensembles(cfg)
    assert sorted(ens) == [
        "cv3-f0.ensemble-both",
        "cv3-f1.ensemble-both",
        "cv3-f2.ensemble-both",
        "image.ensemble-seeds",
    ]
    assert ens["cv3-f2.ensemble-both"]["members"] == [
        "cv3-f2.resnet18.full.s0",
        "cv3-f2.resnet50.full.s0",
    ]
    bad = copy.deepcopy(cfg)
    bad["ensembles"] = [{"name": "z", "groups": ["nope"]}]
    with pytest.raises(ConfigError, match=r"ensembles\[0\].groups\[0\] = \"nope\""):
        validate(bad, check_backbones=False)
    lonely = copy.deepcopy(cfg)
    lonely["ensembles"] = [{"name": "z", "experiments": ["image.resnet18.full.s0"]}]
    with pytest.raises(ConfigError, match="1 member"):
        validate(lonely, check_backbones=False)
    few = copy.deepcopy(cfg)
    few["split"]["folds"] = 1
    with pytest.raises(ConfigError, match=r"split\.folds = 1"):
        validate(few, check_backbones=False)


def test_two_groups_or_ensembles_of_one_name_are_refused(base):
    twice = copy.deepcopy(base)
    twice["experiments"].append(copy.deepcopy(twice["experiments"][0]))
    last = len(twice["experiments"]) - 1
    name = json.dumps(twice["experiments"][0]["name"])
    with pytest.raises(ConfigError, match=re.escape(
        f"experiments[{last}].name = {name} is not allowed; expected a name no other entry has "
        "(experiments[0] has it)"
    )):
        validate(twice, check_backbones=False)
    twice = copy.deepcopy(base)
    twice["ensembles"] = [{"name": "e", "groups": ["study_a"]}] * 2
    with pytest.raises(ConfigError, match=re.escape('ensembles[1].name = "e" is not allowed')):
        validate(twice, check_backbones=False)


def test_config_values_in_yaml_flow_syntax_are_read_as_yaml_types():
    """`--config train='{epochs: 3, flips: false}'` means the number 3 and the boolean false,
    as in a config file (Snakemake's own parser leaves nested values strings)."""
    proc = subprocess.run(
        # one small target: the whole DAG would take a minute on a loaded machine
        [sys.executable, "-m", "snakemake", "results/yes/data/raw.json", "-n", "--quiet", "rules",
         "--config", "train={epochs: 3, flips: false, layer_decay: null}", "run=yes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    # a bad nested value is still refused, now with its YAML type
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--config", "train={epochs: 0}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "config error: train.epochs = 0 is not allowed" in proc.stderr, proc.stderr
