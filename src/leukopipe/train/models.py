"""Backbones and fine-tuning strategies (frozen / partial / full) for any timm model.

Stages are found generically from timm's own coarse ``group_matcher`` (the grouping timm uses
for layer-wise learning-rate decay), so "the deepest N stages" means the same thing for
ResNets (``layer1..4``), EfficientNets (``blocks.0..6``), ConvNeXts (``stages.0..3``) and any
other timm model without a per-model table of layer names. For a vision transformer timm's
coarse unit is the block (``blocks.0..11``), so there ``partial_stages: N`` trains the N deepest
blocks, the final norm and the head.

Frozen BatchNorms stay in eval mode (:func:`set_train_mode`) rather than being swapped for
timm's ``FrozenBatchNorm2d`` (``timm.utils.freeze``): the outputs are the same, but the swap
changes module types and drops ``num_batches_tracked`` from checkpoints, and covers only 2-D
BatchNorms (see tests/train/test_models.py). Layer-wise learning-rate decay is timm's own
``param_groups_layer_decay`` (:func:`optimizer_param_groups`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

import timm
import torch
from timm.optim import param_groups_layer_decay
from torch import nn

from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.train.dinobloom_names import TRAINED_SIZE, architecture, is_dinobloom
from leukopipe.train.patch_grid import patch_grid_problem, patch_size

Strategy = Literal["frozen", "partial", "full"]
STRATEGIES: tuple[str, ...] = ("frozen", "partial", "full")

# timm's fallback normalisation for models without a pretrained config.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# Attribute on the model that lists the BatchNorm modules frozen by apply_strategy.
_FROZEN_NORMS_ATTR = "leukopipe_frozen_norms"


def _check_backbone(backbone: str) -> None:
    if not timm.is_model(architecture(backbone)):
        raise InvalidInputError(
            f"unknown backbone {backbone!r}: not a timm model name "
            "(see timm.list_models(), e.g. 'resnet50' or 'efficientnet_b0')"
        )


def build_model(
    backbone: str, num_classes: int = 2, image_size: int | None = None
) -> nn.Module:
    """A timm ``backbone`` with a freshly initialised ``num_classes`` head (no download).

    ``image_size`` is the side of the images it will see. Models whose pretrained config says
    their input size is fixed (vision transformers: one position embedding per patch) are built
    for it, and it must be a whole number of patches; other models take any size.
    """
    _check_backbone(backbone)
    arch = architecture(backbone)  # DinoBloom: timm's DINOv2 ViT of its size
    cfg = timm.models.get_pretrained_cfg(arch)
    sized = image_size is not None and cfg is not None and bool(cfg.fixed_input_size)
    kwargs = {"img_size": image_size} if sized else {}
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    if image_size is not None:
        _check_patch_grid(model, backbone, image_size)
    return model


def _check_patch_grid(model: nn.Module, backbone: str, image_size: int) -> None:
    # timm silently crops an image that is not a whole number of patches; refuse instead.
    problem = patch_grid_problem(backbone, image_size, patch_size(model))
    if problem is not None:
        raise InvalidInputError(problem)


def input_size(backbone: str, override: int | None = None) -> int:
    """Side in pixels of the square images ``backbone`` trains on.

    ``override`` when given (e.g. 224 for a DINOv2 ViT, whose pretrained config says 518), else
    the input size of timm's pretrained config; for a vision transformer it must be a whole
    number of patches (224 = 16 x 14 for patch-14 DINOv2, 14 x 16 for ViT-S/16).
    """
    _check_backbone(backbone)
    if override is None and is_dinobloom(backbone):
        override = TRAINED_SIZE  # its DINOv2 config says 518; DinoBloom was trained at 224
    if override is None:
        cfg = timm.models.get_pretrained_cfg(backbone)
        override = int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224
    if override < 1:
        raise InvalidInputError(f"image size must be >= 1 px, got {override}")
    with torch.device("meta"):  # no memory, no initialisation: just the patch grid
        build_model(backbone, image_size=override)
    return override


def normalisation(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the backbone's ImageNet pretraining, from timm's registry (offline).

    DinoBloom: its DINOv2 architecture's, ImageNet's, which is also what DinoBloom's own
    evaluation code normalises with."""
    _check_backbone(backbone)
    cfg = timm.models.get_pretrained_cfg(architecture(backbone))
    if cfg is None or cfg.mean is None or cfg.std is None:
        return _IMAGENET_MEAN, _IMAGENET_STD
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


