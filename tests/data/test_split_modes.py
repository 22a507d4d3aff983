"""The split-mode registry: the one place a split mode is declared, read by every other place."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_split import fake_index

from leukopipe.data import split as split_step
from leukopipe.data import split_modes
from leukopipe.data.split_modes import (
    SPLIT_MODES,
    SplitMode,
    describe_split,
    family,
    mode_of,
    parse_split_id,
    split_id_pattern,
)
from leukopipe.report import protocol
from leukopipe.workflow.config import ConfigError, expand_experiments, validate

ROOT = Path(__file__).resolve().parents[2]


def _config(split: str) -> dict:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["experiments"] = [{"name": "g", "split": split, "backbones": ["resnet18"],
                           "strategies": ["frozen"], "seeds": [0]}]
    cfg["ensembles"] = []
    cfg["split"]["folds"] = 3
    return cfg


def test_every_mode_has_an_implementation_and_nothing_else_does():
    assert set(split_step.MAKERS) == set(SPLIT_MODES)


def test_the_rule_wildcard_is_the_registry_pattern():
    rule = (ROOT / "rules" / "data.smk").read_text()
    assert "split=split_id_pattern()," in rule
    pattern = re.compile(split_id_pattern())
    for good in ("image", "patient", "official", "cv5-f0", "cv10-f9"):
        assert pattern.fullmatch(good), good
    for bad in ("cv", "cv5", "imagex", "fold0", "cv5-f"):
        assert not pattern.fullmatch(bad), bad


def test_split_ids_parse_name_their_mode_and_family():
    assert [m.split_ids(3) for m in SPLIT_MODES.values()] == [
        ["image"], ["patient"], ["official"], ["cv3-f0", "cv3-f1", "cv3-f2"]]
    assert parse_split_id("cv5-f3") == (5, 3) and parse_split_id("official") is None
    assert mode_of("cv5-f3").name == "cv" and mode_of("patient").name == "patient"
    assert family("cv5-f3") == "cv5" and family("image") == "image"
    for bad in ("cv3-f3", "cv1-f0", "cv3", "cv", "fold0"):
        with pytest.raises(ValueError):
            mode_of(bad)
    with pytest.raises(ValueError, match=r"expected one of image, patient, official or cv<k>-f<i>"):
        mode_of("fold0")


def test_captions_come_from_the_registry():
    assert describe_split("patient") == SPLIT_MODES["patient"].description
    assert describe_split("cv5").startswith("subject-disjoint, class-stratified 5-fold")
    assert describe_split("cv5-f1") == describe_split("cv5")
    # the tables' protocol column: the registry says which test set and whether it is leaky
    for name, mode in SPLIT_MODES.items():
        text = protocol.describe(name, 0, 7, 0, 8)
        assert text.startswith("subject-disjoint" if mode.subject_disjoint else "image-level")
        assert mode.test_set in text


def test_config_accepts_exactly_the_registry_modes():
    for name in SPLIT_MODES:
        validate(_config(name), check_backbones=False)
    with pytest.raises(ConfigError) as err:
        validate(_config("subject"), check_backbones=False)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith('config error: experiments[0].split = "subject" is not allowed;'
                              ' expected one of "image", "patient", "official", "cv"')


def test_a_new_mode_needs_only_a_registry_entry_and_an_implementation(monkeypatch):
    # e.g. a 'site' mode testing on the preliminary set's subjects, declared in one place
    monkeypatch.setitem(SPLIT_MODES, "site", SplitMode(
        "site", "hold-out site split", k_fold=False, subject_disjoint=True))
    monkeypatch.setitem(split_step.MAKERS, "site", split_step.MAKERS["official"])
    monkeypatch.setitem(SPLIT_MODES, "loso", SplitMode(
        "loso", "{k}-fold leave-subjects-out", k_fold=True, subject_disjoint=True))
    monkeypatch.setitem(split_step.MAKERS, "loso", split_step.MAKERS["cv"])

    cfg = _config("site")
    validate(cfg, check_backbones=False)
    assert [e.split for e in expand_experiments(cfg).values()] == ["site"]
    cfg = _config("loso")
    validate(cfg, check_backbones=False)
    assert sorted((e.split, e.fold) for e in expand_experiments(cfg).values()) == [
        ("loso3-f0", 0), ("loso3-f1", 1), ("loso3-f2", 2)]
    assert re.compile(split_modes.split_id_pattern()).fullmatch("loso3-f2")
    assert describe_split("loso3") == "3-fold leave-subjects-out"
    assert protocol.split_kind("loso3") == "loso" and protocol.split_kind("site") == "site"

    index = fake_index()
    splits = split_step.make_splits(index, "loso3-f1", 0.1, 0.15, seed=5)
    assert split_step.audit(splits, "loso3-f1", 8)["subject_disjoint"]
    cv = split_step.make_splits(index, "cv3-f1", 0.1, 0.15, seed=5)
    for part in ("train", "val", "test"):
        pd.testing.assert_frame_equal(splits[part], cv[part])
    assert split_step.audit(split_step.make_splits(index, "site", 0.1, 0.15, seed=5), "site", 8)[
        "subject_disjoint"]
