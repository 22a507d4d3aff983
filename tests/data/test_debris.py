"""Archive debris (``__MACOSX/``, ``._*``, ``.DS_Store``, ...) never counts and never blocks.

Every kind of debris is generated at every level of every packaging the synthetic generator
makes (layout A/B, doubled folders, labels CSV beside the images or one level up), on real
files; layout detection, the merge index and the content digest must equal the clean copy's,
and the merge summary must say exactly what was skipped.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from leukopipe.data.debris import debris_kind, find_debris
from leukopipe.data.merge import build_index
from leukopipe.data.raw_identity import content_digest
from leukopipe.data.raw_layout import locate
from leukopipe.data.synthetic import SyntheticSpec, generate

REPO = Path(__file__).resolve().parents[2]
SIZE = 32
KINDS = ("__MACOSX", "._*", ".DS_Store", "Thumbs.db", "desktop.ini", ".ipynb_checkpoints")
PACKAGINGS = [
    (layout, nested, csv_up)
    for layout, nested, csv_up in itertools.product("AB", (False, True), (False, True))
    if not (layout == "B" and csv_up)
]
LEVELS = ("raw_dir", "top", "doubled", "training", "fold", "class", "prelim", "final")


def _spec(layout: str, nested: bool, csv_up: bool) -> SyntheticSpec:
    return SyntheticSpec(
        seed=5,
        layout=layout,
        nested=nested,
        labels_csv_up=csv_up,
        image_size=SIZE,
        train_all_subjects=3,
        train_hem_subjects=3,
        prelim_all_subjects=1,
        prelim_hem_subjects=1,
        cells_per_subject=(2, 3),
        final_images=2,
    )


@pytest.fixture(scope="module")
def clean_copies(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, Path]:
    out = {}
    for packaging in PACKAGINGS:
        root = tmp_path_factory.mktemp("clean") / "copy"
        generate(root, _spec(*packaging))
        out[packaging] = root
    return out


def _doubled(root: Path) -> list[Path]:
    """Outer folders of every doubled pair (a folder holding a folder of the same name)."""
    return sorted(p for p in root.rglob("*") if p.is_dir() and (p / p.name).is_dir())


def _levels(root: Path) -> dict[str, list[Path]]:
    found = locate(root)
    fold = found.folds["fold_0"]
    training = fold.parent if fold.parent.name != fold.name else fold.parent.parent
    return {
        "raw_dir": [root],
        "top": [found.root],
        "doubled": _doubled(root),
        "training": [training],
        "fold": [fold],
        "class": [fold / "all", fold / "hem"],
        "prelim": [found.prelim_dir, found.prelim_labels.parent],
        "final": [found.final_dir],
    }


def _add_debris(folder: Path) -> Counter:
    """Every kind of debris in ``folder``, as the tools make it; returns what was added."""
    added: Counter = Counter()
    entries = sorted(p.name for p in folder.iterdir())
    # a Mac zip: __MACOSX/ mirrors the tree with AppleDouble files
    mac = folder / "__MACOSX"
    (mac / folder.name).mkdir(parents=True)
    for name in entries:
        (mac / folder.name / f"._{name}").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 78)
    added["__MACOSX"] += 1
    # a tar made on a Mac, or a copy onto a non-Mac volume: AppleDouble files beside each entry
    for name in entries:
        (folder / f"._{name}").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 78)
        added["._*"] += 1
    for name in (".DS_Store", "Thumbs.db", "desktop.ini"):
        (folder / name).write_bytes(b"\x00" * 50)
        added[name] += 1
    ckpt = folder / ".ipynb_checkpoints"
    ckpt.mkdir()
    (ckpt / "look-checkpoint.ipynb").write_text("{}")
    added[".ipynb_checkpoints"] += 1
    return added


def _index_columns(root: Path):
    index, summary = build_index(locate(root), SIZE, raw_dir=root)
    return index[["image_id", "subject", "label", "subset", "sha256"]], summary


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("layout", "nested", "csv_up"), PACKAGINGS, ids=str)
def test_every_kind_of_debris_at_every_level_is_skipped(
    tmp_path: Path, clean_copies: dict, layout: str, nested: bool, csv_up: bool, level: str
) -> None:
    clean = clean_copies[(layout, nested, csv_up)]
    folders = _levels(clean)[level]
    if not folders:
        assert level == "doubled" and not nested, "every nested copy has a doubled folder"
        return
    root = tmp_path / "copy"
    shutil.copytree(clean, root)
    added: Counter = Counter()
    for folder in dict.fromkeys(folders):  # a level may name one folder twice
        added += _add_debris(root / folder.relative_to(clean))

    dirty = locate(root)
    assert dirty.layout == layout
    assert sorted(dirty.folds) == ["fold_0", "fold_1", "fold_2"]
    assert dirty.prelim_labels is not None and debris_kind(dirty.prelim_labels.name, False) is None
    index, summary = _index_columns(root)
    reference, clean_summary = _index_columns(clean)
    assert index.equals(reference)
    assert summary["final_unlabelled"] == clean_summary["final_unlabelled"]
    assert [Path(p).relative_to(root) for p in summary["ignored_files"]] == [
        Path(p).relative_to(clean) for p in clean_summary["ignored_files"]
    ]
    skipped = summary["skipped_debris"]
    assert {k: v["count"] for k, v in skipped["per_kind"].items()} == dict(added)
    assert skipped["count"] == sum(added.values())
    assert skipped["bytes"] > 0
    assert clean_summary["skipped_debris"]["count"] == 0
    # the same data: a Mac-made copy reruns nothing
    assert content_digest(root, tmp_path / "h1.json") == content_digest(clean, tmp_path / "h2.json")


def test_the_reported_case_layout_b_doubled_with_macosx_inside(tmp_path: Path) -> None:
    """``C-NMC_Leukemia/{C-NMC_Leukemia/, __MACOSX/}`` was rejected as lacking training_data/."""
    root = tmp_path / "raw"
    generate(root, _spec("B", True, False))
    outer = root / "C-NMC_Leukemia"
    (outer / "__MACOSX" / "C-NMC_Leukemia" / "training_data").mkdir(parents=True)
    (outer / "__MACOSX" / "C-NMC_Leukemia" / "._training_data").write_bytes(b"x")
    assert locate(root).root == outer / "C-NMC_Leukemia"


def test_merge_step_reports_the_skipped_debris(tmp_path: Path) -> None:
    """The real merge script: summary.json and its log say what was skipped and how much."""
    root = tmp_path / "raw"
    generate(root, _spec("B", False, False))
    added = sum(_add_debris(root).values())
    raw_json = tmp_path / "raw.json"
    raw_json.write_text("{}")
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable, str(REPO / "scripts" / "merge.py"),
            "--raw-json", str(raw_json), "--raw-dir", str(root), "--expected-size", str(SIZE),
            "--index-out", str(out / "index.parquet"), "--summary-out", str(out / "summary.json"),
        ],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    expected = find_debris(root)
    assert summary["skipped_debris"] == expected and expected["count"] == added
    assert f"skipped {added} piece(s) of archive debris, {expected['bytes']} bytes" in proc.stderr
