"""Per-group preprocessing: the config keys, the stores' ids and folders, experiment names, and
the augment step with and without offline balancing."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

import leukopipe.data.merge as merge
from leukopipe.data.imageio import load_rgb
from leukopipe.data.pixel_store import open_store
from leukopipe.data.raw_layout import locate
from leukopipe.data.synthetic import SyntheticSpec, generate
from leukopipe.train.models import normalisation
from leukopipe.workflow.config import ConfigError, expand_experiments, validate
from leukopipe.workflow.preprocessing import AUGMENTATION_PATTERN, group_preprocessing, top_level
from leukopipe.workflow.rules import (
    eval_store_dir,
    experiment_record,
    preprocessings,
    train_provenance,
    train_store_dir,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _config(*groups: dict, **sections) -> dict:
    """A validated config (backbone names unchecked: no timm import) with these groups."""
    cfg = {"data": {"source": "existing", "raw_dir": "raw"}, "experiments": list(groups)}
    cfg.update(sections)
    return validate(copy.deepcopy(cfg), check_backbones=False)


def _group(name: str, split: str = "official", **keys) -> dict:
    return {"name": name, "split": split, "backbones": ["resnet18"], "strategies": ["partial"],
            "seeds": [0], **keys}


@pytest.fixture(scope="module")
def shipped() -> dict:
    return validate(yaml.safe_load((ROOT / "config.yaml").read_text()), check_backbones=False)


# ------------------------------------------------------------------------------ config keys


@pytest.mark.parametrize(
    ("key", "value", "expect"),
    [
        ("image_size", 8, r"experiments\[0\]\.image_size = 8 is not allowed; expected .*16"),
        ("image_size", "native", r'image_size = "native" is not allowed; .*"pretrained"'),
        ("augment", "off", r'experiments\[0\]\.augment = "off" is not allowed; .*"none"'),
        ("augment", {"image_size": 64}, r"unknown key experiments\[0\]\.augment\.image_size"),
        ("augment", {"transforms": {"rotaton_deg": 5}},
         r"unknown key experiments\[0\]\.augment\.transforms\.rotaton_deg"),
        ("augment", {"target_per_class": 0},
         r"experiments\[0\]\.augment\.target_per_class = 0 is not allowed; expected .*>= 1"),
        ("augment", {"transforms": {"crop_scale": [0.9, 0.1]}},
         r"experiments\[0\]\.augment\.transforms\.crop_scale = \[0\.9, 0\.1\] .*low <= high"),
        ("layer_decay", 0, r"experiments\[0\]\.layer_decay = 0 is not allowed; expected .*> 0"),
        ("layer_decay", 1.5, r"experiments\[0\]\.layer_decay = 1\.5 is not allowed"),
    ],
)
def test_bad_group_preprocessing_is_one_line_naming_key_and_value(key, value, expect):
    with pytest.raises(ConfigError) as err:
        _config(_group("g", **{key: value}))
    msg = str(err.value)
    assert "\n" not in msg and re.search(expect, msg), msg


def test_pretrained_size_needs_backbones_that_agree():
    vits = {"backbones": ["vit_small_patch16_224", "vit_small_patch14_dinov2"]}
    with pytest.raises(ConfigError) as err:
        _config(_group("vits", image_size="pretrained", **vits))
    msg = str(err.value)
    assert "\n" not in msg
    assert 'experiments[0].image_size (group vits) = "pretrained" is not allowed' in msg
    assert "vit_small_patch16_224: 224 px, vit_small_patch14_dinov2: 518 px" in msg
    # backbones that agree: their pretrained size (EfficientNetV2-S: 288 px)
    cfg = _config(_group("g", image_size="pretrained", backbones=["efficientnetv2_rw_s"]))
    assert group_preprocessing(cfg, 0).image_size == 288
    dino = _config(_group("d", image_size="pretrained", backbones=["vit_small_patch14_dinov2"]))
    assert group_preprocessing(dino, 0).image_size == 518


def test_a_vit_group_size_must_be_whole_patches():
    group = _group("vit", image_size=200, backbones=["vit_small_patch14_dinov2"])
    cfg = {"data": {"source": "existing", "raw_dir": "raw"}, "experiments": [group]}
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    msg = str(err.value)
    assert "\n" not in msg
    assert "experiments[0].image_size = 200 is not allowed for vit_small_patch14_dinov2" in msg
    assert "14 px patches" in msg
    group["image_size"] = 224
    validate({"data": {"source": "existing", "raw_dir": "raw"}, "experiments": [group]})


def test_shipped_study_groups_use_their_own_protocols(shipped):
    a = group_preprocessing(shipped, 0)
    b = group_preprocessing(shipped, 1)
    assert [g["name"] for g in shipped["experiments"][:2]] == ["study_a", "study_b"]
    assert a == top_level(shipped) and a.id == "224px-bal10000"
    assert b.id == "224px-none" and not b.balanced and b.image_size == 224
    # Study B's "ImageNet normalisation" is what its backbones' pretrained configs say
    for backbone in ("resnet18", "resnet50"):
        assert normalisation(backbone) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    study_c = {e.backbone for e in expand_experiments(shipped).values()
               if e.group.startswith("study_c")}
    assert study_c == {"convnext_tiny", "efficientnetv2_rw_s", "vit_small_patch16_224",
                       "vit_small_patch14_dinov2"}
    c_exps = [e for e in expand_experiments(shipped).values() if e.group.startswith("study_c")]
    assert {e.preprocessing.id for e in c_exps} == {"224px-none"}
    assert {e.split for e in c_exps} == {"official", *(f"cv5-f{i}" for i in range(5))}
    official = {(e.backbone, e.strategy) for e in c_exps if e.split == "official"}
    assert len(official) == 12  # every backbone frozen, partial and full


# ------------------------------------------------------------------------------ ids and stores


def test_ids_name_what_determines_a_store():
    cfg = _config(
        _group("default"),
        _group("none", augment="none"),
        _group("target", augment={"target_per_class": 500}),
        _group("seed", augment={"seed": 3}),
        _group("rot", augment={"transforms": {"rotation_deg": 10}}),
        _group("rot_again", augment={"transforms": {"rotation_deg": 10.0}}),
        _group("big", image_size=288),
    )
    ids = [group_preprocessing(cfg, i).id for i in range(7)]
    assert ids[:4] == ["224px-bal10000", "224px-none", "224px-bal500", "224px-bal10000-seed3"]
    assert re.fullmatch(r"224px-bal10000-t[0-9a-f]{8}", ids[4])
    assert ids[5] == ids[4]  # 10 and 10.0 are the same setting
    assert ids[6] == "288px-bal10000"
    assert len(set(ids)) == 6
    # the augment rule's wildcard takes every id's augmentation part, and nothing else
    for i in range(7):
        assert re.fullmatch(AUGMENTATION_PATTERN, group_preprocessing(cfg, i).augmentation_id)
    assert not re.fullmatch(AUGMENTATION_PATTERN, "224px")
    # a partial override keeps the rest of the section
    rot = group_preprocessing(cfg, 4).transforms
    assert rot["rotation_deg"] == 10 and rot["hue"] == cfg["augment"]["transforms"]["hue"]


def test_different_sizes_never_share_a_store_and_alike_groups_share_one():
    cfg = _config(
        _group("a", strategies=["full"]),
        _group("a_again", backbones=["resnet50"], image_size=224),  # the same preprocessing
        _group("small", image_size=128),
        _group("small_none", image_size=128, augment="none"),
    )
    exps = {e.group: e for e in expand_experiments(cfg).values()}
    train = {g: train_store_dir(cfg, e) for g, e in exps.items()}
    evals = {g: eval_store_dir(cfg, e) for g, e in exps.items()}
    run = "results/cnmc-studies/augment/official"
    assert train == {
        "a": f"{run}/224px/bal10000",
        "a_again": f"{run}/224px/bal10000",
        "small": f"{run}/128px/bal10000",
        "small_none": f"{run}/128px/none",
    }
    assert evals == {"a": f"{run}/224px", "a_again": f"{run}/224px",
                     "small": f"{run}/128px", "small_none": f"{run}/128px"}
    assert sorted(preprocessings(cfg)) == ["128px-bal10000", "128px-none", "224px-bal10000"]


# ------------------------------------------------------------------------------ names


def test_names_stay_unique_and_default_groups_keep_theirs():
    cfg = _config(_group("balanced"), _group("plain", augment="none"),
                  _group("small", image_size=64))
    names = sorted(expand_experiments(cfg))
    assert names == [
        "official.resnet18.partial2.224px-none.s0",
        "official.resnet18.partial2.64px-bal10000.s0",
        "official.resnet18.partial2.s0",  # the top-level preprocessing: the name as before
    ]
    assert {e.group for e in expand_experiments(cfg).values()} == {"balanced", "plain", "small"}
    record = experiment_record(cfg, "official.resnet18.partial2.224px-none.s0")
    assert record["preprocessing"] == "224px-none" and record["group"] == "plain"
    provenance = train_provenance(cfg, "official.resnet18.partial2.224px-none.s0")
    assert provenance["preprocessing"]["target_per_class"] is None
    assert "augment" not in provenance["config"]  # the group's own, not the top level's


def test_layer_decay_goes_to_full_fine_tuning_only_and_into_the_name():
    strategies = ["frozen", "partial", "full"]
    cfg = _config(_group("plain", strategies=strategies),
                  _group("decayed", strategies=strategies, layer_decay=0.75))
    exps = expand_experiments(cfg)
    assert {n: e.layer_decay for n, e in exps.items()} == {
        "official.resnet18.frozen.s0": None,
        "official.resnet18.partial2.s0": None,
        "official.resnet18.full.s0": None,
        "official.resnet18.full.ld0.75.s0": 0.75,
    }
    # the run's decay is the default: a group switching it off says 1, and is named so
    on = _config(_group("plain", strategies=["full"]),
                 _group("off", strategies=["full"], layer_decay=1),
                 train={"layer_decay": 0.8})
    assert {n: e.layer_decay for n, e in expand_experiments(on).items()} == {
        "official.resnet18.full.s0": 0.8,
        "official.resnet18.full.ld1.s0": None,
    }


def test_ensembles_take_their_groups_members_only():
    cfg = _config(
        _group("bal", strategies=["full"], seeds=[0, 1]),
        _group("none", strategies=["full"], seeds=[0, 1], augment="none"),
        ensembles=[{"name": "none", "groups": ["none"]}],
    )
    from leukopipe.workflow.config import expand_ensembles

    assert expand_ensembles(cfg)["official.ensemble-none"]["members"] == [
        "official.resnet18.full.224px-none.s0",
        "official.resnet18.full.224px-none.s1",
    ]


# ------------------------------------------------------------------------------ augment step


@pytest.fixture(scope="module")
def split_train(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny raw copy in the C-NMC layout and its training manifest (real hashes)."""
    base = tmp_path_factory.mktemp("prep")
    raw = base / "raw"
    generate(raw, SyntheticSpec(
        seed=3, image_size=48, train_all_subjects=4, train_hem_subjects=3,
        prelim_all_subjects=1, prelim_hem_subjects=1, cells_per_subject=(3, 5), final_images=1,
    ))
    index, _ = merge.build_index(locate(raw), 48)
    train = base / "train.parquet"
    index[index.subset != "prelim"].to_parquet(train, index=False)
    return {"raw": raw, "train": train, "base": base}


