"""What an experiment group's pixel stores hold: the image size and the offline augmentation.

Each group may override the top-level ``augment`` section: ``image_size`` (a number, or
``"pretrained"``: the input size of the backbones' pretrained configs, when they all agree) and
``augment`` (a partial override of the section, or ``"none"``: no offline augmentation and no
class balancing, the training store holds the resized originals). A :class:`Preprocessing` is
the resolved result, and its readable id keys the stores under ``results/<run>/augment/``, so
groups with the same preprocessing share a store and groups with different ones never meet:

    augment/<split>/<size>px/{val,test}.parquet + _pixels.npy    resized only: depend on the size
    augment/<split>/<size>px/<augmentation>/train_*               e.g. bal10000, none
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from leukopipe.plumbing.errors import UserError
from leukopipe.plumbing.schema import defaults
from leukopipe.workflow.backbone_names import lookup

NO_AUGMENTATION = "none"  # a group's ``augment``: the resized originals, no class balancing
PRETRAINED_SIZE = "pretrained"  # a group's ``image_size``: the backbones' pretrained input size
# the augmentation part of an id: none, or bal<target> with optional seed and transforms parts
AUGMENTATION_PATTERN = r"none|bal\d+(?:-seed\d+)?(?:-t[0-9a-f]{8})?"


class PreprocessingError(UserError, ValueError):
    """A group's preprocessing cannot be resolved; the message is one config-error line."""


def _canonical(value: Any) -> Any:
    """Numbers as floats and tuples as lists, so 25 and 25.0 give the same id."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    raise TypeError(f"unexpected value in augment settings: {value!r}")


def _transforms_json(transforms: dict[str, Any]) -> str:
    return json.dumps(transforms, sort_keys=True)


def _transforms_digest(transforms: dict[str, Any]) -> str:
    return _digest_of(_transforms_json(transforms))


@cache  # Snakemake asks for the ids of every job's preprocessing, many times over
def _digest_of(transforms_json: str) -> str:
    canonical = json.dumps(
        _canonical(json.loads(transforms_json)), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Preprocessing:
    """The resolved preprocessing of a group. ``target_per_class`` None: no augmentation."""

    image_size: int
    target_per_class: int | None = None
    seed: int | None = None
    transforms_json: str | None = None  # JSON (hashable, so the dataclass is too)

    @property
    def balanced(self) -> bool:
        """Whether the training part is augmented offline up to ``target_per_class``."""
        return self.target_per_class is not None

    @property
    def transforms(self) -> dict[str, Any] | None:
        return json.loads(self.transforms_json) if self.transforms_json is not None else None

    @property
    def augmentation_id(self) -> str:
        """``none``, or ``bal<target>`` plus ``-seed<n>`` when the seed is not the schema's
        default and ``-t<hash>`` (8 hex digits of the settings) when the transforms are not."""
        if not self.balanced:
            return NO_AUGMENTATION
        parts = [f"bal{self.target_per_class}"]
        if self.seed != defaults("augment")["seed"]:
            parts.append(f"seed{self.seed}")
        digest = _digest_of(self.transforms_json or "{}")
        if digest != _transforms_digest(defaults("augment.transforms")):
            parts.append(f"t{digest}")
        return "-".join(parts)

    @property
    def id(self) -> str:
        """Readable and unique, e.g. ``224px-bal10000`` or ``224px-none``."""
        return f"{self.image_size}px-{self.augmentation_id}"

    @property
    def size_dir(self) -> str:
        """Folder (below ``augment/<split>/``) of the validation and test stores."""
        return f"{self.image_size}px"

    @property
    def train_dir(self) -> str:
        """Folder (below ``augment/<split>/``) of the training store."""
        return f"{self.size_dir}/{self.augmentation_id}"

    def record(self) -> dict[str, Any]:
        """What a checkpoint and a metrics file record about the preprocessing."""
        return {
            "id": self.id,
            "image_size": self.image_size,
            "augmentation": "offline, class-balanced" if self.balanced else NO_AUGMENTATION,
            "target_per_class": self.target_per_class,
            "seed": self.seed,
            "transforms": self.transforms,
        }


def top_level(config: dict[str, Any]) -> Preprocessing:
    """The top-level ``augment`` section's preprocessing: every group's default."""
    aug = config["augment"]
    return Preprocessing(
        int(aug["image_size"]),
        int(aug["target_per_class"]),
        int(aug["seed"]),
        _transforms_json(aug["transforms"]),
    )


def _where(index: int, group: dict[str, Any], key: str) -> str:
    return f"experiments[{index}].{key} (group {group['name']})"


def pretrained_input_size(backbone: str) -> int | None:
    """Side of the square input of ``backbone``'s pretrained config (``arch`` or ``arch.tag``),
    from timm's cached model list (no torch); None without one."""
    found = lookup(backbone)
    return found.input_size if found is not None else None


def group_image_size(config: dict[str, Any], index: int) -> int:
    """Side in pixels of group ``index``'s images: its ``image_size``, the backbones' pretrained
    input size (``"pretrained"``, when they agree) or ``augment.image_size`` (null)."""
    group = config["experiments"][index]
    size = group["image_size"]
    if size is None:
        return int(config["augment"]["image_size"])
    if size != PRETRAINED_SIZE:
        return int(size)
    sizes = {b: pretrained_input_size(b) for b in group["backbones"]}
    unknown = sorted(b for b, s in sizes.items() if s is None)
    if unknown:
        raise PreprocessingError(
            f'config error: {_where(index, group, "image_size")} = "pretrained" is not allowed:'
            f" {', '.join(unknown)} has no pretrained input size; expected a number of pixels"
        )
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{b}: {s} px" for b, s in sizes.items())
        raise PreprocessingError(
            f'config error: {_where(index, group, "image_size")} = "pretrained" is not allowed:'
            f" the backbones' pretrained input sizes differ ({listing}); expected a number of"
            " pixels that suits them all (e.g. 224)"
        )
    return int(next(iter(sizes.values())))


def group_preprocessing(config: dict[str, Any], index: int) -> Preprocessing:
    """The resolved preprocessing of group ``index`` (its overrides over the top level)."""
    group = config["experiments"][index]
    size = group_image_size(config, index)
    override = group["augment"]
    if override == NO_AUGMENTATION:
        return Preprocessing(size)
    aug = config["augment"]
    override = override or {}
    transforms = {**aug["transforms"], **override.get("transforms", {})}
    return Preprocessing(
        size,
        int(override.get("target_per_class", aug["target_per_class"])),
        int(override.get("seed", aug["seed"])),
        _transforms_json(transforms),
    )


__all__ = [
    "AUGMENTATION_PATTERN",
    "NO_AUGMENTATION",
    "PRETRAINED_SIZE",
    "Preprocessing",
    "PreprocessingError",
    "group_image_size",
    "group_preprocessing",
    "pretrained_input_size",
    "top_level",
]