def classifier_names(model: nn.Module) -> tuple[str, ...]:
    """Module names of the classification head (timm's ``pretrained_cfg['classifier']``)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier")
    if isinstance(names, str):
        names = (names,)
    if names:
        present = tuple(n for n in names if _has_submodule(model, n))
        if present:
            return present
    # Fallback: find the module timm reports as the classifier by identity.
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    for name, module in model.named_modules():
        if head is not None and module is head and name:
            return (name,)
    raise ValueError(f"cannot locate the classifier head of {type(model).__name__}")


def _has_submodule(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def is_head_key(key: str, heads: tuple[str, ...]) -> bool:
    """Whether a state-dict key belongs to one of the head modules."""
    return any(key == h or key.startswith(h + ".") for h in heads)


def _tensor_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]


_Matcher = list[tuple[re.Pattern[str], int, tuple[int, ...] | None]]


def _compiled_matcher(model: nn.Module) -> _Matcher:
    """timm's coarse group matcher as (regex, group ordinal, suffix) triples, in match order."""
    try:
        matcher = model.group_matcher(coarse=True)
    except (AttributeError, NotImplementedError) as exc:
        raise InvalidInputError(
            f"{type(model).__name__} has no timm group_matcher, so its stages are unknown; "
            "use strategy 'frozen' or 'full' for this backbone"
        ) from exc
    if not isinstance(matcher, dict):
        raise InvalidInputError(
            f"{type(model).__name__} defines its stages with a function, not regexes; "
            "use strategy 'frozen' or 'full' for this backbone"
        )
    compiled = []
    for ordinal, spec in enumerate(matcher.values()):
        if spec is None:
            continue
        specs = spec if isinstance(spec, (list, tuple)) else [(spec, None)]
        for regex, suffix in specs:
            compiled.append((re.compile(regex), ordinal, suffix))
    return compiled


def _ordinal(name: str, compiled: _Matcher) -> tuple[tuple[float, ...], tuple[float, float] | None]:
    """Depth ordinal of a tensor name (as timm sorts groups) and its stage key, if any.

    The stage key is (group ordinal, first captured index): every tensor whose regex captured a
    stage index belongs to that stage. Tensors without a capture (stem, conv_head/bn2, norm,
    head: unmatched names sort last, as in timm) sit before or after the stages by ordinal.
    """
    for regex, ordinal, suffix in compiled:
        match = regex.match(name)
        if match:
            captures = tuple(float(g) for g in match.groups() if g is not None)
            key = (float(ordinal), *captures, *(suffix or ()))
            stage = (float(ordinal), captures[0]) if captures and suffix is None else None
            return key, stage
    return (float("inf"),), None


def stages(model: nn.Module) -> list[tuple[str, list[str]]]:
    """The model's stages, shallow to deep, as (name, tensor names) from timm's group matcher."""
    compiled = _compiled_matcher(model)
    by_stage: dict[tuple[float, float], list[str]] = {}
    for name in _tensor_names(model):
        _, stage = _ordinal(name, compiled)
        if stage is not None:
            by_stage.setdefault(stage, []).append(name)
    if not by_stage:
        raise InvalidInputError(
            f"timm's group matcher of {type(model).__name__} yields no stages; "
            "use strategy 'frozen' or 'full' for this backbone"
        )
    all_names = _tensor_names(model)
    return [
        ("+".join(covering_modules(set(by_stage[key]), all_names)), by_stage[key])
        for key in sorted(by_stage)
    ]


def covering_modules(selected: set[str], all_names: list[str]) -> list[str]:
    """Shortest module paths whose tensors are all in ``selected`` (readable summary)."""
    total: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    for name in all_names:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            total[prefix] += 1
            inside[prefix] += name in selected
    out: list[str] = []
    for name in all_names:
        if name not in selected:
            continue
        parts = name.split(".")
        cover = name
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if inside[prefix] == total[prefix]:
                cover = prefix
                break
        if cover not in out:
            out.append(cover)
    return out