def _augment(data: dict[str, Path], name: str, *balancing: str) -> pd.DataFrame:
    """scripts/augment.py's entry point, in this process (one worker: no subprocesses)."""
    spec = importlib.util.spec_from_file_location("augment_step", ROOT / "scripts/augment.py")
    step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step)
    out = data["base"] / name
    assert step.main([
        "--train-manifest", str(data["train"]), "--raw-dir", str(data["raw"]),
        "--image-size", "32", *balancing, "--workers", "1",
        "--manifest-out", str(out / "train_balanced.parquet"),
        "--pixels-out", str(out / "train_pixels.npy"),
    ]) == 0
    return pd.read_parquet(out / "train_balanced.parquet")


def test_none_stores_the_resized_originals_with_natural_class_counts(split_train):
    train = pd.read_parquet(split_train["train"])
    manifest = _augment(split_train, "none", "--target-per-class", "none")
    assert not manifest["generated"].any()
    assert manifest["image_id"].tolist() == train["image_id"].tolist()
    counts = manifest["label"].value_counts().to_dict()
    assert counts == train["label"].value_counts().to_dict() and counts[0] != counts[1]
    store = open_store(split_train["base"] / "none" / "train_pixels.npy")
    assert store.shape == (len(train), 32, 32, 3)
    for row in manifest.itertuples():
        expected = load_rgb(split_train["raw"] / row.path, 32)
        assert np.array_equal(store[row.store_row], expected), row.image_id


