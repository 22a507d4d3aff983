"""Tests of the synthetic C-NMC generator: layout, names, labels, pixels, determinism, science."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leukopipe.data import synthetic
from leukopipe.data.synthetic import SyntheticSpec, generate, spec_from_dict

REPO = Path(__file__).resolve().parents[2]
NAME_RX = re.compile(r"^UID_(h|H)?(\d+)_(\d+)_(\d+)_(all|hem)\.bmp$")
CSV_NAME = "C-NMC_test_prelim_phase_data_labels.csv"
# Tiny: 6 training donors, 2 prelim donors, 2-3 images each, 48 px.
TINY = {"train_all_subjects": 3, "train_hem_subjects": 3, "prelim_all_subjects": 1,
        "prelim_hem_subjects": 1, "cells_per_subject": (2, 3), "final_images": 5,
        "image_size": 48}


def tiny(**kw: object) -> SyntheticSpec:
    return SyntheticSpec(**{**TINY, **kw})


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root, by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def numbered(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.bmp")}


@pytest.fixture(scope="module")
def default96(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The default spec (20 training donors, ~400 labelled training cells) at 96 px."""
    root = tmp_path_factory.mktemp("default96")
    return root, generate(root, SyntheticSpec(seed=0, image_size=96))


def training_files(root: Path) -> list[Path]:
    return sorted(root.glob("C-NMC_training_data/fold_*/*/*.bmp"))


def subject_of(name: str) -> str:
    m = NAME_RX.match(name)
    assert m, name
    return (m.group(1) or "").upper() + m.group(2)


# ------------------------------------------------------------------------------- layout


@pytest.mark.parametrize(
    ("layout", "nested", "csv_up"),
    [("A", False, False), ("A", False, True), ("A", True, False), ("A", True, True),
     ("B", False, False), ("B", True, False)],
)
def test_layouts_produce_the_exact_paths(tmp_path: Path, layout: str, nested: bool,
                                         csv_up: bool) -> None:
    summary = generate(tmp_path, tiny(layout=layout, nested=nested, labels_csv_up=csv_up))
    n_prelim = summary["counts"]["prelim"]["all"] + summary["counts"]["prelim"]["hem"]
    if layout == "A":
        tops = ["C-NMC_training_data", "C-NMC_test_prelim_phase_data",
                "C-NMC_test_final_phase_data"]
        expected_root = {*tops, "SYNTHETIC.json"}
        if csv_up and not nested:
            expected_root.add(CSV_NAME)
        assert {p.name for p in tmp_path.iterdir()} == expected_root
        d = {t: (tmp_path / t / t if nested else tmp_path / t) for t in tops}
        if nested:
            for t in tops:
                expected = {t, CSV_NAME} if (csv_up and t == tops[1]) else {t}
                assert {p.name for p in (tmp_path / t).iterdir()} == expected
        training, prelim, final = d[tops[0]], d[tops[1]], d[tops[2]]
        csv_path = (prelim.parent if csv_up else prelim) / CSV_NAME
    else:
        assert {p.name for p in tmp_path.iterdir()} == {"C-NMC_Leukemia", "SYNTHETIC.json"}
        base = tmp_path / "C-NMC_Leukemia"
        if nested:
            assert [p.name for p in base.iterdir()] == ["C-NMC_Leukemia"]
            base = base / "C-NMC_Leukemia"
        assert {p.name for p in base.iterdir()} == {"training_data", "validation_data",
                                                    "testing_data"}
        training = base / "training_data"
        prelim = base / "validation_data" / "C-NMC_test_prelim_phase_data"
        final = base / "testing_data" / "C-NMC_test_final_phase_data"
        csv_path = base / "validation_data" / CSV_NAME
        assert {p.name for p in (base / "validation_data").iterdir()} == {prelim.name, CSV_NAME}
        assert [p.name for p in (base / "testing_data").iterdir()] == [final.name]

    assert {p.name for p in training.iterdir()} == {"fold_0", "fold_1", "fold_2"}
    for fold in training.iterdir():
        assert {p.name for p in fold.iterdir()} == {"all", "hem"}
        for cls in ("all", "hem"):
            names = [p.name for p in (fold / cls).iterdir()]
            assert names, f"{fold.name}/{cls} is empty"
            assert all(NAME_RX.match(n) and n.endswith(f"_{cls}.bmp") for n in names)
    prelim_listing = {p.name for p in prelim.iterdir()}
    assert prelim_listing - {CSV_NAME} == {f"{k}.bmp" for k in range(1, n_prelim + 1)}
    assert (CSV_NAME in prelim_listing) == (layout == "A" and not csv_up)
    assert csv_path.is_file()
    assert {p.name for p in final.iterdir()} == {f"{k}.bmp" for k in range(1, 6)}
    # The summary records the same paths, relative to root.
    assert (tmp_path / summary["paths"]["labels_csv"]) == csv_path
    assert (tmp_path / summary["paths"]["training"]) == training
    assert (tmp_path / summary["paths"]["prelim"]) == prelim
    assert (tmp_path / summary["paths"]["final"]) == final


