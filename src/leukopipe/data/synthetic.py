"""A synthetic stand-in for C-NMC 2019, in the dataset's exact on-disk layout.

The demo, the end-to-end tests and anyone without the 10 GB archive need data that exercises
every code path the real dataset does (both packagings, nesting, the renamed and relabelled
preliminary test, lowercase ``h`` subjects, subject numbers shared by an ALL and a Hem donor)
*and* behaves like it scientifically: a real but imperfect morphological class signal plus a
per-subject staining signature unrelated to the class, so that an image-level split (the same
donors on both sides) scores visibly higher than a subject-disjoint one.

Everything is a pure function of the :class:`SyntheticSpec`. Each image is rendered from its own
seed, derived from (spec.seed, subject, cell index), so the bytes do not depend on the number of
worker processes or on the order in which images are drawn.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from leukopipe.plumbing.atomic import atomic_path, write_json, write_text
from leukopipe.plumbing.errors import InvalidInputError

__all__ = [
    "CLASS_STRENGTH",
    "CLASS_TRAITS",
    "GENERATOR_VERSION",
    "LABELS_CSV_NAME",
    "MARKER_NAME",
    "SUBJECT_TRAITS",
    "SyntheticSpec",
    "generate",
    "spec_from_dict",
]

# Bump whenever the rendered bytes change for an unchanged spec: an existing folder made by an
# older generator is then reported instead of silently reused.
GENERATOR_VERSION = 1
MARKER_NAME = "SYNTHETIC.json"
LABELS_CSV_NAME = "C-NMC_test_prelim_phase_data_labels.csv"
LABELS_CSV_HEADER = "Patient_ID,new_names,labels"
FOLDS = ("fold_0", "fold_1", "fold_2")

# --------------------------------------------------------------------------------------------
# The physics: every number that shapes an image lives in these three tables.
# --------------------------------------------------------------------------------------------


class ClassTrait(NamedTuple):
    """A morphological trait whose mean depends on the class.

    Per cell: value = mid + sign * half_gap * class_signal * subject_strength
    + subject offset (N(0, subject_sd), drawn once per donor, class-blind) + N(0, cell_sd),
    clipped to [lo, hi]; sign is +1 for ALL and -1 for Hem, mid and half_gap come from the
    hem/all columns. ``cell_sd`` is what makes the classes overlap.
    """

    hem: float
    all: float
    cell_sd: float
    subject_sd: float
    lo: float
    hi: float
    meaning: str


CLASS_TRAITS: dict[str, ClassTrait] = {
    "nc_ratio": ClassTrait(
        0.50, 0.66, 0.13, 0.035, 0.22, 0.92,
        "nucleus area / cell area; lymphoblasts have a thin rim of cytoplasm"),
    "nucleus_irregularity": ClassTrait(
        0.080, 0.045, 0.030, 0.010, 0.0, 0.22,
        "amplitude of boundary harmonics 2-6; mature nuclei are indented, blast nuclei round"),
    "chromatin_grain": ClassTrait(
        6.8, 4.2, 2.2, 0.6, 2.0, 13.0,
        "chromatin texture scale in px at 450 px; clumped (Hem) versus fine (ALL)"),
    "chromatin_contrast": ClassTrait(
        0.38, 0.24, 0.12, 0.035, 0.04, 0.80,
        "relative amplitude of chromatin density; coarse clumps versus homogeneous"),
    "nucleoli": ClassTrait(
        0.3, 0.9, 0.3, 0.15, 0.0, 3.0,
        "expected number of pale nucleoli (Poisson mean); prominent in blasts"),
}

# How strongly each donor expresses its class (multiplies half_gap above); uniform ranges.
# Low values for ALL model leukaemic donors whose blasts look close to normal lymphocytes.
CLASS_STRENGTH: dict[str, tuple[float, float]] = {"all": (0.15, 1.35), "hem": (0.55, 1.35)}


class SubjectTrait(NamedTuple):
    """A per-donor signature (staining batch, microscope, cell size), drawn class-blind.

    Per donor: value = neutral + subject_signal * sd * N(0, 1), clipped to [lo, hi].
    """

    neutral: float
    sd: float
    lo: float
    hi: float
    meaning: str


SUBJECT_TRAITS: dict[str, SubjectTrait] = {
    "nucleus_hue": SubjectTrait(
        0.0, 0.22, -0.7, 0.7, "rotation (rad) of the nuclear stain colour about the grey axis"),
    "cytoplasm_hue": SubjectTrait(
        0.0, 0.30, -0.9, 0.9, "rotation (rad) of the cytoplasm stain colour about the grey axis"),
    "log_brightness": SubjectTrait(
        0.0, 0.06, -0.25, 0.0, "log illumination; only dimming, so that 255 is the ceiling"),
    "log_density": SubjectTrait(
        0.0, 0.14, -0.5, 0.5, "log stain density: overall contrast of the cell"),
    "log_cell_scale": SubjectTrait(
        0.0, 0.09, -0.25, 0.25, "log cell radius (magnification, donor's cell size)"),
    "cytoplasm_grain": SubjectTrait(
        6.0, 2.5, 2.0, 14.0, "cytoplasm texture scale in px at 450 px"),
    "cytoplasm_texture": SubjectTrait(
        0.14, 0.08, 0.0, 0.40, "relative amplitude of cytoplasm density texture"),
}

# Stain colours at unit density, as the RGB they render to on a white (255) background.
NUCLEUS_RGB = (95, 55, 140)      # purple chromatin
CYTOPLASM_RGB = (188, 178, 222)  # pale lilac-blue cytoplasm
CELL_RADIUS = 0.20               # mean cell radius as a fraction of the image side
CELL_RADIUS_SD = 0.07            # per-cell log-normal spread of the radius
CELL_STAIN_SD = (0.05, 0.05)     # per-cell sd of log stain density and of stain hue (rad)
CELL_SHAPE_SD = 0.03             # cytoplasm boundary harmonics (cells are nearly round)
CENTRE_JITTER = 0.035            # sd of the cell centre offset, fraction of the image side
PIXEL_NOISE = 1.6                # sd of camera noise in grey levels
_ANGLES = 1024                   # resolution of the boundary radius look-up tables

# Seed tags keep the planning, per-subject and per-image random streams apart.
_TAG_PLAN, _TAG_SUBJECT, _TAG_IMAGE = 101, 202, 303


# --------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines a synthetic dataset; same spec -> byte-identical files."""

    seed: int = 0
    layout: str = "A"  # "A" (archive package) or "B" (mirror, C-NMC_Leukemia/...)
    nested: bool = False  # one extra level: a folder containing a folder of the same name
    labels_csv_up: bool = False  # layout A only: labels CSV one level above the prelim folder
    train_all_subjects: int = 12  # ALL subjects over the three training folds
    train_hem_subjects: int = 8
    prelim_all_subjects: int = 4  # the labelled preliminary test: further, unseen subjects
    prelim_hem_subjects: int = 3
    cells_per_subject: tuple[int, int] = (15, 25)  # inclusive range, drawn per subject
    final_images: int = 20  # unlabelled final-phase test images
    image_size: int = 450
    lowercase_h_fraction: float = 0.25  # share of Hem subjects whose files use a lowercase 'h'
    class_signal: float = 1.0  # 0 = no class signal at all; 1 = default difficulty
    subject_signal: float = 1.0  # strength of the per-subject staining/brightness signature

    def __post_init__(self) -> None:
        # numpy scalars (e.g. from a sweep) would not serialise to SYNTHETIC.json; ints given
        # for the float settings become floats so equal specs also look equal on disk.
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.integer):
                object.__setattr__(self, f.name, int(v))
            elif isinstance(v, tuple):
                object.__setattr__(self, f.name, tuple(
                    int(x) if isinstance(x, np.integer) else x for x in v))
            elif isinstance(v, np.floating) or (f.type == "float" and _is_int(v)):
                object.__setattr__(self, f.name, float(v))
        problems = _spec_problems(self)
        if problems:
            raise InvalidInputError("invalid synthetic dataset spec: " + "; ".join(problems))


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