def test_study_a_and_study_b_groups_get_different_training_manifests(split_train, shipped):
    """The flags the augment rule gives each group, through the real augment step."""
    stores = {}
    for index in (0, 1):  # study_a, study_b
        prep = group_preprocessing(shipped, index)
        target = len(pd.read_parquet(split_train["train"]))  # at the tiny data's scale
        flags = (["--target-per-class", str(target), "--seed", str(prep.seed),
                  "--transforms-json", json.dumps(prep.transforms)]
                 if prep.balanced else ["--target-per-class", "none"])
        stores[index] = _augment(split_train, f"group{index}", *flags)
    a, b = stores[0], stores[1]
    assert a["generated"].any() and not b["generated"].any()
    assert a["label"].value_counts().nunique() == 1  # balanced
    assert len(a) > len(b)
    assert set(b["image_id"]) < set(a["image_id"])


# ------------------------------------------------------------------------------ the DAG


def test_dry_run_gives_each_group_its_own_training_store_and_shares_the_rest(tmp_path):
    """Study A's and Study B's groups of config.yaml on one split: their training jobs read
    different stores, built by different augment commands, and share validation and test."""
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    study_a, study_b = copy.deepcopy(shipped["experiments"][:2])
    study_a.update(split="official", backbones=["resnet18"])
    study_b.update(backbones=["resnet18"], strategies=["frozen"])
    override = {"data": {"source": "synthetic", "raw_dir": str(tmp_path / "raw")},
                "weights": {"pretrained": False}, "ensembles": [],
                "experiments": [study_a, study_b]}
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
    cfg: dict = {}
    update_config(cfg, copy.deepcopy(shipped))
    update_config(cfg, copy.deepcopy(override))
    validate(cfg, check_backbones=False)
    assert sorted(expand_experiments(cfg)) == [
        "official.resnet18.frozen.224px-none.s0", "official.resnet18.full.s0"]
    proc = subprocess.run(
        [str(BIN / "snakemake"), "-n", "-p", "--cores", "1", "--configfile", "config.yaml",
         str(tmp_path / "override.yaml"), "--directory", str(tmp_path / "ws"),
         "--snakefile", str(ROOT / "Snakefile"), "all",
         # Study C's DINOv2 weights are fetched like any other backbone's (at timm's 518 px)
         "results/cnmc-studies/weights/vit_small_patch14_dinov2.json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    train_cmds = re.findall(r"python scripts/train\.py .*", text)
    inputs = {
        re.search(r"--backbone \S+ --strategy (\S+)", c).group(1): (
            re.search(r"--train-manifest (\S+)", c).group(1),
            re.search(r"--val-manifest (\S+)", c).group(1),
        )
        for c in train_cmds
    }
    run = "results/cnmc-studies/augment/official"
    assert inputs == {
        "full": (f"{run}/224px/bal10000/train_balanced.parquet", f"{run}/224px/val.parquet"),
        "frozen": (f"{run}/224px/none/train_balanced.parquet", f"{run}/224px/val.parquet"),
    }
    augments = re.findall(r"python scripts/augment\.py .*", text)
    assert len(augments) == 2
    flags = {re.search(r"--manifest-out (\S+)", c).group(1):
             re.search(r"--target-per-class (\S+)", c).group(1) for c in augments}
    assert flags == {f"{run}/224px/bal10000/train_balanced.parquet": "10000",
                     f"{run}/224px/none/train_balanced.parquet": "none"}
    assert len(re.findall(r"python scripts/resize\.py ", text)) == 2  # val and test, shared
    assert ("python scripts/fetch_weights.py --backbone vit_small_patch14_dinov2"
            " --out resources/weights/vit_small_patch14_dinov2.safetensors") in text