def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    generate(tmp_path, tiny(), workers=2)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


# ------------------------------------------------------------------------------- names


def test_names_parse_and_agree_with_class_and_folder(default96: tuple[Path, dict]) -> None:
    root, _ = default96
    files = training_files(root)
    assert len(files) > 300
    prefixes = set()
    per_image: dict[tuple[str, str], int] = {}
    for p in files:
        m = NAME_RX.match(p.name)
        assert m, p.name
        prefix, _number, image, _cell, cls = m.groups()
        assert p.parent.name == cls
        # ALL donors are bare numbers; Hem donors carry an H or h prefix.
        assert (prefix is None) == (cls == "all"), p.name
        prefixes.add(prefix)
        key = (subject_of(p.name), image)
        per_image[key] = per_image.get(key, 0) + 1
    assert {"h", "H", None} <= prefixes, "lowercase h, uppercase H and plain ALL names expected"
    assert max(per_image.values()) > 1, "several cells should share an image number"
    assert len({p.name for p in files}) == len(files)


def test_subject_numbers_overlap_between_classes(default96: tuple[Path, dict]) -> None:
    root, summary = default96
    all_numbers = {s["subject"] for s in summary["subjects"] if s["class"] == "all"}
    hem_numbers = {s["subject"][1:] for s in summary["subjects"] if s["class"] == "hem"}
    assert all_numbers & hem_numbers, "some n and Hn should both exist (different donors)"
    on_disk = {subject_of(p.name) for p in training_files(root)}
    assert {n for n in on_disk if not n.startswith("H")} & {n[1:] for n in on_disk
                                                           if n.startswith("H")}


def test_folds_and_prelim_are_subject_disjoint(default96: tuple[Path, dict]) -> None:
    root, _ = default96
    fold_subjects = {
        f: {subject_of(p.name) for p in (root / "C-NMC_training_data" / f).rglob("*.bmp")}
        for f in ("fold_0", "fold_1", "fold_2")
    }
    assert all(fold_subjects.values())
    assert not fold_subjects["fold_0"] & fold_subjects["fold_1"]
    assert not fold_subjects["fold_0"] & fold_subjects["fold_2"]
    assert not fold_subjects["fold_1"] & fold_subjects["fold_2"]
    training = set().union(*fold_subjects.values())
    assert len(training) == 20
    with open(root / "C-NMC_test_prelim_phase_data" / CSV_NAME, newline="") as fh:
        prelim = {subject_of(r["Patient_ID"]) for r in csv.DictReader(fh)}
    assert len(prelim) == 7
    assert not prelim & training


# ------------------------------------------------------------------------------- labels CSV


