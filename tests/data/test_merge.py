"""Layout detection and the merge index, on synthetic copies in the exact C-NMC layouts."""

from __future__ import annotations

import csv
import hashlib
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leukopipe.data.merge import build_index
from leukopipe.data.raw_layout import RawDataError, locate, unnest
from leukopipe.data.synthetic import SyntheticSpec, generate

SIZE = 48


def spec(**kw) -> SyntheticSpec:
    base = dict(
        seed=3,
        image_size=SIZE,
        train_all_subjects=4,
        train_hem_subjects=3,
        prelim_all_subjects=2,
        prelim_hem_subjects=2,
        cells_per_subject=(3, 5),
        final_images=4,
        lowercase_h_fraction=0.5,
    )
    base.update(kw)
    return SyntheticSpec(**base)


def snapshot(root: Path) -> dict[str, tuple[float, str]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def layout_a(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw") / "cnmc"
    generate(root, spec())
    return root


# Every packaging the generator can produce, crossed (not one option at a time): layout A/B x
# extra nesting x labels CSV one level up (layout A only; with nesting this is the mirrors'
# C-NMC_test_prelim_phase_data/{C-NMC_test_prelim_phase_data/, labels CSV}) x spaces in the
# path x lowercase-h Hem subjects present or not.
PACKAGINGS = [
    (layout, nested, csv_up, spaces, h_fraction)
    for layout, nested, csv_up, spaces, h_fraction in itertools.product(
        "AB", (False, True), (False, True), (False, True), (0.0, 0.5)
    )
    if not (layout == "B" and csv_up)
]


@pytest.fixture(scope="module")
def reference_index(tmp_path_factory):
    """The plain layout-A index per lowercase-h share: what every packaging must reproduce."""
    out = {}
    for h_fraction in (0.0, 0.5):
        root = tmp_path_factory.mktemp("reference") / "cnmc"
        generate(root, spec(lowercase_h_fraction=h_fraction))
        out[h_fraction] = build_index(locate(root), SIZE)[0]
    return out


@pytest.mark.parametrize(
    ("layout", "nested", "csv_up", "spaces", "h_fraction"),
    PACKAGINGS,
    ids=lambda v: str(v),
)
def test_every_packaging_gives_the_same_index(
    tmp_path, reference_index, layout, nested, csv_up, spaces, h_fraction
):
    root = tmp_path / ("my C-NMC copy" if spaces else "copy") / ("raw data" if spaces else "raw")
    generate(
        root,
        spec(layout=layout, nested=nested, labels_csv_up=csv_up, lowercase_h_fraction=h_fraction),
    )
    before = snapshot(root)
    found = locate(root)
    assert found.layout == layout
    assert sorted(found.folds) == ["fold_0", "fold_1", "fold_2"]
    assert found.prelim_dir is not None and found.prelim_dir.name == "C-NMC_test_prelim_phase_data"
    assert any(p.suffix == ".bmp" for p in found.prelim_dir.iterdir()), found.prelim_dir
    assert found.prelim_labels is not None and found.final_dir is not None
    index, summary = build_index(found, SIZE)
    assert snapshot(root) == before, "locating and indexing must not touch the raw data"
    # same spec except packaging: identical images, subjects and labels
    cols = ["image_id", "subject", "label", "subset", "sha256"]
    assert index[cols].equals(reference_index[h_fraction][cols])
    assert summary["final_unlabelled"] == 4
    hem_ids = index.loc[index.label == 0, "image_id"]
    assert hem_ids.str.match(r"UID_h\d").any() == (h_fraction > 0)
    assert index.loc[index.label == 0, "subject"].str.startswith("H").all()


def test_nested_prelim_with_labels_outside_is_found(tmp_path):
    """The mirrors' packaging: the CSV beside the inner folder of the same name."""
    root = tmp_path / "raw"
    generate(root, spec(nested=True, labels_csv_up=True))
    outer = root / "C-NMC_test_prelim_phase_data"
    assert {p.name for p in outer.iterdir()} == {
        "C-NMC_test_prelim_phase_data",
        "C-NMC_test_prelim_phase_data_labels.csv",
    }
    found = locate(root)
    assert found.prelim_dir == outer / "C-NMC_test_prelim_phase_data"
    assert found.prelim_labels == outer / "C-NMC_test_prelim_phase_data_labels.csv"


def test_a_folder_with_images_beside_a_same_named_folder_is_not_a_wrapper(tmp_path):
    folder = tmp_path / "C-NMC_test_prelim_phase_data"
    (folder / folder.name).mkdir(parents=True)
    (folder / "1.bmp").write_bytes(b"")
    assert unnest(folder) == folder
    (folder / "1.bmp").unlink()
    (folder / "notes.txt").write_text("x")
    assert unnest(folder) == folder / folder.name


def test_index_content(layout_a):
    before = snapshot(layout_a)
    index, summary = build_index(locate(layout_a), SIZE, workers=2)
    assert snapshot(layout_a) == before, "merge must not touch the raw data"
    assert set(index.subset) == {"fold_0", "fold_1", "fold_2", "prelim"}
    assert index.image_id.is_unique
    # subjects keep their prefix, upper-cased, whatever case the file used
    hem_subjects = set(index.loc[index.label == 0, "subject"])
    assert hem_subjects and all(s.startswith("H") for s in hem_subjects)
    assert not any(s.startswith("H") for s in index.loc[index.label == 1, "subject"])
    assert any("_h" in i for i in index.image_id), "the spec asked for lowercase h files"
    # preliminary files are indexed under their original names, mapped through the CSV
    prelim = index[index.subset == "prelim"]
    assert all(p.endswith(".bmp") and p.split("/")[-1][:-4].isdigit() for p in prelim.path)
    assert all(i.startswith("UID_") for i in prelim.image_id)
    for row in prelim.itertuples():
        assert hashlib.sha256(Path(row.path).read_bytes()).hexdigest() == row.sha256
    assert summary["n_images"] == len(index)
    assert sum(summary["per_class"].values()) == len(index)
    assert set(summary["per_subject"]) == set(index.subject)
    assert (index.width == SIZE).all() and (index.height == SIZE).all()


def mutated(layout_a: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "mutated"
    shutil.copytree(layout_a, copy)
    return copy


def first(root: Path, pattern: str) -> Path:
    return sorted(root.rglob(pattern))[0]


def test_missing_class_folder_is_named(layout_a, tmp_path):
    root = mutated(layout_a, tmp_path)
    shutil.rmtree(root / "C-NMC_training_data" / "fold_1" / "hem")
    with pytest.raises(RawDataError, match=r"fold_1: missing the hem/ folder"):
        locate(root)


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(RawDataError, match=r"10\.7937/tcia\.2019\.dc64i46r"):
        locate(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RawDataError, match="no C-NMC 2019 copy found"):
        locate(tmp_path / "empty")


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_labels_csv_that_disagrees_with_files(layout_a, tmp_path):
    root = mutated(layout_a, tmp_path)
    found = locate(root)
    rows = _csv_rows(found.prelim_labels)
    rows[1][2] = "0" if rows[1][2] == "1" else "1"  # flipped label
    removed = rows.pop(2)  # a file with no row
    rows.append(["UID_99_1_1_all.bmp", "9999.bmp", "1"])  # a row with no file
    _write_csv(found.prelim_labels, rows)
    with pytest.raises(RawDataError) as err:
        build_index(found, SIZE)
    msg = str(err.value)
    assert "disagrees with its name" in msg
    assert f"{removed[1]}: has no row in" in msg
    assert "lists 9999.bmp but" in msg
    assert "3 problem(s)" in msg


def test_truncated_wrong_mode_and_wrong_size_images_are_named(layout_a, tmp_path):
    root = mutated(layout_a, tmp_path)
    truncated = first(root / "C-NMC_training_data" / "fold_0" / "all", "*.bmp")
    truncated.write_bytes(truncated.read_bytes()[:500])
    grey = first(root / "C-NMC_training_data" / "fold_1" / "all", "*.bmp")
    Image.open(grey).convert("L").save(grey)
    small = first(root / "C-NMC_training_data" / "fold_2" / "hem", "*.bmp")
    Image.open(small).resize((SIZE // 2, SIZE // 2)).save(small)
    with pytest.raises(RawDataError) as err:
        build_index(locate(root), SIZE)
    msg = str(err.value)
    assert f"{truncated}: unreadable or truncated image" in msg
    assert f"{grey}: image mode L, expected RGB" in msg
    assert f"{small}: size {SIZE // 2}x{SIZE // 2}, expected {SIZE}x{SIZE}" in msg


def test_duplicate_content_across_classes(layout_a, tmp_path):
    root = mutated(layout_a, tmp_path)
    src = first(root / "C-NMC_training_data" / "fold_0" / "all", "*.bmp")
    dst = root / "C-NMC_training_data" / "fold_0" / "hem" / "UID_H900_1_1_hem.bmp"
    shutil.copy(src, dst)
    with pytest.raises(RawDataError, match="identical pixels labelled both ALL and Hem"):
        build_index(locate(root), SIZE)


def test_file_in_wrong_class_folder(layout_a, tmp_path):
    root = mutated(layout_a, tmp_path)
    src = first(root / "C-NMC_training_data" / "fold_0" / "all", "*.bmp")
    shutil.move(src, root / "C-NMC_training_data" / "fold_0" / "hem" / src.name)
    with pytest.raises(RawDataError, match=r"named as ALL but stored in hem/"):
        build_index(locate(root), SIZE)


def test_workers_do_not_change_the_index(layout_a):
    one, _ = build_index(locate(layout_a), SIZE, workers=1)
    two, _ = build_index(locate(layout_a), SIZE, workers=2)
    assert one.equals(two)
    assert np.all(one.label.isin([0, 1]))
