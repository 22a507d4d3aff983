"""Near-duplicate images across splits, on real (synthetic) cells: the merge step's perceptual
hash and the split audit find a brightened copy of a test cell placed in training, and do not
report different cells."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from leukopipe.data.merge import build_index
from leukopipe.data.near_duplicates import HASH_BITS, close_pairs, perceptual_hash
from leukopipe.data.raw_layout import locate
from leukopipe.data.split import audit, make_splits
from leukopipe.data.synthetic import SyntheticSpec, generate

SIZE = 96
MAX_DISTANCE = 8
SPEC = SyntheticSpec(
    seed=5,
    image_size=SIZE,
    train_all_subjects=4,
    train_hem_subjects=3,
    prelim_all_subjects=2,
    prelim_hem_subjects=2,
    cells_per_subject=(6, 9),
    final_images=2,
)


def _prelim_all_image(root: Path) -> tuple[Path, str]:
    """A preliminary-test ALL image and its original file name (from the labels CSV)."""
    found = locate(root)
    with found.prelim_labels.open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    original, numbered, _ = next(r for r in rows if r[2] == "1")
    return found.prelim_dir / numbered, original


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("near") / "cnmc"
    generate(root, SPEC)
    return root


def test_index_carries_the_perceptual_hash_of_each_decoded_image(raw):
    index, _ = build_index(locate(raw), SIZE)
    assert index["phash"].str.fullmatch(f"[0-9a-f]{{{HASH_BITS // 4}}}").all()
    for row in index.head(5).itertuples():
        with Image.open(row.path) as im:
            assert perceptual_hash(im) == row.phash


def test_different_cells_are_not_near_duplicates(raw):
    index, _ = build_index(locate(raw), SIZE)
    hashes = index["phash"].tolist()
    pairs = [(i, j, d) for i, j, d in close_pairs(hashes, hashes, MAX_DISTANCE) if i != j]
    assert pairs == [], "distinct synthetic cells must be far apart at the default threshold"


def test_brightened_copy_of_a_test_cell_in_training_is_reported(raw, tmp_path):
    copy = tmp_path / "cnmc"
    generate(copy, SPEC)
    source, original_name = _prelim_all_image(copy)
    # a new training donor whose one image is the test cell, 6 % brighter and saved again
    with Image.open(source) as im:
        brighter = ImageEnhance.Brightness(im.convert("RGB")).enhance(1.06)
    planted = copy / "C-NMC_training_data" / "fold_0" / "all" / "UID_999_1_1_all.bmp"
    brighter.save(planted)
    assert planted.read_bytes() != source.read_bytes()  # sha256 alone would not see it

    index, _ = build_index(locate(copy), SIZE)
    splits = make_splits(index, "official", 0.1, 0.1, seed=0)
    report = audit(splits, "official", MAX_DISTANCE)
    near = report["near_duplicates"]
    assert sum(near["n_pairs"].values()) == 1, near["n_pairs"]
    assert "UID_999_1_1_all.bmp" in set(splits["train"]["image_id"])  # (seed 0 puts it there)
    (pair,) = near["pairs"]["train|test"]
    assert pair["train"] == "UID_999_1_1_all.bmp" and pair["train_subject"] == "999"
    assert pair["test"] == original_name
    assert pair["distance"] <= MAX_DISTANCE
    assert report["identical_images_shared"]["train|test"] == 0
    assert report["test_images_near_duplicate_of_training"] == 1