def test_prelim_csv_maps_every_numbered_file_once(default96: tuple[Path, dict]) -> None:
    root, summary = default96
    prelim = root / "C-NMC_test_prelim_phase_data"
    text = (prelim / CSV_NAME).read_text()
    assert text.splitlines()[0] == "Patient_ID,new_names,labels"
    with open(prelim / CSV_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    new_names = [r["new_names"] for r in rows]
    assert sorted(new_names) == sorted(numbered(prelim))
    assert len(set(new_names)) == len(new_names)
    assert sorted(int(n[:-4]) for n in new_names) == list(range(1, len(rows) + 1))
    originals = [r["Patient_ID"] for r in rows]
    assert len(set(originals)) == len(originals)
    for r in rows:
        m = NAME_RX.match(r["Patient_ID"])
        assert m, r
        assert r["labels"] == ("1" if m.group(5) == "all" else "0")
    assert {r["labels"] for r in rows} == {"0", "1"}
    counts = summary["counts"]["prelim"]
    assert sum(r["labels"] == "1" for r in rows) == counts["all"]
    assert sum(r["labels"] == "0" for r in rows) == counts["hem"]
    # Renamed in a shuffled order, not grouped by donor.
    order = [subject_of(o) for o in sorted(originals, key=lambda o: int(
        next(r["new_names"] for r in rows if r["Patient_ID"] == o)[:-4]))]
    changes = sum(a != b for a, b in itertools.pairwise(order))
    assert changes > len(order) / 2


def test_summary_counts_match_disk(default96: tuple[Path, dict]) -> None:
    root, summary = default96
    assert json.loads((root / "SYNTHETIC.json").read_text()) == summary
    for fold in ("fold_0", "fold_1", "fold_2"):
        for cls in ("all", "hem"):
            on_disk = len(list((root / "C-NMC_training_data" / fold / cls).glob("*.bmp")))
            assert summary["counts"][fold][cls] == on_disk
    final = numbered(root / "C-NMC_test_final_phase_data")
    assert len(final) == 20 == summary["counts"]["total"]["unlabelled"]
    assert sum(s["images"] for s in summary["subjects"]) == summary["counts"]["total"]["images"]
    n_files = sum(1 for p in root.rglob("*") if p.is_file() and p.name != "SYNTHETIC.json")
    assert summary["files"] == n_files
    assert summary["spec"]["image_size"] == 96
    assert re.fullmatch(r"[0-9a-f]{64}", summary["fingerprint"])


# ------------------------------------------------------------------------------- pixels


def check_image(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "BMP"
        assert im.mode == "RGB"
        assert im.size == (size, size)
        a = np.asarray(im)
    corner = max(2, size // 16)
    for patch in (a[:corner, :corner], a[:corner, -corner:], a[-corner:, :corner],
                  a[-corner:, -corner:]):
        assert not patch.any(), f"{path.name}: corners must be exactly black"
    assert a[size // 2 - 2: size // 2 + 3, size // 2 - 2: size // 2 + 3].all(), path.name
    return a


def test_images_are_rgb_bmp_with_black_corners(default96: tuple[Path, dict]) -> None:
    root, _ = default96
    paths = (training_files(root)[::25] + sorted((root / "C-NMC_test_prelim_phase_data")
                                                 .glob("*.bmp"))[:5]
             + sorted((root / "C-NMC_test_final_phase_data").glob("*.bmp"))[:5])
    for p in paths:
        a = check_image(p, 96)
        # Non-black pixels form one coloured (not grey) cell.
        cell = a[a.max(-1) > 0].astype(int)
        assert (cell.min(-1) >= 1).all()
        assert (cell[:, 2] - cell[:, 1]).mean() > 10, "stained cells are blue-purple"


def test_full_size_images(tmp_path: Path) -> None:
    spec = tiny(image_size=450, cells_per_subject=(1, 1), final_images=2)
    summary = generate(tmp_path, spec)
    paths = [p for p in tmp_path.rglob("*.bmp")]
    assert len(paths) == summary["counts"]["total"]["images"] == 10
    for p in paths:
        a = check_image(p, 450)
        mask = a.max(-1) > 0
        assert not mask[:3].any() and not mask[-3:].any()
        assert not mask[:, :3].any() and not mask[:, -3:].any()
        ys, xs = np.nonzero(mask)
        # Roughly centred: the cell's centroid within 15 % of the frame's centre.
        assert abs(ys.mean() - 225) < 68 and abs(xs.mean() - 225) < 68
        assert 0.05 < mask.mean() < 0.6
        # Uncompressed 24-bit BMP: 54-byte header, rows padded to 4 bytes.
        assert len(p.read_bytes()) == 54 + 450 * (450 * 3 + 2)


# ------------------------------------------------------------------------------- determinism


def test_same_spec_gives_byte_identical_files(tmp_path: Path) -> None:
    s1 = generate(tmp_path / "one", tiny(seed=7))
    s2 = generate(tmp_path / "two", tiny(seed=7), workers=2)
    assert tree(tmp_path / "one") == tree(tmp_path / "two")
    assert s1 == s2
    s3 = generate(tmp_path / "three", tiny(seed=8))
    assert s3["fingerprint"] != s1["fingerprint"]
    assert (tmp_path / "three" / "C-NMC_test_final_phase_data" / "1.bmp").read_bytes() != (
        tmp_path / "one" / "C-NMC_test_final_phase_data" / "1.bmp").read_bytes()


def test_worker_count_does_not_change_bytes(tmp_path: Path) -> None:
    spec = tiny(seed=3, train_all_subjects=4, cells_per_subject=(4, 6), image_size=64)
    generate(tmp_path / "w1", spec, workers=1)
    generate(tmp_path / "w2", spec, workers=2)
    assert tree(tmp_path / "w1") == tree(tmp_path / "w2")


def test_fingerprint_covers_content(tmp_path: Path) -> None:
    # A different layout holds the same images under other paths: another fingerprint.
    a = generate(tmp_path / "a", tiny(seed=1))
    b = generate(tmp_path / "b", tiny(seed=1, layout="B"))
    assert a["fingerprint"] != b["fingerprint"]
    # ...but pixels depend only on (seed, donor, cell), not on the packaging.
    fa = tree(tmp_path / "a" / "C-NMC_training_data")
    fb = tree(tmp_path / "b" / "C-NMC_Leukemia" / "training_data")
    assert fa == fb


# ------------------------------------------------------------------------------- science


def otsu_threshold(gray: np.ndarray) -> int:
    hist = np.bincount(gray, minlength=256).astype(float)
    p = hist / hist.sum()
    w = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    between = (mu[-1] * w - mu) ** 2 / (w * (1 - w) + 1e-12)
    return int(np.argmax(between))


def features(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per training image: dark-nucleus fraction, colour statistics, label, donor."""
    dark_frac, colour, labels, donors = [], [], [], []
    for p in training_files(root):
        a = np.asarray(Image.open(p)).astype(float)
        pixels = a[a.max(-1) > 0]
        gray = pixels.mean(-1).astype(np.uint8)
        dark = gray < otsu_threshold(gray)
        dark_frac.append(dark.mean())
        # Chromaticity and brightness of the whole cell and of its light (cytoplasm) part.
        colour.append([*(pixels.mean(0) / pixels.mean()), pixels.mean() / 255,
                       *(pixels[~dark].mean(0) / 255)])
        labels.append(p.name.endswith("_all.bmp"))
        donors.append(subject_of(p.name))
    return np.array(dark_frac), np.array(colour), np.array(labels), np.array(donors)


def cohens_d(f: np.ndarray, y: np.ndarray) -> float:
    return float((f[y].mean() - f[~y].mean()) / np.sqrt((f[y].var() + f[~y].var()) / 2))


def test_class_signal_is_real_but_imperfect(default96: tuple[Path, dict],
                                            tmp_path: Path) -> None:
    root, _ = default96
    f, _, y, _ = features(root)
    d = cohens_d(f, y)
    assert d > 0.5, f"ALL should show clearly more nucleus (larger N:C); Cohen's d = {d:.2f}"
    best = max(max(((f > t) == y).mean(), ((f <= t) == y).mean()) for t in np.unique(f))
    assert best < 0.9, f"one feature should not separate the classes (accuracy {best:.2f})"
    assert np.quantile(f[y], 0.25) < np.quantile(f[~y], 0.75), "distributions should overlap"
    # class_signal = 0 removes the difference.
    generate(tmp_path, SyntheticSpec(seed=0, image_size=96, class_signal=0.0, final_images=0))
    f0, _, y0, _ = features(tmp_path)
    assert abs(cohens_d(f0, y0)) < 0.35


def nearest_centroid_subject_accuracy(colour: np.ndarray, donors: np.ndarray) -> float:
    """Train on every other cell of each donor, predict the donor of the rest."""
    train = np.zeros(len(donors), bool)
    for s in np.unique(donors):
        train[np.flatnonzero(donors == s)[::2]] = True
    z = (colour - colour[train].mean(0)) / colour[train].std(0)
    names = np.unique(donors)
    centroids = np.array([z[train & (donors == s)].mean(0) for s in names])
    dist = ((z[~train, None, :] - centroids[None]) ** 2).sum(-1)
    return float((names[dist.argmin(1)] == donors[~train]).mean())


def test_subject_signature_identifies_donors(default96: tuple[Path, dict],
                                             tmp_path: Path) -> None:
    root, _ = default96
    _, colour, _, donors = features(root)
    chance = 1 / len(np.unique(donors))
    acc = nearest_centroid_subject_accuracy(colour, donors)
    assert acc > 5 * chance, f"colour should identify the donor (accuracy {acc:.2f})"
    generate(tmp_path, SyntheticSpec(seed=0, image_size=96, subject_signal=0.0, final_images=0))
    _, colour0, _, donors0 = features(tmp_path)
    acc0 = nearest_centroid_subject_accuracy(colour0, donors0)
    assert acc0 < acc / 2, f"subject_signal=0 should remove the signature ({acc0:.2f})"


def knn_accuracy(x: np.ndarray, y: np.ndarray, folds: np.ndarray, k: int = 5) -> float:
    z = (x - x.mean(0)) / x.std(0)
    correct = 0
    for fold in np.unique(folds):
        test = folds == fold
        dist = ((z[test, None, :] - z[None, ~test, :]) ** 2).sum(-1)
        votes = y[~test][np.argsort(dist, 1)[:, :k]].mean(1)
        correct += int(((votes > 0.5) == y[test]).sum())
    return correct / len(y)


def test_image_level_split_leaks_through_the_subject_signature(
        default96: tuple[Path, dict]) -> None:
    root, _ = default96
    _, colour, y, donors = features(root)
    rng = np.random.default_rng(0)
    image_folds = rng.permutation(len(y)) % 5
    names = rng.permutation(np.unique(donors))
    fold_of = {s: i % 5 for i, s in enumerate(names)}
    subject_folds = np.array([fold_of[s] for s in donors])
    image_acc = knn_accuracy(colour, y, image_folds)
    subject_acc = knn_accuracy(colour, y, subject_folds)
    assert image_acc > subject_acc + 0.1, (image_acc, subject_acc)


def test_class_strength_varies_per_donor(default96: tuple[Path, dict]) -> None:
    _, summary = default96
    strengths = [s["class_strength"] for s in summary["subjects"] if s["class"] == "all"]
    lo, hi = synthetic.CLASS_STRENGTH["all"]
    assert all(lo <= v <= hi for v in strengths)
    assert max(strengths) - min(strengths) > 0.4


# ------------------------------------------------------------------------------- existing folders


def test_same_spec_returns_without_rewriting(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    first = generate(tmp_path, tiny())
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}

    def must_not_render(*args: object) -> None:
        raise AssertionError("an existing dataset must not be re-rendered")

    monkeypatch.setattr(synthetic, "_render_and_write", must_not_render)
    assert generate(tmp_path, tiny()) == first
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == stamps


def test_different_spec_is_refused(tmp_path: Path) -> None:
    generate(tmp_path, tiny())
    before = tree(tmp_path)
    with pytest.raises(ValueError, match="different settings") as err:
        generate(tmp_path, tiny(seed=1))
    assert str(tmp_path) in str(err.value)
    assert "delete" in str(err.value) and "another folder" in str(err.value)
    assert tree(tmp_path) == before


def test_other_generator_version_is_refused(tmp_path: Path) -> None:
    generate(tmp_path, tiny())
    marker = tmp_path / "SYNTHETIC.json"
    stored = json.loads(marker.read_text())
    stored["generator_version"] = -1
    marker.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="generator version"):
        generate(tmp_path, tiny())


def test_non_empty_folder_without_marker_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("someone else's data")
    with pytest.raises(ValueError, match=r"no SYNTHETIC\.json") as err:
        generate(tmp_path, tiny())
    assert str(tmp_path) in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_empty_existing_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    generate(tmp_path / "out", tiny())
    assert (tmp_path / "out" / "SYNTHETIC.json").is_file()


def test_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        generate(tmp_path / "f", tiny())


def test_interrupted_generation_leaves_no_marker_and_is_detected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = synthetic._render_and_write
    calls = []

    def dies_after_five(*args: object) -> tuple[str, str]:
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(synthetic, "_render_and_write", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, tiny())
    monkeypatch.setattr(synthetic, "_render_and_write", real)
    assert not (tmp_path / "SYNTHETIC.json").exists()
    assert len(list(tmp_path.rglob("*.bmp"))) == 5
    with pytest.raises(ValueError, match="interrupted"):
        generate(tmp_path, tiny())


def test_bad_worker_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        generate(tmp_path, tiny(), workers=0)


# ------------------------------------------------------------------------------- spec


def test_spec_from_dict_converts_lists_and_validates() -> None:
    spec = spec_from_dict({"seed": 4, "layout": "B", "cells_per_subject": [3, 5],
                           "class_signal": 1, "image_size": 128})
    assert spec == SyntheticSpec(seed=4, layout="B", cells_per_subject=(3, 5),
                                 class_signal=1.0, image_size=128)
    assert isinstance(spec.class_signal, float)
    assert spec_from_dict({}) == SyntheticSpec()
    with pytest.raises(ValueError, match="cell_per_subject"):
        spec_from_dict({"cell_per_subject": [3, 5]})


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"layout": "C"}, "layout"),
     ({"layout": "B", "labels_csv_up": True}, "labels_csv_up"),
     ({"cells_per_subject": [5, 3]}, "cells_per_subject"),
     ({"cells_per_subject": [0, 3]}, "cells_per_subject"),
     ({"cells_per_subject": [3]}, "cells_per_subject"),
     ({"train_all_subjects": 2}, "train_all_subjects"),
     ({"prelim_hem_subjects": 0}, "prelim_hem_subjects"),
     ({"final_images": -1}, "final_images"),
     ({"image_size": 16}, "image_size"),
     ({"nested": 1}, "nested"),
     ({"seed": True}, "seed"),
     ({"seed": 1.5}, "seed"),
     ({"lowercase_h_fraction": 1.5}, "lowercase_h_fraction"),
     ({"class_signal": -0.1}, "class_signal"),
     ({"subject_signal": "strong"}, "subject_signal")],
)
def test_invalid_specs_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec_from_dict(settings)


def test_numpy_and_int_values_are_normalised(tmp_path: Path) -> None:
    spec = SyntheticSpec(**{**TINY, "seed": np.int64(2), "class_signal": 1,
                            "cells_per_subject": (np.int64(2), np.int64(3))})
    assert type(spec.seed) is int and type(spec.class_signal) is float
    assert all(type(v) is int for v in spec.cells_per_subject)
    summary = generate(tmp_path, spec)
    assert summary["spec"]["seed"] == 2
    assert generate(tmp_path, tiny(seed=2)) == summary


@pytest.mark.parametrize("seed", range(6))
def test_small_datasets_still_show_the_name_quirks_in_training(tmp_path: Path, seed: int) -> None:
    # The training folds alone must exercise lowercase h and the n / Hn number clash.
    generate(tmp_path, tiny(seed=seed, lowercase_h_fraction=0.05, image_size=32))
    donors = {p.name.split("_")[1] for p in tmp_path.glob("C-NMC_training_data/*/*/*.bmp")}
    assert any(d.startswith("h") for d in donors)
    numbers_all = {d for d in donors if d.isdigit()}
    assert numbers_all & {d[1:] for d in donors if not d.isdigit()}


def test_zero_final_images_and_no_lowercase(tmp_path: Path) -> None:
    summary = generate(tmp_path, tiny(final_images=0, lowercase_h_fraction=0.0))
    assert not list((tmp_path / "C-NMC_test_final_phase_data").iterdir())
    assert summary["counts"]["total"]["unlabelled"] == 0
    names = [p.name for p in tmp_path.rglob("UID_*.bmp")]
    assert names and not [n for n in names if n.startswith("UID_h")]


# ------------------------------------------------------------------------------- CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, str(REPO / "scripts" / "make_synthetic.py"), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_cli(tmp_path: Path) -> None:
    helped = run_cli("--help")
    assert helped.returncode == 0
    for flag in ("--layout", "--nested", "--labels-csv-up", "--cells-per-subject",
                 "--class-signal", "--workers"):
        assert flag in helped.stdout
    args = ["--layout", "B", "--nested", "--train-all-subjects", "3", "--train-hem-subjects",
            "3", "--prelim-all-subjects", "1", "--prelim-hem-subjects", "1",
            "--cells-per-subject", "2", "3", "--final-images", "5", "--image-size", "48"]
    done = run_cli(str(tmp_path / "cli"), *args)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["fingerprint"] == generate(
        tmp_path / "api", tiny(layout="B", nested=True))["fingerprint"]
    assert (tmp_path / "cli" / "C-NMC_Leukemia" / "C-NMC_Leukemia" / "training_data").is_dir()
    refused = run_cli(str(tmp_path / "cli"), *args, "--seed", "5")
    assert refused.returncode == 1
    assert "different settings" in refused.stderr
