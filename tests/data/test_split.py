"""Split modes: class stratification, subject disjointness, validation never from test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leukopipe.data.split import audit, make_splits


def random_phash(rng: np.random.Generator) -> str:
    """A 256-bit hash far from any other (random hashes differ in ~128 bits)."""
    return "".join(f"{int(w):016x}" for w in rng.integers(0, 2**63, size=4, dtype=np.int64))


def fake_index(seed: int = 0) -> pd.DataFrame:
    """An index like C-NMC's: single-class subjects of uneven size, folds plus a prelim set."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(40):
        label = int(s < 27)  # about 2/3 ALL, as on the real data
        subject = str(s) if label else f"H{s}"
        subset = "prelim" if s % 5 == 0 else f"fold_{s % 3}"
        for k in range(int(rng.integers(10, 60))):
            rows.append(
                {
                    "image_id": f"UID_{subject}_{k}_1_{'all' if label else 'hem'}.bmp",
                    "path": f"/raw/{subject}_{k}.bmp",
                    "subject": subject,
                    "label": label,
                    "class_name": "all" if label else "hem",
                    "subset": subset,
                    "width": 450,
                    "height": 450,
                    "sha256": f"{subject}-{k}",
                    "phash": random_phash(rng),
                }
            )
    return pd.DataFrame(rows)


def test_image_mode_is_stratified_90_10():
    index = fake_index()
    splits = make_splits(index, "image", 0.1, 0.1, seed=1)
    n_all, n_hem = (index.label == 1).sum(), (index.label == 0).sum()
    test = splits["test"]
    assert (test.label == 1).sum() == round(n_all * 0.1)
    assert (test.label == 0).sum() == round(n_hem * 0.1)
    pool_all = n_all - round(n_all * 0.1)
    assert (splits["val"].label == 1).sum() == round(pool_all * 0.1)
    assert sum(len(s) for s in splits.values()) == len(index)
    ids = [set(s.image_id) for s in splits.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])


def test_study_counts_reproduce_the_papers_test_size():
    """12,528 images (8,491 ALL, 4,037 Hem) give a 1,253-image test set, as in the study."""
    index = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(12528)],
            "path": "",
            "subject": "s",
            "label": [1] * 8491 + [0] * 4037,
            "class_name": "",
            "subset": "fold_0",
            "width": 450,
            "height": 450,
            "sha256": [str(k) for k in range(12528)],
        }
    )
    test = make_splits(index, "image", 0.1, 0.1, seed=0)["test"]
    assert len(test) == 1253
    assert (test.label == 1).sum() == 849  # per-class rounding; the study reports 847 + 406


@pytest.mark.parametrize("mode", ["patient", "official"])
def test_subject_level_modes_share_no_subject(mode):
    index = fake_index()
    splits = make_splits(index, mode, 0.2, 0.15, seed=3)
    report = audit(splits, mode, 8)
    assert report["subject_disjoint"]
    assert all(v == 0 for v in report["n_shared_subjects"].values())
    for part in splits.values():
        assert set(part.label) == {0, 1}, "every split holds both classes"


def test_patient_mode_fractions_are_close_per_class():
    index = fake_index()
    splits = make_splits(index, "patient", 0.2, 0.15, seed=3)
    for label in (0, 1):
        share = (splits["test"].label == label).sum() / (index.label == label).sum()
        assert 0.1 < share < 0.3


def test_official_mode_tests_on_the_preliminary_set():
    index = fake_index()
    splits = make_splits(index, "official", 0.1, 0.1, seed=0)
    assert set(splits["test"].subset) == {"prelim"}
    assert "prelim" not in set(splits["train"].subset) | set(splits["val"].subset)
    assert len(splits["test"]) == (index.subset == "prelim").sum()


def test_image_mode_leaks_subjects_and_audit_says_so():
    index = fake_index()
    splits = make_splits(index, "image", 0.1, 0.1, seed=0)
    report = audit(splits, "image", 8)
    assert report["n_shared_subjects"]["train|test"] > 0
    assert report["test_images_from_training_subjects"] == len(splits["test"])
    assert not report["subject_disjoint"]


def test_deterministic_from_seed():
    index = fake_index()
    a = make_splits(index, "patient", 0.2, 0.1, seed=5)
    b = make_splits(index, "patient", 0.2, 0.1, seed=5)
    c = make_splits(index, "patient", 0.2, 0.1, seed=6)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    assert set(a["test"].subject) != set(c["test"].subject)


