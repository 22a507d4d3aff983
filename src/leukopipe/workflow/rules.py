"""Helpers the Snakemake rule files use: where outputs live, what each job records, and
shell-safe params. The rule files call them through the named ``get_*`` functions of
``rules/common.smk``.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from collections.abc import Iterator
from typing import Any

from leukopipe.data.split_modes import parse_split_id, pooled_name
from leukopipe.plumbing.errors import UserError
from leukopipe.workflow.config import (
    Experiment,
    expand_ensembles,
    expand_experiments,
    preprocessings,
    used_splits,
)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Around work a rule function does while Snakemake builds the DAG (hashing the raw copy):
    an expected failure ends Snakemake with its one line, not an InputFunctionException
    traceback (SystemExit passes through Snakemake's wrapping of input functions)."""
    try:
        yield
    except UserError as exc:
        sys.exit(f"error: {exc}")


def results_dir(config: dict[str, Any]) -> str:
    """Every output of a run lives under results/<run>/ so runs never overwrite each other."""
    return f"results/{config['run']}"


def train_store_dir(config: dict[str, Any], exp: Experiment) -> str:
    """Folder of the training manifest and pixel store ``exp`` reads: keyed by its split and
    preprocessing (e.g. ``augment/official/224px/none``), so groups that preprocess alike share
    it and groups that do not never meet."""
    return f"{results_dir(config)}/augment/{exp.split}/{exp.preprocessing.train_dir}"


def eval_store_dir(config: dict[str, Any], exp: Experiment) -> str:
    """Folder of the validation and test stores ``exp`` reads: resized only, so keyed by its
    split and image size alone (e.g. ``augment/official/224px``)."""
    return f"{results_dir(config)}/augment/{exp.split}/{exp.preprocessing.size_dir}"


def as_json(obj: Any) -> str:
    """A JSON literal that is safe inside single quotes in a shell command."""
    return json.dumps(obj, sort_keys=True).replace("'", "\\u0027")


def option(flag: str, value: Any) -> str:
    """``--flag 'value'`` for a shell command, or nothing when the value is unset."""
    return f"{flag} {shlex.quote(str(value))}" if value not in (None, "") else ""


# the figures the compare rule draws (report/figures.py)
COMPARISON_FIGURES = ("roc", "confusion", "training_curves", "reliability",
                      "reliability_calibrated", "risk_coverage")


def final_targets(config: dict[str, Any]) -> list[str]:
    """What `snakemake` builds by default: the comparison tables, figures and report, and every
    declared output of every job they need.

    Snakemake runs a job only when a target needs it: a missing intermediate (a store that a
    failed or interrupted ``-R augment`` deleted, or one removed by hand) whose consumers are up
    to date would otherwise stay missing behind "Nothing to be done". As a target it is rebuilt,
    and what was made from it reruns (its input is then newer).
    """
    r = results_dir(config)
    out = [f"{r}/report.html", f"{r}/data/raw.json", f"{r}/data/index.parquet",
           f"{r}/data/summary.json", f"{r}/tables/rows.parquet"]
    out += [f"{r}/tables/comparison.{ext}" for ext in ("md", "csv", "tex")]
    out += [f"{r}/figures/{name}.png" for name in COMPARISON_FIGURES]
    for split in used_splits(config):
        out += [f"{r}/splits/{split}/{n}" for n in
                ("train.parquet", "val.parquet", "test.parquet", "audit.json")]
    optional = evaluate_outputs(config).values()
    for name, exp in sorted(expand_experiments(config).items()):
        train, held_out = train_store_dir(config, exp), eval_store_dir(config, exp)
        out += [f"{train}/{n}" for n in
                ("train_balanced.parquet", "train_pixels.npy", "train_stats.json")]
        out += [f"{held_out}/{part}{n}" for part in ("val", "test")
                for n in (".parquet", "_pixels.npy")]
        out += weights_record(config, exp.backbone)
        out += [f"{r}/runs/{name}/{n}" for n in
                ("best.pt", "last.pt", "history.parquet", "provenance.json")]
        out += [f"{r}/eval/{name}/{n}" for n in
                ("predictions.parquet", "val_predictions.parquet", "metrics.json",
                 "history.parquet")]
        out += [template.format(exp=name) for template in optional]
    for name in sorted(expand_ensembles(config)):
        out += [f"{r}/eval/{name}/{n}" for n in
                ("predictions.parquet", "val_predictions.parquet", "metrics.json")]
    for name in sorted(expand_pooled(config)):
        out += [f"{r}/eval/{name}/{n}" for n in ("predictions.parquet", "metrics.json")]
    return list(dict.fromkeys(out))  # stores and weights records are shared: each once