def _spec_problems(s: SyntheticSpec) -> list[str]:
    p: list[str] = []
    if not _is_int(s.seed) or s.seed < 0:
        p.append(f"seed must be a non-negative integer, got {s.seed!r}")
    if s.layout not in ("A", "B"):
        p.append(f"layout must be 'A' or 'B', got {s.layout!r}")
    for name in ("nested", "labels_csv_up"):
        if not isinstance(getattr(s, name), bool):
            p.append(f"{name} must be true or false, got {getattr(s, name)!r}")
    if s.labels_csv_up is True and s.layout == "B":
        p.append("labels_csv_up applies to layout A only (layout B keeps the CSV in "
                 "validation_data/)")
    # Three folds with both classes each, as in the real data.
    for name, minimum in (("train_all_subjects", 3), ("train_hem_subjects", 3),
                          ("prelim_all_subjects", 1), ("prelim_hem_subjects", 1),
                          ("final_images", 0)):
        v = getattr(s, name)
        if not _is_int(v) or v < minimum:
            p.append(f"{name} must be an integer >= {minimum}, got {v!r}")
    c = s.cells_per_subject
    if (not isinstance(c, tuple) or len(c) != 2 or not all(_is_int(v) for v in c)
            or not 1 <= c[0] <= c[1]):
        p.append(f"cells_per_subject must be two integers lo, hi with 1 <= lo <= hi, got {c!r}")
    if not _is_int(s.image_size) or s.image_size < 32:
        p.append(f"image_size must be an integer >= 32, got {s.image_size!r}")
    if not _is_number(s.lowercase_h_fraction) or not 0 <= s.lowercase_h_fraction <= 1:
        p.append(f"lowercase_h_fraction must be in [0, 1], got {s.lowercase_h_fraction!r}")
    for name in ("class_signal", "subject_signal"):
        v = getattr(s, name)
        if not _is_number(v) or not 0 <= v <= 5:
            p.append(f"{name} must be a number in [0, 5], got {v!r}")
    return p