def test_too_few_subjects_is_a_clear_error():
    index = fake_index()
    index = index[index.subject.isin(["1", "2", "H30"])]
    with pytest.raises(ValueError, match="at least 2 per class"):
        make_splits(index, "patient", 0.2, 0.1, seed=0)


def test_cv_folds_test_every_image_once_subject_disjoint_and_stratified():
    index = fake_index()
    k = 3
    seen = []
    for fold in range(k):
        s = make_splits(index, f"cv{k}-f{fold}", 0.1, 0.15, seed=5)
        rep = audit(s, f"cv{k}-f{fold}", 8)
        assert rep["subject_disjoint"], rep["shared_subjects"]
        assert sum(len(p) for p in s.values()) == len(index)
        # every fold tests both classes, each with close to 1/k of that class's images
        biggest = index.groupby("subject").size().max()
        for label in (0, 1):
            n_class = int((index.label == label).sum())
            n_fold = int((s["test"].label == label).sum())
            assert n_fold > 0 and abs(n_fold - n_class / k) <= biggest
        assert s["val"]["subject"].nunique() >= 2  # validation carved by whole subjects
        seen.append(s["test"]["image_id"])
    tested = pd.concat(seen)
    assert tested.is_unique and set(tested) == set(index["image_id"])
    again = make_splits(index, "cv3-f1", 0.1, 0.15, seed=5)
    assert (
        again["test"]["image_id"].tolist()
        == make_splits(index, "cv3-f1", 0.1, 0.15, seed=5)["test"]["image_id"].tolist()
    )
    other_seed = make_splits(index, "cv3-f1", 0.1, 0.15, seed=6)["test"]
    assert set(other_seed["subject"]) != set(again["test"]["subject"])


def test_cv_needs_k_subjects_per_class_and_valid_ids():
    index = fake_index()
    n_hem = index[index.label == 0]["subject"].nunique()
    make_splits(index, f"cv{n_hem}-f0", 0.1, 0.1, seed=0)  # one Hem subject per fold is fine
    with pytest.raises(ValueError, match=f"class 0 has {n_hem} subject"):
        make_splits(index, f"cv{n_hem + 1}-f0", 0.1, 0.1, seed=0)
    for bad in ("cv3-f3", "cv1-f0", "cv3", "fold0"):
        with pytest.raises(ValueError):
            make_splits(index, bad, 0.1, 0.1, seed=0)


def _flip_bits(phash: str, n: int) -> str:
    value = int(phash, 16) ^ ((1 << n) - 1)  # the n lowest bits flipped
    return f"{value:064x}"


def test_audit_counts_near_duplicates_across_splits_within_the_distance():
    index = fake_index()
    splits = make_splits(index, "patient", 0.2, 0.15, seed=3)
    train, test = splits["train"], splits["test"]
    # two test images become near-copies of training images (3 and 8 bits away), one of them
    # also of a validation image; a third is 9 bits away: beyond the threshold
    test.loc[0, "phash"] = _flip_bits(train.loc[0, "phash"], 3)
    test.loc[1, "phash"] = _flip_bits(train.loc[5, "phash"], 8)
    test.loc[2, "phash"] = _flip_bits(train.loc[7, "phash"], 9)
    splits["val"].loc[4, "phash"] = _flip_bits(test.loc[0, "phash"], 1)
    report = audit(splits, "patient", 8)
    near = report["near_duplicates"]
    assert near["max_distance"] == 8 and "256 bits" in near["hash"]
    assert near["n_pairs"] == {"train|val": 1, "train|test": 2, "val|test": 1}
    assert near["images"]["train|test"] == 2 == report["test_images_near_duplicate_of_training"]
    closest = near["pairs"]["train|test"][0]
    assert closest == {
        "train": train.loc[0, "image_id"],
        "train_subject": train.loc[0, "subject"],
        "test": test.loc[0, "image_id"],
        "test_subject": test.loc[0, "subject"],
        "distance": 3,
    }
    assert [p["distance"] for p in near["pairs"]["train|test"]] == [3, 8]
    # the threshold is what decides: 9 bits catches the third pair, 2 bits none of them
    assert audit(splits, "patient", 9)["near_duplicates"]["images"]["train|test"] == 3
    assert audit(splits, "patient", 2)["near_duplicates"]["images"]["train|test"] == 0
    with pytest.raises(ValueError, match=r"outside 0\.\.256"):
        audit(splits, "patient", 257)
