"""Validate the pipeline configuration, fill its defaults, and expand its experiment grid.

Validation happens once, when the Snakefile is parsed, so a wrong value fails before any
job is submitted. Each failure is one line naming the key, the bad value and what is allowed.
Every optional key then holds its schema default, so the rest of the workflow reads plain keys.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema.exceptions
import yaml

from leukopipe.data.split_modes import SPLIT_MODES, parse_split_id
from leukopipe.plumbing.errors import UserError
from leukopipe.plumbing.schema import fill_defaults, load_schema
from leukopipe.train.patch_grid import patch_grid_problem
from leukopipe.workflow.backbone_names import (
    Backbone,
    lookup,
    patch_sizes,
    similar,
)
from leukopipe.workflow.preprocessing import (
    Preprocessing,
    PreprocessingError,
    group_image_size,
    group_preprocessing,
    top_level,
)

# Keys that earlier versions had; the message says where the setting went.
RETIRED_KEYS = {
    ("merge", "workers"): "worker counts follow the rule's threads: --set-threads merge=N",
    ("augment", "workers"): "worker counts follow the rule's threads: --set-threads augment=N",
    ("data", "synthetic", "workers"): (
        "worker counts follow the rule's threads: --set-threads download=N"
    ),
}


class ConfigError(UserError, ValueError):
    """A configuration value is not allowed; the message is one line for the user."""


def _key(path: Any) -> str:
    parts = []
    for p in path:
        parts.append(f"[{p}]" if isinstance(p, int) else ("." if parts else "") + str(p))
    return "".join(parts) or "<top level>"


def _allowed(err: jsonschema.exceptions.ValidationError) -> str:
    v, val = err.validator, err.validator_value
    schema = err.schema if isinstance(err.schema, dict) else {}
    lo, hi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if v in ("exclusiveMinimum", "exclusiveMaximum") and lo is not None and hi is not None:
        text = f"a number strictly between {lo} and {hi}"
    elif v in ("minimum", "maximum") and "minimum" in schema and "maximum" in schema:
        text = f"a number from {schema['minimum']} to {schema['maximum']}"
    else:
        text = {
            "enum": lambda: "one of " + ", ".join(json.dumps(x) for x in val),
            "const": lambda: json.dumps(val),
            "type": lambda: (
                "a value of type " + (" or ".join(val) if isinstance(val, list) else val)
            ),
            "minimum": lambda: f"a number >= {val}",
            "maximum": lambda: f"a number <= {val}",
            "exclusiveMinimum": lambda: f"a number > {val}",
            "exclusiveMaximum": lambda: f"a number < {val}",
            "pattern": lambda: f"a string matching {val}",
            "minLength": lambda: "a non-empty string",
            "minItems": lambda: f"a list with at least {val} item(s)",
            "maxItems": lambda: f"a list with at most {val} item(s)",
            "oneOf": lambda: " or ".join(_alternative(s) for s in val),
        }.get(v, lambda: err.message)()
    desc = schema.get("description")
    return f"{text} ({desc})" if desc else text


def _alternative(schema: dict[str, Any]) -> str:
    """One alternative of a ``oneOf``, in words: a constant, or a type with its bounds."""
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type", "value")
    text = f"{'an' if str(kind)[0] in 'aeiou' else 'a'} {kind}"
    if "minimum" in schema:
        text += f" >= {schema['minimum']}"
    if "additionalProperties" in schema and "properties" in schema:
        text += " with keys " + ", ".join(sorted(schema["properties"]))
    return text


def _format(err: jsonschema.exceptions.ValidationError) -> str:
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        key = _key([*err.absolute_path, extra[0]]) if extra else _key(err.absolute_path)
        return f"config error: unknown key {key!s}; allowed keys here: {', '.join(allowed)}"
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return f"config error: missing required key {_key([*err.absolute_path, missing])}"
    return (
        f"config error: {_key(err.absolute_path)} = {json.dumps(err.instance, default=str)}"
        f" is not allowed; expected {_allowed(err)}"
    )


def _check_retired(config: dict[str, Any]) -> None:
    for path, where in RETIRED_KEYS.items():
        node: Any = config
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            raise ConfigError(f"config error: {'.'.join(path)} is no longer a setting; {where}")
    if "merge" in config and config["merge"] in ({}, None):
        del config["merge"]  # an empty leftover section of an older config


def typed_overrides(
    config: dict[str, Any], overrides: dict[str, Any], nested: bool = False
) -> dict[str, Any]:
    """Read ``--config`` values written in YAML flow syntax as YAML types, in place.

    Snakemake parses ``--config train='{epochs: 3}'`` with YAML's base loader, which keeps
    every nested scalar a string (``"3"``); a plain ``--config run=demo`` is already typed.
    Each string that came from the command line and still stands in ``config`` is read again
    as YAML (``3`` -> int, ``true`` -> bool, ``null`` -> None); other strings stay strings.
    A top-level ``key=value`` is left as Snakemake typed it (``run=yes`` stays a name).
    """
    for key, value in overrides.items():
        if key not in config:
            continue
        if isinstance(value, dict) and isinstance(config[key], dict):
            typed_overrides(config[key], value, nested=True)
        elif isinstance(value, list) and config[key] == value:
            config[key] = [_yaml_scalar(v) for v in value]
        elif nested and isinstance(value, str) and config[key] == value:
            config[key] = _yaml_scalar(value)
    return config


def _yaml_scalar(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    # only scalars: a string that reads as a mapping was one on purpose elsewhere
    return parsed if parsed is None or isinstance(parsed, (bool, int, float, str)) else value


def validate(config: dict[str, Any], *, check_backbones: bool = True) -> dict[str, Any]:
    """Validate ``config`` against the schema and the semantic rules, filling every missing
    optional key with its schema default (in place); return it.

    Raises ConfigError with a one-line message naming the key, value and what is allowed.
    """
    _check_retired(config)
    if isinstance(config, dict):
        fill_defaults(config)
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # report the shallowest error first: a wrong section type explains the rest
        raise ConfigError(_format(jsonschema.exceptions.best_match(errors)))
    _check_pairs(config["augment"]["transforms"], "augment.transforms")
    cps = config["data"]["synthetic"]["cells_per_subject"]
    if cps[0] > cps[1]:
        raise ConfigError(
            f"config error: data.synthetic.cells_per_subject = {json.dumps(cps)} is not allowed;"
            " expected [low, high] with low <= high"
        )
    if config["data"]["source"] == "url" and not config["data"]["url"]:
        raise ConfigError(
            'config error: data.url = null is not allowed when data.source is "url";'
            " expected the archive's URL"
        )
    _check_unique_names(config)
    _check_split_modes(config)
    _check_preprocessing(config)
    _check_ensembles(config)
    if check_backbones:
        _check_backbones(config)
    return config


def _check_pairs(transforms: dict[str, Any], where: str) -> None:
    for pair_key in ("crop_scale", "crop_ratio", "scale", "blur_sigma"):
        pair = transforms.get(pair_key)
        if pair is not None and not (0 <= pair[0] <= pair[1]):
            raise ConfigError(
                f"config error: {where}.{pair_key} = {json.dumps(pair)} is not allowed;"
                " expected [low, high] with 0 <= low <= high"
            )


def _check_preprocessing(config: dict[str, Any]) -> None:
    """Each group's preprocessing resolves: its own transform ranges are ordered, and
    ``image_size: pretrained`` names one size (the backbones agree)."""
    for gi, group in enumerate(config["experiments"]):
        override = group["augment"]
        if isinstance(override, dict) and "transforms" in override:
            _check_pairs(override["transforms"], f"experiments[{gi}].augment.transforms")
        try:
            group_image_size(config, gi)
        except PreprocessingError as exc:
            raise ConfigError(str(exc)) from None


def _check_unique_names(config: dict[str, Any]) -> None:
    """Group and ensemble names pick rows and members: two alike would silently merge them."""
    for section in ("experiments", "ensembles"):
        first: dict[str, int] = {}
        for i, item in enumerate(config[section]):
            name = item["name"]
            if name in first:
                raise ConfigError(
                    f"config error: {section}[{i}].name = {json.dumps(name)} is not allowed;"
                    f" expected a name no other entry has ({section}[{first[name]}] has it)"
                )
            first[name] = i


def _check_split_modes(config: dict[str, Any]) -> None:
    for gi, group in enumerate(config["experiments"]):
        mode = group["split"]
        if mode not in SPLIT_MODES:
            allowed = ", ".join(json.dumps(name) for name in SPLIT_MODES)
            raise ConfigError(
                f"config error: experiments[{gi}].split = {json.dumps(mode)} is not allowed;"
                f" expected one of {allowed} (the split modes of leukopipe.data.split_modes)"
            )


def _check_ensembles(config: dict[str, Any]) -> None:
    groups = {g["name"] for g in config["experiments"]}
    known = expand_experiments(config)
    for ei, ens in enumerate(config["ensembles"]):
        for gi, g in enumerate(ens.get("groups", [])):
            if g not in groups:
                raise ConfigError(
                    f"config error: ensembles[{ei}].groups[{gi}] = {json.dumps(g)} is not allowed;"
                    f" expected the name of an experiment group ({', '.join(sorted(groups))})"
                )
        for xi, x in enumerate(ens.get("experiments", [])):
            if x not in known:
                close = difflib.get_close_matches(x, sorted(known), n=3, cutoff=0.6)
                hint = f" (similar: {', '.join(close)})" if close else ""
                raise ConfigError(
                    f"config error: ensembles[{ei}].experiments[{xi}] = {json.dumps(x)} is not"
                    f" allowed; expected an experiment name{hint}"
                )
        for split, members in ensemble_members(config, ens).items():
            if len(members) < 2:
                raise ConfigError(
                    f"config error: ensembles[{ei}] ({ens['name']}) has {len(members)} member(s)"
                    f" on split {split}; expected at least 2 experiments sharing a test set"
                )


def _check_backbones(config: dict[str, Any]) -> None:
    """Every backbone is a timm model name (``arch`` or ``arch.tag``) of the installed timm,
    looked up in its cached model list (``backbone_names``: no torch, no timm here)."""
    known: dict[str, Backbone] = {}
    for gi, group in enumerate(config["experiments"]):
        for bi, name in enumerate(group["backbones"]):
            found = lookup(name)
            if found is None:
                close = similar(name)
                hint = f" (similar: {', '.join(close)})" if close else ""
                raise ConfigError(
                    f"config error: experiments[{gi}].backbones[{bi}] = {json.dumps(name)} is not"
                    f" allowed; expected a timm model name or pretrained tag"
                    f" (architecture.tag){hint}"
                )
            known[name] = found
    _check_patch_grids(config, known)


def _check_patch_grids(config: dict[str, Any], known: dict[str, Backbone]) -> None:
    """A vision transformer sees whole patches: its group's image size must be a multiple of
    its patch size (timm would silently crop the rest). Only models whose pretrained config
    fixes the input size have a patch grid; CNNs take any size."""
    fixed = sorted({b.arch for b in known.values() if b.fixed_input_size})
    patches = patch_sizes(fixed) if fixed else {}
    for gi, group in enumerate(config["experiments"]):
        size = group_image_size(config, gi)
        for name in group["backbones"]:
            backbone = known[name]
            if not backbone.fixed_input_size:
                continue
            problem = patch_grid_problem(name, size, patches[backbone.arch])
            if problem is not None:
                key = (
                    f"experiments[{gi}].image_size"
                    if group["image_size"] is not None
                    else "augment.image_size"
                )
                raise ConfigError(
                    f"config error: {key} = {size} is not allowed for {name} (group"
                    f" {group['name']}): {problem}"
                )


@dataclass(frozen=True)
class Experiment:
    """One training job: backbone x fine-tuning strategy x seed, on one split, with its group's
    preprocessing (the pixel stores it reads) and layer-wise lr decay (full fine-tuning only)."""

    name: str
    group: str
    split: str
    backbone: str
    strategy: str
    partial_stages: int
    seed: int
    preprocessing: Preprocessing
    layer_decay: float | None = None
    fold: int | None = None  # cross-validation fold (split ``cv<k>-f<fold>``), else None


def experiment_name(
    split: str | None,
    backbone: str,
    strategy: str,
    partial_stages: int,
    seed: int,
    *,
    lr: float | None = None,
    layer_decay: float | None = None,
    preprocessing: str | None = None,
) -> str:
    """A stable, path-safe identifier such as ``image.resnet18.partial2.s0``.

    The pipeline's experiments name their split; the sweep's points (one split, several
    learning rates) leave it out and name the rate instead: ``resnet18.partial2.lr0.0003.s1``.
    A layer decay (``ld0.75``) or a preprocessing id (``224px-none``) is named only when it is
    not the run's default, so the default experiments keep their names.
    """
    strat = f"partial{partial_stages}" if strategy == "partial" else strategy
    parts = [split] if split else []
    parts += [backbone, strat]
    parts += [f"ld{layer_decay:g}"] if layer_decay is not None else []
    parts += [preprocessing] if preprocessing is not None else []
    parts += [f"lr{lr:g}"] if lr is not None else []
    return ".".join([*parts, f"s{seed}"])


def _effective_layer_decay(value: float | None) -> float | None:
    """1 (no decay) and null are the same training: off."""
    return None if value is None or float(value) == 1.0 else float(value)


def group_experiments(config: dict[str, Any], index: int) -> list[Experiment]:
    """The experiments group ``index`` lists: its grid over splits (every fold of a k-fold
    mode), backbones, strategies and seeds."""
    group = config["experiments"][index]
    mode = SPLIT_MODES[group["split"]]
    # a cross-validated group is k ordinary experiments, one per fold's split
    splits = mode.split_ids(int(config["split"]["folds"]))
    stages = int(group["partial_stages"])
    prep = group_preprocessing(config, index)
    default_prep = top_level(config)
    default_decay = _effective_layer_decay(config["train"]["layer_decay"])
    own_decay = group["layer_decay"]
    decay = default_decay if own_decay is None else _effective_layer_decay(own_decay)
    prep_tag = prep.id if prep.id != default_prep.id else None
    out = []
    for split in splits:
        fold = parse_split_id(split)[1] if mode.k_fold else None
        for backbone in group["backbones"]:
            for strategy in group["strategies"]:
                # only full fine-tuning has layers below the head that train
                exp_decay = decay if strategy == "full" else None
                decay_tag = None
                if exp_decay != (default_decay if strategy == "full" else None):
                    decay_tag = 1.0 if exp_decay is None else exp_decay
                for seed in group["seeds"]:
                    name = experiment_name(
                        split, backbone, strategy, stages, seed,
                        layer_decay=decay_tag, preprocessing=prep_tag,
                    )
                    out.append(
                        Experiment(
                            name, group["name"], split, backbone, strategy, stages, seed,
                            prep, exp_decay, fold,
                        )
                    )
    return out


def expand_experiments(config: dict[str, Any]) -> dict[str, Experiment]:
    """The experiment grid, keyed by name; groups that list the same job share it (the name
    holds everything that tells two jobs apart)."""
    out: dict[str, Experiment] = {}
    for index in range(len(config["experiments"])):
        for exp in group_experiments(config, index):
            out.setdefault(exp.name, exp)
    return out


def preprocessings(config: dict[str, Any]) -> dict[str, Preprocessing]:
    """Every preprocessing some experiment uses, keyed by its id."""
    out: dict[str, Preprocessing] = {}
    for exp in expand_experiments(config).values():
        out.setdefault(exp.preprocessing.id, exp.preprocessing)
    return out


def ensemble_members(config: dict[str, Any], ensemble: dict[str, Any]) -> dict[str, list[str]]:
    """Members of one configured ensemble per split (members must share a test set).

    ``groups`` takes every experiment of the named groups, ``experiments`` names them; a
    cross-validated group gives one ensemble per fold, pooled later like single models.
    """
    groups = set(ensemble.get("groups", []))
    chosen = set(ensemble.get("experiments", []))
    for index, group in enumerate(config["experiments"]):
        if group["name"] in groups:
            chosen |= {e.name for e in group_experiments(config, index)}
    out: dict[str, list[str]] = {}
    for name, exp in sorted(expand_experiments(config).items()):
        if name in chosen:
            out.setdefault(exp.split, []).append(name)
    return out


def ensemble_name(split: str, name: str) -> str:
    """Identifier of an ensemble on one split, e.g. ``image.ensemble-study_a``."""
    return f"{split}.ensemble-{name}"


def expand_ensembles(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every ensemble job, keyed by its identifier: name, split and member experiments."""
    out = {}
    for ens in config["ensembles"]:
        for split, members in ensemble_members(config, ens).items():
            out[ensemble_name(split, ens["name"])] = {
                "name": ens["name"],
                "split": split,
                "members": members,
            }
    return out


def used_splits(config: dict[str, Any]) -> list[str]:
    """The split modes any experiment uses, in a stable order."""
    return sorted({e.split for e in expand_experiments(config).values()})