def spec_from_dict(d: dict[str, Any]) -> SyntheticSpec:
    """Build a validated spec from a config mapping (YAML/JSON lists become tuples).

    Unknown keys are an error, so a typo in the config cannot silently fall back to a default.
    """
    if not isinstance(d, dict):
        raise InvalidInputError(
            f"synthetic dataset settings must be a mapping, got {type(d).__name__}"
        )
    known = {f.name for f in dataclasses.fields(SyntheticSpec)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InvalidInputError(f"unknown synthetic dataset setting(s) {unknown}; "
                         f"known settings: {sorted(known)}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
    return SyntheticSpec(**kwargs)


def _spec_json(spec: SyntheticSpec) -> dict[str, Any]:
    # Round-trip through JSON so that tuples compare equal to the lists read back from disk.
    return json.loads(json.dumps(dataclasses.asdict(spec), sort_keys=True))


# --------------------------------------------------------------------------------------------
# Planning: donors, folds, file names
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Subject:
    label: int  # 1 = ALL, 0 = Hem
    number: int
    prefix: str  # "" for ALL, "H" or "h" for Hem: exactly as it appears in file names
    subset: str  # fold_0..2, prelim or final

    @property
    def name_id(self) -> str:
        return f"{self.prefix}{self.number}"

    @property
    def subject_id(self) -> str:
        # Canonical id: H and h name the same donor; 11 and H11 are different donors.
        return f"{self.prefix.upper()}{self.number}"

    @property
    def cls(self) -> str:
        return "all" if self.label == 1 else "hem"


@dataclass(frozen=True)
class _Look:
    """A donor's rendering parameters: its signature and its class-trait means."""

    label: int
    strength: float
    signature: dict[str, float]
    trait_offsets: dict[str, float]


@dataclass(frozen=True)
class _Job:
    rel_path: str  # where the image goes, relative to root
    label: int
    number: int
    cell_index: int
    look: _Look


def _layout_paths(spec: SyntheticSpec) -> dict[str, str]:
    """Root-relative folders (and the labels CSV) for the spec's layout and nesting."""
    if spec.layout == "A":
        def top(name: str) -> str:
            return f"{name}/{name}" if spec.nested else name

        training = top("C-NMC_training_data")
        prelim = top("C-NMC_test_prelim_phase_data")
        final = top("C-NMC_test_final_phase_data")
        csv_dir = str(Path(prelim).parent) if spec.labels_csv_up else prelim
        labels_csv = LABELS_CSV_NAME if csv_dir == "." else f"{csv_dir}/{LABELS_CSV_NAME}"
    else:
        base = "C-NMC_Leukemia/C-NMC_Leukemia" if spec.nested else "C-NMC_Leukemia"
        training = f"{base}/training_data"
        prelim = f"{base}/validation_data/C-NMC_test_prelim_phase_data"
        final = f"{base}/testing_data/C-NMC_test_final_phase_data"
        labels_csv = f"{base}/validation_data/{LABELS_CSV_NAME}"
    return {"training": training, "prelim": prelim, "final": final, "labels_csv": labels_csv}


def _draw_subjects(spec: SyntheticSpec, rng: np.random.Generator) -> list[_Subject]:
    """Donor numbers, H/h prefixes and subset membership (subject-disjoint everywhere)."""
    mean_cells = sum(spec.cells_per_subject) / 2
    n_final = math.ceil(spec.final_images / mean_cells) if spec.final_images else 0
    # At least two unlabelled donors (one per class) whenever there are two images to share.
    n_final = min(max(n_final, 2), spec.final_images)
    # Unlabelled donors of either class, about the real data's two-thirds ALL.
    final_labels = [1, 0][:n_final] + [int(v) for v in rng.random(max(0, n_final - 2)) < 0.68]
    n_all = spec.train_all_subjects + spec.prelim_all_subjects + final_labels.count(1)
    n_hem = spec.train_hem_subjects + spec.prelim_hem_subjects + final_labels.count(0)
    # ALL and Hem donors share one number range, so that e.g. 11 and H11 both exist.
    top = int(1.4 * max(n_all, n_hem)) + 5
    all_nums = [int(v) + 1 for v in rng.choice(top, size=n_all, replace=False)]
    hem_nums = [int(v) + 1 for v in rng.choice(top, size=n_hem, replace=False)]
    # Guarantee the n / Hn clash inside the training folds (index 0 is a training donor).
    if not set(all_nums[:spec.train_all_subjects]) & set(hem_nums[:spec.train_hem_subjects]):
        if all_nums[0] in hem_nums:
            j = hem_nums.index(all_nums[0])
            hem_nums[0], hem_nums[j] = hem_nums[j], hem_nums[0]
        else:
            hem_nums[0] = all_nums[0]
    n_lower = round(spec.lowercase_h_fraction * n_hem)
    if spec.lowercase_h_fraction > 0 and n_lower == 0:
        n_lower = 1  # a non-zero share must show up even in tiny datasets
    # One lowercase donor is always a training donor, the others fall anywhere.
    lower: set[int] = set()
    if n_lower:
        lower.add(int(rng.integers(spec.train_hem_subjects)))
        rest = [i for i in range(n_hem) if i not in lower]
        lower.update(int(i) for i in rng.choice(rest, size=n_lower - 1, replace=False))

    def subsets(n_train: int, n_prelim: int, cls_offset: int) -> list[str]:
        # Round-robin over folds, offset per class so that fold sizes stay balanced.
        train = [FOLDS[(i + cls_offset) % 3] for i in range(n_train)]
        return train + ["prelim"] * n_prelim

    all_subsets = subsets(spec.train_all_subjects, spec.prelim_all_subjects, 0)
    all_subsets += ["final"] * (n_all - len(all_subsets))
    hem_subsets = subsets(spec.train_hem_subjects, spec.prelim_hem_subjects, 1)
    hem_subsets += ["final"] * (n_hem - len(hem_subsets))
    subjects = [_Subject(1, n, "", s) for n, s in zip(all_nums, all_subsets, strict=True)]
    subjects += [
        _Subject(0, n, "h" if i in lower else "H", s)
        for i, (n, s) in enumerate(zip(hem_nums, hem_subsets, strict=True))
    ]
    return subjects


def _cell_names(subject: _Subject, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` original file names: several cells per image number, gaps between images."""
    names: list[str] = []
    image = int(rng.integers(1, 6))
    while len(names) < n:
        for cell in range(1, int(rng.integers(1, 4)) + 1):
            if len(names) < n:
                names.append(f"UID_{subject.name_id}_{image}_{cell}_{subject.cls}.bmp")
        image += int(rng.integers(1, 4))
    return names


def _draw_look(spec: SyntheticSpec, subject: _Subject) -> _Look:
    """A donor's signature and trait offsets: class-blind draws from the donor's own stream."""
    rng = np.random.default_rng(
        np.random.SeedSequence([spec.seed, _TAG_SUBJECT, subject.label, subject.number]))
    signature = {
        name: float(np.clip(t.neutral + spec.subject_signal * t.sd * rng.standard_normal(),
                            t.lo, t.hi))
        for name, t in SUBJECT_TRAITS.items()
    }
    offsets = {name: float(spec.subject_signal * t.subject_sd * rng.standard_normal())
               for name, t in CLASS_TRAITS.items()}
    lo, hi = CLASS_STRENGTH[subject.cls]
    strength = float(rng.uniform(lo, hi))  # drawn last: the signature cannot depend on class
    return _Look(subject.label, strength, signature, offsets)


class _Plan(NamedTuple):
    subjects: list[_Subject]
    jobs: list[_Job]
    csv_rows: list[tuple[str, str, int]]  # (original name, new name, label) of prelim images
    paths: dict[str, str]
    counts: dict[_Subject, int]  # images per donor


def _plan(spec: SyntheticSpec) -> _Plan:
    """All donors, every image to render and where it goes, and the prelim labels."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, _TAG_PLAN]))
    paths = _layout_paths(spec)
    subjects = _draw_subjects(spec, rng)
    lo, hi = spec.cells_per_subject
    n_final_subjects = sum(s.subset == "final" for s in subjects)
    final_counts = [spec.final_images // n_final_subjects + (i < spec.final_images
                                                              % n_final_subjects)
                    for i in range(n_final_subjects)] if n_final_subjects else []
    jobs: list[_Job] = []
    prelim: list[tuple[str, _Job]] = []
    final: list[_Job] = []
    counts: dict[_Subject, int] = {}
    for subject in subjects:
        look = _draw_look(spec, subject)
        n = final_counts.pop(0) if subject.subset == "final" else int(rng.integers(lo, hi + 1))
        counts[subject] = n
        for index, name in enumerate(_cell_names(subject, n, rng)):
            if subject.subset in FOLDS:
                rel = f"{paths['training']}/{subject.subset}/{subject.cls}/{name}"
                jobs.append(_Job(rel, subject.label, subject.number, index, look))
            else:
                job = _Job(name, subject.label, subject.number, index, look)
                if subject.subset == "prelim":
                    prelim.append((name, job))
                else:
                    final.append(job)
    # The challenge renamed test images to 1.bmp ... N.bmp in a shuffled order.
    rows: list[tuple[str, str, int]] = []
    for k, i in enumerate(rng.permutation(len(prelim)), start=1):
        name, job = prelim[i]
        jobs.append(dataclasses.replace(job, rel_path=f"{paths['prelim']}/{k}.bmp"))
        rows.append((name, f"{k}.bmp", job.label))
    for k, i in enumerate(rng.permutation(len(final)), start=1):
        jobs.append(dataclasses.replace(final[i], rel_path=f"{paths['final']}/{k}.bmp"))
    return _Plan(subjects, jobs, rows, paths, counts)


# --------------------------------------------------------------------------------------------
# Rendering one cell
# --------------------------------------------------------------------------------------------


def _od(rgb: tuple[int, int, int]) -> np.ndarray:
    """Optical density of a stain that renders to ``rgb`` on white (Beer-Lambert)."""
    return -np.log(np.asarray(rgb, dtype=np.float64) / 255.0)


def _hue_rotate(v: np.ndarray, angle: float) -> np.ndarray:
    """Rotate a colour vector about the grey axis: a hue shift that keeps its density."""
    k = np.ones(3) / math.sqrt(3.0)
    c, s = math.cos(angle), math.sin(angle)
    out = v * c + np.cross(k, v) * s + k * float(k @ v) * (1 - c)
    return np.maximum(out, 0.01)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Zero-mean, unit-sd noise with features about ``scale`` px wide (bicubic-upsampled)."""
    gh, gw = max(2, round(h / scale) + 1), max(2, round(w / scale) + 1)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    arr = np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC))
    return (arr - arr.mean()) / (arr.std() + 1e-6)


def _boundary(rng: np.random.Generator, radius: float, amplitude: float,
              orders: range) -> np.ndarray:
    """Boundary radius at ``_ANGLES`` angles: a circle perturbed by low-order harmonics."""
    theta = np.linspace(-math.pi, math.pi, _ANGLES, endpoint=False)
    r = np.ones(_ANGLES)
    for k in orders:
        r += amplitude * rng.standard_normal() / k**0.5 * np.cos(k * theta
                                                                  + rng.uniform(0, 2 * math.pi))
    return radius * np.clip(r, 0.55, 1.6)


def _angle_index(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    idx = ((np.arctan2(dy, dx) + math.pi) * (_ANGLES / (2 * math.pi))).astype(np.intp)
    return np.minimum(idx, _ANGLES - 1)


def _cell_traits(look: _Look, spec_class_signal: float,
                 rng: np.random.Generator) -> dict[str, float]:
    sign = 1.0 if look.label == 1 else -1.0
    out = {}
    for name, t in CLASS_TRAITS.items():
        mid, half = (t.hem + t.all) / 2, (t.all - t.hem) / 2
        v = (mid + sign * half * spec_class_signal * look.strength + look.trait_offsets[name]
             + t.cell_sd * rng.standard_normal())
        out[name] = float(np.clip(v, t.lo, t.hi))
    return out


def _render_cell(size: int, look: _Look, class_signal: float,
                rng: np.random.Generator) -> np.ndarray:
    """One segmented cell on exact black, as a (size, size, 3) uint8 array."""
    sig = look.signature
    px = size / 450.0  # trait lengths are given at the real images' 450 px
    traits = _cell_traits(look, class_signal, rng)

    # Geometry: a near-round cell, an eccentric nucleus whose area is nc_ratio of the cell's.
    radius = size * CELL_RADIUS * math.exp(sig["log_cell_scale"]
                                           + CELL_RADIUS_SD * rng.standard_normal())
    cell_r = _boundary(rng, radius, CELL_SHAPE_SD, range(2, 5))
    nuc_radius = radius * math.sqrt(traits["nc_ratio"])
    nuc_r = _boundary(rng, nuc_radius, traits["nucleus_irregularity"], range(2, 7))
    reach = float(cell_r.max())
    if reach > 0.46 * size:  # keep the whole cell inside the frame
        shrink = 0.46 * size / reach
        cell_r, nuc_r, radius, nuc_radius, reach = (cell_r * shrink, nuc_r * shrink,
                                                    radius * shrink, nuc_radius * shrink,
                                                    0.46 * size)
    limit = size / 2 - reach - 2
    cx, cy = (size / 2 + float(np.clip(CENTRE_JITTER * size * rng.standard_normal(),
                                       -limit, limit)) for _ in range(2))
    off = max(0.0, radius - nuc_radius) * rng.uniform(0.0, 0.6)
    phi = rng.uniform(0, 2 * math.pi)
    nx, ny = cx + off * math.cos(phi), cy + off * math.sin(phi)

    # Work on the cell's bounding box only: the rest of the frame stays exactly 0.
    x0, x1 = max(0, int(cx - reach) - 2), min(size, int(cx + reach) + 3)
    y0, y1 = max(0, int(cy - reach) - 2), min(size, int(cy + reach) + 3)
    h, w = y1 - y0, x1 - x0
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    r = np.sqrt(dx * dx + dy * dy)
    edge = cell_r.astype(np.float32)[_angle_index(dx, dy)] - r  # >0 inside the cell
    inside = edge >= 0
    ndx, ndy = xx - nx, yy - ny
    nedge = nuc_r.astype(np.float32)[_angle_index(ndx, ndy)] - np.sqrt(ndx * ndx + ndy * ndy)
    nucleus = np.clip(nedge / 1.2 + 0.5, 0.0, 1.0) * np.clip(edge / 1.2, 0.0, 1.0)

    # Stain concentrations: chromatin texture and nucleoli in the nucleus, textured cytoplasm
    # with a slightly denser rim at the membrane.
    grain = traits["chromatin_grain"] * px
    chromatin = np.tanh(1.4 * _smooth_noise(rng, h, w, max(grain, 1.0)))
    fine = _smooth_noise(rng, h, w, max(1.6 * px, 1.0))
    c_nuc = 1.0 + traits["chromatin_contrast"] * chromatin + 0.06 * fine
    for _ in range(int(rng.poisson(traits["nucleoli"]))):
        a, d = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.55) * nuc_radius
        s = nuc_radius * rng.uniform(0.08, 0.15)
        blob = np.exp(-((xx - nx - d * math.cos(a)) ** 2 + (yy - ny - d * math.sin(a)) ** 2)
                      / (2 * s * s))
        c_nuc -= 0.55 * blob
    c_nuc *= nucleus
    cyto_tex = _smooth_noise(rng, h, w, max(sig["cytoplasm_grain"] * px, 1.0))
    c_cyto = (1.0 + sig["cytoplasm_texture"] * cyto_tex
              + 0.35 * np.exp(-np.maximum(edge, 0) / max(3.0 * px, 0.7)))

    # Colour: the donor's stain batch, varied a little from cell to cell (smear thickness).
    d_sd, h_sd = CELL_STAIN_SD
    hue = h_sd * rng.standard_normal()
    v_nuc = _hue_rotate(_od(NUCLEUS_RGB), sig["nucleus_hue"] + hue).astype(np.float32)
    v_cyto = _hue_rotate(_od(CYTOPLASM_RGB), sig["cytoplasm_hue"] + hue).astype(np.float32)
    density = math.exp(sig["log_density"] + d_sd * rng.standard_normal())
    od = density * (c_nuc[..., None] * v_nuc + c_cyto[..., None] * v_cyto)
    light = 255.0 * math.exp(sig["log_brightness"])
    rgb = light * np.exp(-np.maximum(od, 0.0))
    rgb += PIXEL_NOISE * rng.standard_normal((h, w, 1), dtype=np.float32)
    # Cell pixels are never exactly 0, so "non-black" means "cell" to any reader.
    rgb = np.clip(np.rint(rgb), 1, 255).astype(np.uint8)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    out[y0:y1, x0:x1][inside] = rgb[inside]
    return out


def _render_and_write(root: str, size: int, seed: int, class_signal: float,
                      job: _Job) -> tuple[str, str]:
    """Render one job, write it atomically and return (relative path, sha256 of the bytes)."""
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, _TAG_IMAGE, job.label, job.number, job.cell_index]))
    pixels = _render_cell(size, job.look, class_signal, rng)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="BMP")
    data = buf.getvalue()
    with atomic_path(Path(root) / job.rel_path) as tmp:
        tmp.write_bytes(data)
    return job.rel_path, hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _check_root(root: Path, spec: SyntheticSpec) -> dict[str, Any] | None:
    """The stored summary when ``root`` already holds this very dataset; None when empty."""
    if root.exists() and not root.is_dir():
        raise InvalidInputError(f"{root} exists and is not a folder; choose another output folder")
    marker = root / MARKER_NAME
    if marker.is_file():
        try:
            stored = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InvalidInputError(f"{marker} is unreadable ({err}); delete the folder {root} "
                             "or choose another one") from err
        if (stored.get("spec") == _spec_json(spec)
                and stored.get("generator_version") == GENERATOR_VERSION):
            return stored
        raise InvalidInputError(
            f"{root} already holds a synthetic dataset made with different settings "
            f"(stored spec {stored.get('spec')}, generator version "
            f"{stored.get('generator_version')}; requested {_spec_json(spec)}, version "
            f"{GENERATOR_VERSION}). Choose another folder, or delete {root} yourself to "
            "regenerate it; nothing was changed.")
    if root.is_dir() and any(root.iterdir()):
        raise InvalidInputError(
            f"{root} is not empty but has no {MARKER_NAME}: either an earlier generation was "
            "interrupted or the folder holds other data. Choose another folder, or delete "
            f"{root} yourself if it is a partial synthetic dataset; nothing was changed.")
    return None


def generate(root: Path, spec: SyntheticSpec, workers: int = 1) -> dict[str, Any]:
    """Write the synthetic dataset under ``root`` and return its summary.

    The summary (spec, layout paths, counts per subset/class/subject, content fingerprint) is
    also written to ``root/SYNTHETIC.json``, last, so that its presence means "complete".
    An existing folder with the same spec is returned as is; anything else non-empty raises
    ``ValueError``. ``workers`` > 1 renders in parallel with identical results.
    """
    root = Path(root)
    if not _is_int(workers) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    stored = _check_root(root, spec)
    if stored is not None:
        return stored

    subjects, jobs, rows, paths, counts = _plan(spec)
    root.mkdir(parents=True, exist_ok=True)
    # Every folder of the layout exists even when empty (e.g. final_images = 0).
    for fold in FOLDS:
        for cls in ("all", "hem"):
            (root / paths["training"] / fold / cls).mkdir(parents=True, exist_ok=True)
    (root / paths["prelim"]).mkdir(parents=True, exist_ok=True)
    (root / paths["final"]).mkdir(parents=True, exist_ok=True)

    work = partial(_render_and_write, str(root), spec.image_size, spec.seed, spec.class_signal)
    if workers == 1:
        digests = [work(job) for job in jobs]
    else:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(workers) as pool:
            digests = list(pool.imap(work, jobs, chunksize=8))

    csv_text = LABELS_CSV_HEADER + "\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)
    write_text(root / paths["labels_csv"], csv_text)
    digests.append((paths["labels_csv"], hashlib.sha256(csv_text.encode()).hexdigest()))
    fingerprint = hashlib.sha256(
        "".join(f"{p}\t{d}\n" for p, d in sorted(digests)).encode()).hexdigest()

    summary = _summary(spec, subjects, jobs, counts, paths, fingerprint, len(digests))
    write_json(root / MARKER_NAME, summary)
    return json.loads(json.dumps(summary, sort_keys=True))


def _summary(spec: SyntheticSpec, subjects: list[_Subject], jobs: list[_Job],
             counts: dict[_Subject, int], paths: dict[str, str], fingerprint: str,
             n_files: int) -> dict[str, Any]:
    per_subset: dict[str, dict[str, int]] = {
        s: {"all": 0, "hem": 0} for s in (*FOLDS, "prelim", "final")}
    for subject in subjects:
        per_subset[subject.subset][subject.cls] += counts[subject]
    labelled = sum(v["all"] + v["hem"] for k, v in per_subset.items() if k != "final")
    if labelled + spec.final_images != len(jobs):  # a planning bug, never bad input
        raise RuntimeError(f"planned {len(jobs)} images but counted {labelled} labelled + "
                           f"{spec.final_images} unlabelled")
    looks = {(j.label, j.number): j.look for j in jobs}
    return {
        "generator": "leukopipe.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "spec": _spec_json(spec),
        "layout": spec.layout,
        "nested": spec.nested,
        "paths": paths,
        "counts": {**per_subset,
                   "total": {"labelled": labelled, "unlabelled": spec.final_images,
                             "images": len(jobs)}},
        "subjects": [
            {"subject": s.subject_id, "name_prefix": s.name_id, "label": s.label,
             "class": s.cls, "subset": s.subset, "images": counts[s],
             "class_strength": round(looks[(s.label, s.number)].strength, 4)
             if counts[s] else None}
            for s in sorted(subjects, key=lambda s: (s.subset, -s.label, s.number))
        ],
        "files": n_files,
        "fingerprint": fingerprint,
    }


def make_synthetic_step(flags: dict[str, Any]) -> dict[str, Any]:
    """The make_synthetic command: ``flags`` holds ``root``, ``workers`` and one entry per
    SyntheticSpec field (a range as a list or a tuple). Writes the dataset and prints what it
    wrote (root, counts, fingerprint, seconds) as JSON, which it also returns."""
    spec = SyntheticSpec(
        **{
            f.name: tuple(v) if isinstance(v := flags[f.name], list) else v
            for f in dataclasses.fields(SyntheticSpec)
        }
    )
    start = time.monotonic()
    summary = generate(flags["root"], spec, workers=flags["workers"])
    shown = {"root": str(flags["root"]), "counts": summary["counts"],
             "fingerprint": summary["fingerprint"],
             "seconds": round(time.monotonic() - start, 1)}
    print(json.dumps(shown, indent=2))
    return shown