@dataclass(frozen=True)
class StrategySummary:
    """What apply_strategy made trainable."""

    strategy: str
    partial_stages: int | None
    trainable_params: int
    total_params: int
    trainable_modules: tuple[str, ...]
    stages: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_strategy(model: nn.Module, strategy: str, partial_stages: int = 2) -> StrategySummary:
    """Set ``requires_grad`` for a fine-tuning strategy and record which BatchNorms are frozen.

    frozen: only the head trains; partial: the deepest ``partial_stages`` stages plus every
    layer after them (e.g. EfficientNet's conv_head/bn2) plus the head; full: everything.
    Frozen BatchNorm layers must also keep their running statistics: call
    :func:`set_train_mode` instead of ``model.train()``.
    """
    if strategy not in STRATEGIES:
        raise InvalidInputError(
            f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}"
        )
    heads = classifier_names(model)
    names = _tensor_names(model)
    try:
        stage_list = stages(model)
    except ValueError:
        if strategy == "partial":
            raise
        stage_list = []

    if strategy == "full":
        trainable = set(names)
    elif strategy == "frozen":
        trainable = {n for n in names if is_head_key(n, heads)}
    else:
        if not 1 <= partial_stages <= len(stage_list):
            listing = ", ".join(s for s, _ in stage_list)
            raise InvalidInputError(
                f"partial_stages={partial_stages} but {type(model).__name__} has "
                f"{len(stage_list)} stages ({listing}); choose 1..{len(stage_list)}"
            )
        compiled = _compiled_matcher(model)
        first_deep = stage_list[-partial_stages][1][0]
        threshold = _ordinal(first_deep, compiled)[0][:2]
        trainable = {
            n for n in names if _ordinal(n, compiled)[0] >= threshold or is_head_key(n, heads)
        }

    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
    frozen_norms = tuple(
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        and any(
            f"{name}.{b}" not in trainable for b, _ in module.named_buffers(recurse=False)
        )
    )
    setattr(model, _FROZEN_NORMS_ATTR, frozen_norms)

    params = dict(model.named_parameters())
    return StrategySummary(
        strategy=strategy,
        partial_stages=partial_stages if strategy == "partial" else None,
        trainable_params=sum(p.numel() for p in params.values() if p.requires_grad),
        total_params=sum(p.numel() for p in params.values()),
        trainable_modules=tuple(covering_modules(trainable, names)),
        stages=tuple(s for s, _ in stage_list),
    )


def set_train_mode(model: nn.Module, mode: bool = True) -> nn.Module:
    """``model.train(mode)``, but BatchNorms frozen by apply_strategy stay in eval mode.

    Without this a "frozen" backbone would still drift: BatchNorm updates its running
    statistics in train mode even when its weights get no gradient.
    """
    model.train(mode)
    if mode:
        for name in getattr(model, _FROZEN_NORMS_ATTR, ()):
            model.get_submodule(name).eval()
    return model


def trainable_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """Parameters that require gradients (what the optimiser should see)."""
    return [p for p in model.parameters() if p.requires_grad]


def optimizer_param_groups(
    model: nn.Module, lr: float, weight_decay: float = 0.0, layer_decay: float | None = None
) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: every trainable parameter at ``lr``.

    With ``layer_decay`` d (0 < d < 1) the learning rate decays layer by layer from the head
    down: timm's ``param_groups_layer_decay`` over timm's fine grouping (a ViT block, a CNN
    block), the head at ``lr``, each layer below at d times the one above, the stem lowest.
    ``None`` or 1.0 is off. ``weight_decay`` applies to every parameter either way (as Adam's
    L2 does without decay); each group keeps timm's ``lr_scale`` next to its ``lr``.
    """
    params = trainable_parameters(model)
    if layer_decay is None or layer_decay == 1.0:
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}]
    if not 0.0 < layer_decay < 1.0:
        raise InvalidInputError(f"layer_decay must be in (0, 1] or None (off), got {layer_decay}")
    groups = param_groups_layer_decay(
        model, weight_decay=weight_decay, layer_decay=layer_decay,
        weight_decay_exclude_1d=False,
    )
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    # deepest first, so that param_groups[0] (whose lr the training history logs) is the head's
    return groups[::-1]
