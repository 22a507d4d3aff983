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

from leukopipe.errors import UserError
from leukopipe.workflow.schema import fill_defaults, load_schema
from leukopipe.workflow.split_modes import SPLIT_MODES, mode_of, parse_split_id

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
            "oneOf": lambda: " or ".join(
                json.dumps(s["const"])
                if "const" in s
                else f"a {s.get('type')} >= {s.get('minimum', '')}"
                for s in val
            ),
        }.get(v, lambda: err.message)()
    desc = schema.get("description")
    return f"{text} ({desc})" if desc else text


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
    for i, pair_key in ((0, "crop_scale"), (0, "crop_ratio"), (0, "scale"), (0, "blur_sigma")):
        pair = config["augment"]["transforms"][pair_key]
        if not (0 <= pair[i] <= pair[1]):
            raise ConfigError(
                f"config error: augment.transforms.{pair_key} = {json.dumps(pair)} is not allowed;"
                " expected [low, high] with 0 <= low <= high"
            )
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
    _check_split_modes(config)
    _check_ensembles(config)
    if check_backbones:
        _check_backbones(config)
    return config


def _check_split_modes(config: dict[str, Any]) -> None:
    for gi, group in enumerate(config["experiments"]):
        mode = group["split"]
        if mode not in SPLIT_MODES:
            allowed = ", ".join(json.dumps(name) for name in SPLIT_MODES)
            raise ConfigError(
                f"config error: experiments[{gi}].split = {json.dumps(mode)} is not allowed;"
                f" expected one of {allowed} (the split modes of leukopipe.workflow.split_modes)"
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
    import timm  # deferred: importing torch is slow and only needed here

    known = set(timm.list_models())
    for gi, group in enumerate(config["experiments"]):
        for bi, name in enumerate(group["backbones"]):
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=5, cutoff=0.75)
                hint = f" (similar: {', '.join(close)})" if close else ""
                raise ConfigError(
                    f"config error: experiments[{gi}].backbones[{bi}] = {json.dumps(name)} is not"
                    f" allowed; expected a timm model name{hint}"
                )


@dataclass(frozen=True)
class Experiment:
    """One training job: backbone x fine-tuning strategy x seed, on one split."""

    name: str
    group: str
    split: str
    backbone: str
    strategy: str
    partial_stages: int
    seed: int
    fold: int | None = None  # cross-validation fold (split ``cv<k>-f<fold>``), else None


def experiment_name(
    split: str | None,
    backbone: str,
    strategy: str,
    partial_stages: int,
    seed: int,
    *,
    lr: float | None = None,
) -> str:
    """A stable, path-safe identifier such as ``image.resnet18.partial2.s0``.

    The pipeline's experiments name their split; the sweep's points (one split, several
    learning rates) leave it out and name the rate instead: ``resnet18.partial2.lr0.0003.s1``.
    """
    strat = f"partial{partial_stages}" if strategy == "partial" else strategy
    parts = [split] if split else []
    parts += [backbone, strat] + ([f"lr{lr:g}"] if lr is not None else [])
    return ".".join([*parts, f"s{seed}"])


def expand_experiments(config: dict[str, Any]) -> dict[str, Experiment]:
    """The experiment grid, keyed by name; groups that list the same job share it."""
    out: dict[str, Experiment] = {}
    for group in config["experiments"]:
        mode = SPLIT_MODES[group["split"]]
        # a cross-validated group is k ordinary experiments, one per fold's split
        splits = mode.split_ids(int(config["split"]["folds"]))
        stages = int(group["partial_stages"])
        for split in splits:
            fold = parse_split_id(split)[1] if mode.k_fold else None
            for backbone in group["backbones"]:
                for strategy in group["strategies"]:
                    for seed in group["seeds"]:
                        name = experiment_name(split, backbone, strategy, stages, seed)
                        out.setdefault(
                            name,
                            Experiment(
                                name, group["name"], split, backbone, strategy, stages, seed, fold
                            ),
                        )
    return out


def ensemble_members(config: dict[str, Any], ensemble: dict[str, Any]) -> dict[str, list[str]]:
    """Members of one configured ensemble per split (members must share a test set).

    ``groups`` takes every experiment of the named groups, ``experiments`` names them; a
    cross-validated group gives one ensemble per fold, pooled later like single models.
    """
    groups = set(ensemble.get("groups", []))
    named = set(ensemble.get("experiments", []))
    out: dict[str, list[str]] = {}
    for name, exp in sorted(expand_experiments(config).items()):
        if name in named or any(
            g["name"] in groups and _in_group(exp, g, config) for g in config["experiments"]
        ):
            out.setdefault(exp.split, []).append(name)
    return out


def _in_group(exp: Experiment, group: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether ``group`` lists ``exp`` (an experiment may be listed by several groups)."""
    split_ok = mode_of(exp.split).name == group["split"]
    stages_ok = exp.strategy != "partial" or exp.partial_stages == group["partial_stages"]
    return (
        split_ok
        and stages_ok
        and exp.backbone in group["backbones"]
        and exp.strategy in group["strategies"]
        and exp.seed in group["seeds"]
    )


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
