"""Class-balanced augmentation plan and its materialisation into the pixel store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import leukopipe.augment.plan as aug
from leukopipe.augment.plan import (
    materialise,
    materialise_plain,
    plan_balanced,
    regenerate,
)
from leukopipe.augment.transforms import AugmentConfig, sample_params
from leukopipe.data.imageio import load_rgb
from leukopipe.data.pixel_store import open_store

N_ALL, N_HEM = 28, 12
SIZE = 48  # store size; the source files are 64 px, so loading also resizes
TARGET = 40  # Hem: 28 generated (each original 2 or 3 times); ALL: 12 generated (0 or 1 time)
BASE_COLUMNS = ["image_id", "path", "subject", "label", "class_name", "subset", "width",
                "height", "sha256"]


def _cell(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    r = rng.uniform(0.15, 0.3) * size
    img = np.zeros((size, size, 3), np.uint8)
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    img[mask] = rng.integers(40, 230, (int(mask.sum()), 3), dtype=np.uint8)
    return img


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("cells")
    rng = np.random.default_rng(2024)
    rows = []
    for i in range(N_ALL + N_HEM):
        label = 1 if i < N_ALL else 0
        name = "all" if label else "hem"
        subject = f"{i % 5}" if label else f"H{i % 3}"
        path = folder / f"UID_{subject}_{i}_1_{name}.bmp"
        Image.fromarray(_cell(rng)).save(path)
        rows.append({
            "image_id": path.stem, "path": str(path), "subject": subject, "label": label,
            "class_name": "ALL" if label else "Hem", "subset": "fold_0", "width": 64,
            "height": 64, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def plan(train: pd.DataFrame) -> pd.DataFrame:
    return plan_balanced(train, TARGET, seed=11)


@pytest.fixture(scope="module")
def materialised(plan: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("store1") / "train.npy"
    manifest = materialise(plan, SIZE, AugmentConfig(), store, workers=1)
    return manifest, store


# --------------------------------------------------------------------------- plan
def test_plan_balances_classes_exactly(plan: pd.DataFrame, train: pd.DataFrame) -> None:
    assert list(plan.columns) == [*BASE_COLUMNS, "generated", "source_image_id", "aug_seed",
                                  "aug_params"]
    assert plan["label"].value_counts().to_dict() == {0: TARGET, 1: TARGET}
    assert len(plan) == 2 * TARGET
    # originals first, unchanged and in input order
    orig = plan.iloc[: len(train)]
    pd.testing.assert_frame_equal(orig[BASE_COLUMNS], train[BASE_COLUMNS])
    assert not orig["generated"].any()
    assert (orig["aug_seed"] == -1).all() and (orig["aug_params"] == "").all()
    assert (orig["source_image_id"] == orig["image_id"]).all()
    gen = plan.iloc[len(train):]
    assert gen["generated"].all()
    assert gen["label"].tolist() == [0] * (TARGET - N_HEM) + [1] * (TARGET - N_ALL)
    assert plan["image_id"].is_unique
    assert plan["generated"].dtype == bool and plan["aug_seed"].dtype == np.int64


def test_generated_rows_point_at_their_source(plan: pd.DataFrame, train: pd.DataFrame) -> None:
    by_id = train.set_index("image_id")
    gen = plan[plan["generated"]]
    for label in (0, 1):
        g = gen[gen["label"] == label]
        assert g["image_id"].tolist() == [
            f"{s}#aug{k}" for k, s in enumerate(g["source_image_id"])
        ]
    src = by_id.loc[gen["source_image_id"]]
    for col in ("path", "subject", "label", "class_name", "sha256"):
        assert gen[col].tolist() == src[col].tolist(), col
    seeds = gen["aug_seed"]
    assert seeds.is_unique and (seeds >= 0).all()


@pytest.mark.parametrize(("label", "n_c"), [(0, N_HEM), (1, N_ALL)])
def test_each_original_used_floor_or_ceil_times(plan: pd.DataFrame, train: pd.DataFrame,
                                                label: int, n_c: int) -> None:
    gen = plan[plan["generated"] & (plan["label"] == label)]
    counts = gen["source_image_id"].value_counts().reindex(
        train.loc[train["label"] == label, "image_id"], fill_value=0)
    n_gen = TARGET - n_c
    assert counts.sum() == n_gen
    assert set(counts.unique()) <= {n_gen // n_c, -(-n_gen // n_c)}
    assert (counts == -(-n_gen // n_c)).sum() == n_gen % n_c or n_gen % n_c == 0


def test_plan_is_deterministic_and_seed_dependent(plan: pd.DataFrame, train: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(plan_balanced(train, TARGET, seed=11), plan)
    other = plan_balanced(train, TARGET, seed=12)
    gen, gen_other = plan[plan["generated"]], other[other["generated"]]
    assert not np.array_equal(gen["aug_seed"].to_numpy(), gen_other["aug_seed"].to_numpy())
    assert gen["source_image_id"].tolist() != gen_other["source_image_id"].tolist()
    # the generated part does not depend on the order of the input rows
    shuffled = train.sample(frac=1.0, random_state=3).reset_index(drop=True)
    gen_shuffled = plan_balanced(shuffled, TARGET, seed=11)
    gen_shuffled = gen_shuffled[gen_shuffled["generated"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(gen_shuffled, gen.reset_index(drop=True))


def test_target_equal_to_count_generates_nothing_for_that_class(train: pd.DataFrame) -> None:
    p = plan_balanced(train, N_ALL, seed=0)
    assert p.loc[p["generated"], "label"].eq(0).all()
    assert p["label"].value_counts().to_dict() == {0: N_ALL, 1: N_ALL}


def test_plan_errors(train: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"ALL \(label 1\).*28.*20.*undersampling is not done"):
        plan_balanced(train, 20, seed=0)
    with pytest.raises(ValueError, match=r"Hem \(label 0\) has no training images"):
        plan_balanced(train[train["label"] == 1], 40, seed=0)
    with pytest.raises(ValueError, match="sha256"):
        plan_balanced(train.drop(columns="sha256"), 40, seed=0)
    with pytest.raises(ValueError, match="labels must be 0"):
        plan_balanced(train.assign(label=2), 40, seed=0)
    with pytest.raises(ValueError, match="unique"):
        plan_balanced(pd.concat([train, train.iloc[:1]]), 40, seed=0)
    with pytest.raises(ValueError, match="seed"):
        plan_balanced(train, 40, seed=-1)


# --------------------------------------------------------------------------- materialise
def test_store_holds_originals_and_regenerable_samples(materialised, plan: pd.DataFrame) -> None:
    manifest, store_path = materialised
    store = open_store(store_path)
    assert store.shape == (len(plan), SIZE, SIZE, 3)
    assert manifest["store_row"].tolist() == list(range(len(plan)))
    pd.testing.assert_frame_equal(manifest.drop(columns=["aug_params", "store_row"]),
                                  plan.drop(columns=["aug_params"]))
    cfg = AugmentConfig()
    for _, row in manifest.iterrows():
        pixels = np.asarray(store[row["store_row"]])
        if not row["generated"]:
            assert row["aug_params"] == ""
            assert np.array_equal(pixels, load_rgb(row["path"], SIZE))
            continue
        params = json.loads(row["aug_params"])
        assert params == sample_params(np.random.default_rng(row["aug_seed"]), SIZE, cfg)
        assert np.array_equal(regenerate(row, SIZE, cfg), pixels), row["image_id"]
        if row["store_row"] % 3 == 0:  # the seed alone is enough too (aug_params left empty)
            seed_only = row.copy()
            seed_only["aug_params"] = ""
            assert np.array_equal(regenerate(seed_only, SIZE, cfg), pixels)
        assert not np.array_equal(pixels, load_rgb(row["path"], SIZE))
    gen_rows = manifest.loc[manifest["generated"], "store_row"]
    assert len({store[i].tobytes() for i in gen_rows}) == len(gen_rows)


def test_two_workers_give_identical_store_and_manifest(materialised, plan: pd.DataFrame,
                                                       tmp_path: Path) -> None:
    manifest1, store1 = materialised
    store2 = tmp_path / "train_w2.npy"
    manifest2 = materialise(plan, SIZE, AugmentConfig(), store2, workers=2)
    pd.testing.assert_frame_equal(manifest1, manifest2)
    assert store1.read_bytes() == store2.read_bytes()
    s2 = open_store(store2)
    cfg = AugmentConfig()
    for _, row in manifest2[manifest2["generated"]].iloc[::5].iterrows():
        assert np.array_equal(regenerate(row, SIZE, cfg), s2[row["store_row"]])
    assert [p.name for p in tmp_path.iterdir()] == ["train_w2.npy"]


def test_each_source_decoded_once(plan: pd.DataFrame, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counting(path, size, sha256=None):
        calls.append(str(path))
        return load_rgb(path, size, sha256)

    monkeypatch.setattr(aug, "load_rgb", counting)
    materialise(plan, SIZE, AugmentConfig(), tmp_path / "s.npy", workers=1)
    assert len(calls) == plan["path"].nunique() == N_ALL + N_HEM
    assert sorted(calls) == sorted(plan["path"].unique())


def test_bad_image_aborts_without_a_store(train: pd.DataFrame, tmp_path: Path) -> None:
    broken = tmp_path / "UID_9_9_9_hem.bmp"
    broken.write_bytes(b"BM this is not a bitmap")
    bad_train = train.copy()
    bad_train.loc[N_ALL, "path"] = str(broken)  # a Hem original, also used as a source
    bad_train.loc[N_ALL, "sha256"] = hashlib.sha256(broken.read_bytes()).hexdigest()
    bad_plan = plan_balanced(bad_train, TARGET, seed=1)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"UID_9_9_9_hem\.bmp"):
        materialise(bad_plan, SIZE, AugmentConfig(), out / "train.npy", workers=1)
    assert list(out.iterdir()) == []


def test_materialise_plain_resizes_only(train: pd.DataFrame, tmp_path: Path) -> None:
    val = train.iloc[::4]
    store_path = tmp_path / "val.npy"
    out = materialise_plain(val, SIZE, store_path)
    assert list(out.columns) == [*BASE_COLUMNS, "store_row"]
    assert out["store_row"].tolist() == list(range(len(val)))
    store = open_store(store_path)
    assert store.shape == (len(val), SIZE, SIZE, 3)
    for _, row in out.iterrows():
        assert np.array_equal(store[row["store_row"]], load_rgb(row["path"], SIZE))


def test_materialise_rejects_bad_input(plan: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aug_seed"):
        materialise(plan.drop(columns="aug_seed"), SIZE, AugmentConfig(), tmp_path / "x.npy")
    broken = plan.copy()
    broken.loc[broken.index[-1], "aug_seed"] = -1
    with pytest.raises(ValueError, match="non-negative aug_seed"):
        materialise(broken, SIZE, AugmentConfig(), tmp_path / "x.npy")
    with pytest.raises(ValueError, match="workers"):
        materialise(plan, SIZE, AugmentConfig(), tmp_path / "x.npy", workers=0)
    assert not (tmp_path / "x.npy").exists()


def test_augment_log_shows_progress_with_rate_and_time_left(
    train: pd.DataFrame, tmp_path: Path
) -> None:
    """The augment step as its rule runs it (stderr into a log file, not a terminal) leaves
    several progress lines with the rate and the time left, not one line at the end."""
    import subprocess
    import sys

    raw = Path(train["path"].iloc[0]).parent
    manifest = tmp_path / "train.parquet"
    train.assign(path=[Path(p).name for p in train["path"]]).to_parquet(manifest)
    log = tmp_path / "augment.log"
    script = Path(__file__).resolve().parents[2] / "scripts" / "augment.py"
    with log.open("w") as err:
        proc = subprocess.run(
            [sys.executable, str(script), "--train-manifest", str(manifest),
             "--raw-dir", str(raw), "--image-size", str(SIZE), "--target-per-class",
             str(TARGET), "--seed", "3", "--transforms-json", json.dumps(AugmentConfig().to_dict()),
             "--manifest-out", str(tmp_path / "m.parquet"),
             "--pixels-out", str(tmp_path / "p.npy")],
            stderr=err, stdin=subprocess.DEVNULL, check=False,
        )
    text = log.read_text()
    assert proc.returncode == 0, text
    lines = [ln for ln in text.splitlines() if "img/s" in ln or "s/img" in ln]
    assert len(lines) > 1, text
    assert any("left" in ln for ln in lines), text
    assert f"{2 * TARGET}/{2 * TARGET} img (100 %)" in lines[-1], text
    assert "\r" not in text  # log lines, not a redrawn terminal bar