def tta_enabled(config: dict[str, Any]) -> bool:
    """Whether evaluation also scores 8-fold dihedral test-time augmentation."""
    return bool(config["evaluate"]["tta"])


def knn_experiments(config: dict[str, Any]) -> list[str]:
    """The frozen experiments whose pretrained backbone gets a k-NN probe (``<name>.knn``):
    every frozen one while ``evaluate.knn`` is on. A frozen experiment starts from exactly the
    backbone the probe needs, and names its split, stores and seed."""
    if not config["evaluate"]["knn"]:
        return []
    return sorted(n for n, e in expand_experiments(config).items() if e.strategy == "frozen")


def gradcam_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Grad-CAM grid settings; ``per_group`` 0 means no grids."""
    return config["gradcam"]


# evaluate's optional outputs: output key -> the scripts/evaluate.py flag that writes it
EVALUATE_FLAGS = {
    "tta_metrics": "--tta-metrics-out",
    "tta_predictions": "--tta-predictions-out",
    "tta_val_predictions": "--tta-val-predictions-out",
    "gradcam": "--gradcam-out",
}


def evaluate_outputs(config: dict[str, Any]) -> dict[str, str]:
    """The optional outputs of the evaluate rule that the config switches on."""
    r = results_dir(config)
    out = {}
    if tta_enabled(config):
        out["tta_metrics"] = f"{r}/eval/{{exp}}/tta_metrics.json"
        out["tta_predictions"] = f"{r}/eval/{{exp}}/tta_predictions.parquet"
        out["tta_val_predictions"] = f"{r}/eval/{{exp}}/tta_val_predictions.parquet"
    if gradcam_settings(config)["per_group"] > 0:
        out["gradcam"] = f"{r}/eval/{{exp}}/gradcam.png"
    return out


def output_flags(output: Any) -> str:
    """Shell flags for the optional evaluate outputs present in ``output``."""
    return " ".join(
        f"{flag} {shlex.quote(str(getattr(output, key)))}"
        for key, flag in EVALUATE_FLAGS.items()
        if hasattr(output, key)
    )


def gradcam_options(config: dict[str, Any]) -> str:
    """Grad-CAM flags for evaluate (nothing when the grids are off)."""
    g = gradcam_settings(config)
    if g["per_group"] <= 0:
        return ""
    return (
        f"--gradcam-per-group {int(g['per_group'])} --gradcam-stage {int(g['stage'])}"
        f" --gradcam-alpha {float(g['alpha'])}"
    )


def comparison_metrics(config: dict[str, Any]) -> list[str]:
    """Every metrics.json the comparison reads: experiments, their TTA variants, k-NN probes,
    ensembles and the out-of-fold pools of the cross-validated ones."""
    r = results_dir(config)
    names = sorted(expand_experiments(config))
    out = [f"{r}/eval/{n}/metrics.json" for n in names]
    if tta_enabled(config):
        out += [f"{r}/eval/{n}/tta_metrics.json" for n in names]
    out += [f"{r}/eval/{n}.knn/metrics.json" for n in knn_experiments(config)]
    out += [f"{r}/eval/{e}/metrics.json" for e in sorted(expand_ensembles(config))]
    out += [f"{r}/eval/{p}/metrics.json" for p in sorted(expand_pooled(config))]
    return out


def expand_pooled(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every out-of-fold pool: name -> the eval/ files of its folds (predictions and
    metrics.json, in fold order). One per cross-validated experiment, its TTA variant when TTA
    is on, its k-NN probe when that is on, and each ensemble whose members are folds."""
    r = results_dir(config)
    members: dict[str, list[tuple[int, str, str, str]]] = {}

    def add(record: str, folder: str, split: str, fold: int, prefix: str = "") -> None:
        members.setdefault(pooled_name(record, split), []).append(
            (fold, record, f"{r}/eval/{folder}/{prefix}predictions.parquet",
             f"{r}/eval/{folder}/{prefix}metrics.json")
        )

    for name, exp in expand_experiments(config).items():
        if exp.fold is None:
            continue
        add(name, name, exp.split, exp.fold)
        if tta_enabled(config):
            # the TTA record (beside the plain one) is named <experiment>+tta
            add(f"{name}+tta", name, exp.split, exp.fold, prefix="tta_")
    knn = set(knn_experiments(config))
    for name, exp in expand_experiments(config).items():
        if exp.fold is not None and name in knn:
            add(f"{name}.knn", f"{name}.knn", exp.split, exp.fold)
    for name, ens in expand_ensembles(config).items():
        parsed = parse_split_id(ens["split"])
        if parsed is not None:
            add(name, name, ens["split"], parsed[1])
    return {
        pooled: {
            "members": [m for _, m, _, _ in sorted(folds)],
            "predictions": [p for _, _, p, _ in sorted(folds)],
            "metrics": [m for _, _, _, m in sorted(folds)],
        }
        for pooled, folds in sorted(members.items())
    }


