"""Find the parts of a C-NMC 2019 copy on disk, whichever packaging it came in.

Layout A is the archive package (``C-NMC_training_data/``, ``C-NMC_test_prelim_phase_data/``,
``C-NMC_test_final_phase_data/``); layout B is the widely used mirror (``C-NMC_Leukemia/``
with ``training_data/``, ``validation_data/``, ``testing_data/``). Some copies add one level
of nesting: a folder that holds a folder of the same name, alone or beside loose files such as
the preliminary test's labels CSV (``C-NMC_test_prelim_phase_data/C-NMC_test_prelim_phase_data/``
with the CSV in the outer folder, as mirrors ship it). All are recognised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from leukopipe.data.debris import is_debris
from leukopipe.plumbing.errors import UserError

LABELS_CSV = "C-NMC_test_prelim_phase_data_labels.csv"
PRELIM = "C-NMC_test_prelim_phase_data"
FINAL = "C-NMC_test_final_phase_data"
# a folder holding any of these beside a same-named folder is a data folder, not a wrapper
IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


class RawDataError(UserError, ValueError):
    """The raw data on disk is not usable; the message names the file or folder."""


@dataclass
class RawLayout:
    """Where each part of the dataset lives."""

    root: Path
    layout: str  # "A" or "B"
    folds: dict[str, Path] = field(default_factory=dict)  # fold_0 -> folder holding all/, hem/
    prelim_dir: Path | None = None
    prelim_labels: Path | None = None
    final_dir: Path | None = None

    def describe(self) -> dict[str, object]:
        """JSON-able description (paths as strings)."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            "folds": {k: str(v) for k, v in self.folds.items()},
            "prelim_dir": str(self.prelim_dir) if self.prelim_dir else None,
            "prelim_labels": str(self.prelim_labels) if self.prelim_labels else None,
            "final_dir": str(self.final_dir) if self.final_dir else None,
        }


def unnest(path: Path) -> Path:
    """Descend through folders that hold a folder of the same name and no other folder or image.

    Loose non-image files beside the inner folder (a labels CSV, a README) do not stop the
    descent, and neither does archive debris (``__MACOSX/``, ``._*``, ...); ``_find_csv`` looks
    for the CSV in the outer folders too.
    """
    while path.is_dir():
        children = [c for c in _entries(path) if not c.name.startswith(".")]
        inner = path / path.name
        others = [c for c in children if c != inner]
        if inner.is_dir() and not any(c.is_dir() or _is_image(c) for c in others):
            path = inner
        else:
            break
    return path


def _entries(folder: Path) -> list[Path]:
    """The folder's entries that are not archive debris (``data/debris.py``)."""
    return [c for c in folder.iterdir() if not is_debris(c)]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _child(base: Path, name: str) -> Path | None:
    p = base / name
    return unnest(p) if p.is_dir() else None


def _find_csv(*folders: Path | None) -> Path | None:
    for folder in folders:
        if folder is None or not folder.is_dir():
            continue
        exact = folder / LABELS_CSV
        if exact.is_file():
            return exact
    for folder in folders:
        if folder is None or not folder.is_dir():
            continue
        found = sorted(p for p in folder.glob("*labels*.csv") if not is_debris(p))
        if found:
            return found[0]
    return None


def _up_to(folder: Path | None, top: Path) -> list[Path]:
    """``folder`` and its parents up to ``top`` (where a nested folder's CSV may sit)."""
    if folder is None:
        return [top]
    chain = [folder, *folder.parents]
    return chain[: chain.index(top) + 1] if top in chain else [folder, top]


def _folds(training: Path) -> dict[str, Path]:
    folds = {
        p.name: unnest(p)
        for p in sorted(training.glob("fold_*"))
        if p.is_dir() and not is_debris(p)
    }
    if not folds:
        raise RawDataError(
            f"{training}: no fold_* folders inside; a C-NMC training folder holds fold_0, fold_1,"
            " fold_2, each with all/ and hem/ (re-extract the archive or fix data.raw_dir)"
        )
    for name, fold in folds.items():
        for cls in ("all", "hem"):
            if not (fold / cls).is_dir():
                raise RawDataError(
                    f"{fold}: missing the {cls}/ folder of {name}; each training fold must hold"
                    " all/ and hem/ (the copy looks incomplete: re-extract the archive)"
                )
    return folds


def _descend_to_dataset(raw_dir: Path) -> Path:
    """Allow raw_dir to be one or two folders above the dataset's top level."""
    base = unnest(raw_dir)
    markers = ("C-NMC_training_data", "C-NMC_Leukemia", "training_data")
    for _ in range(2):
        if any((base / m).is_dir() for m in markers) or base.name == "C-NMC_Leukemia":
            return base
        subdirs = [c for c in _entries(base) if c.is_dir() and not c.name.startswith(".")]
        if len(subdirs) != 1:
            break
        base = unnest(subdirs[0])
    return base


def locate(raw_dir: str | Path) -> RawLayout:
    """Recognise layout A, layout B or a nested variant under ``raw_dir``.

    Raises RawDataError naming the folder and what was expected when nothing fits.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise RawDataError(
            f"{raw_dir}: raw-data folder does not exist; download C-NMC 2019 (TCIA, DOI"
            " 10.7937/tcia.2019.dc64i46r) and extract it there, or set data.raw_dir to your copy"
        )
    base = _descend_to_dataset(raw_dir)

    training_a = _child(base, "C-NMC_training_data")
    if training_a is not None:
        prelim = _child(base, PRELIM)
        csv = _find_csv(*_up_to(prelim, base))
        return RawLayout(base, "A", _folds(training_a), prelim, csv, _child(base, FINAL))

    leuk = base if base.name == "C-NMC_Leukemia" else _child(base, "C-NMC_Leukemia")
    if leuk is not None or (base / "training_data").is_dir():
        leuk = leuk or base
        training_b = _child(leuk, "training_data")
        if training_b is None:
            raise RawDataError(
                f"{leuk}: layout B copy without training_data/ (expected"
                " C-NMC_Leukemia/training_data/fold_*/{all,hem}); re-extract the archive"
            )
        validation = _child(leuk, "validation_data")
        prelim = _child(validation, PRELIM) if validation else None
        csv = _find_csv(*_up_to(prelim, validation)) if validation else None
        testing = _child(leuk, "testing_data")
        final = _child(testing, FINAL) if testing else None
        return RawLayout(leuk, "B", _folds(training_b), prelim, csv, final)

    raise RawDataError(
        f"{raw_dir}: no C-NMC 2019 copy found (looked for C-NMC_training_data/ (layout A) and"
        " C-NMC_Leukemia/training_data/ (layout B), also one nesting level deeper); point"
        " data.raw_dir at the extracted archive"
    )