def gradcam_grids(config: dict[str, Any]) -> list[str]:
    """The Grad-CAM grid of every experiment (empty when the grids are off)."""
    if gradcam_settings(config)["per_group"] <= 0:
        return []
    r = results_dir(config)
    return [f"{r}/eval/{n}/gradcam.png" for n in sorted(expand_experiments(config))]


def ensemble_meta(config: dict[str, Any], name: str) -> dict[str, Any]:
    """What an ensemble's metrics.json records about it: name, split, members."""
    ens = expand_ensembles(config)[name]
    return {
        "name": name,
        "ensemble": ens["name"],
        "group": f"ensemble-{ens['name']}",
        "split": ens["split"],
        "members": ens["members"],
        "run": config["run"],
        "dataset": dataset_label(config),
    }


def experiment_record(config: dict[str, Any], name: str) -> dict[str, Any]:
    """What identifies an experiment in its checkpoint and metrics: name, group, split, model,
    strategy, seed (and fold), and labels for the tables. No location: moving data changes none
    of it."""
    exp = expand_experiments(config)[name]
    return {
        "name": exp.name,
        "group": exp.group,
        "split": exp.split,
        "backbone": exp.backbone,
        "strategy": exp.strategy,
        "partial_stages": exp.partial_stages,
        "seed": exp.seed,
        "preprocessing": exp.preprocessing.id,
        "layer_decay": exp.layer_decay,
        "run": config["run"],
        "dataset": dataset_label(config),
        # only cross-validated experiments carry a fold
        **({"fold": exp.fold} if exp.fold is not None else {}),
    }


def train_provenance(config: dict[str, Any], name: str) -> dict[str, Any]:
    """What a checkpoint records besides its own settings: the experiment and the settings of
    every step before training (data, split, its preprocessing, weights), locations included.

    Provenance only: the training rule passes it as a param computed from its input, which
    Snakemake does not compare between runs; the upstream steps' own params decide reruns.
    """
    exp = expand_experiments(config)[name]
    return {
        "experiment": experiment_record(config, name),
        # the group's own preprocessing, not the top-level augment section it may override
        "preprocessing": exp.preprocessing.record(),
        "config": {k: config[k] for k in ("data", "split", "weights", "train")},
    }


def dataset_label(config: dict[str, Any]) -> str:
    """Short description of the data a run used (shown in table captions); no location."""
    data = config["data"]
    if data["source"] == "synthetic":
        return f"synthetic C-NMC-layout data (seed {data['synthetic']['seed']})"
    return "C-NMC 2019"


def weights_record(config: dict[str, Any], backbone: str) -> list[str]:
    """The record of the weights a training job starts from (written by fetch_weights), or
    nothing when training from scratch. A record under results/, not the weight file itself,
    so the same files in another folder retrain nothing."""
    if not config["weights"]["pretrained"]:
        return []
    return [f"{results_dir(config)}/weights/{backbone}.json"]


__all__ = [
    "as_json",
    "comparison_metrics",
    "dataset_label",
    "ensemble_meta",
    "eval_store_dir",
    "evaluate_outputs",
    "expand_ensembles",
    "expand_experiments",
    "expand_pooled",
    "experiment_record",
    "final_targets",
    "gradcam_grids",
    "gradcam_options",
    "knn_experiments",
    "output_flags",
    "preprocessings",
    "results_dir",
    "train_provenance",
    "train_store_dir",
    "used_splits",
    "weights_record",
]
