"""Helpers the Snakemake rule files use: output locations, code inputs, shell-safe params."""

from __future__ import annotations

import json
import shlex
from typing import Any

from leukopipe.config import expand_experiments, used_splits

BASE_MODULES = ("__init__", "atomic", "cli")


def results_dir(config: dict[str, Any]) -> str:
    """Every output of a run lives under results/<run>/ so runs never overwrite each other."""
    return f"results/{config['run']}"


def pkg(*modules: str) -> list[str]:
    """Package modules a step imports, declared as inputs so that editing one reruns the step."""
    return [f"src/leukopipe/{m}.py" for m in (*BASE_MODULES, *modules)]


def as_json(obj: Any) -> str:
    """A JSON literal that is safe inside single quotes in a shell command."""
    return json.dumps(obj, sort_keys=True).replace("'", "\\u0027")


def option(flag: str, value: Any) -> str:
    """``--flag 'value'`` for a shell command, or nothing when the value is unset."""
    return f"{flag} {shlex.quote(str(value))}" if value not in (None, "") else ""


def final_targets(config: dict[str, Any]) -> list[str]:
    """What `snakemake` builds by default: the comparison tables, figures and report."""
    r = results_dir(config)
    return [f"{r}/tables/comparison.md", f"{r}/report.html"]


def experiment_meta(config: dict[str, Any], name: str) -> dict[str, Any]:
    """What a checkpoint records about its experiment: identity and every setting it used."""
    exp = expand_experiments(config)[name]
    return {
        "experiment": {
            "name": exp.name,
            "group": exp.group,
            "split": exp.split,
            "backbone": exp.backbone,
            "strategy": exp.strategy,
            "partial_stages": exp.partial_stages,
            "seed": exp.seed,
            "run": config["run"],
            "dataset": dataset_label(config),
        },
        "config": without_workers(
            {k: config[k] for k in ("data", "split", "augment", "weights", "train")}
        ),
    }


def without_workers(obj: Any) -> Any:
    """``obj`` minus every ``workers`` key: worker counts change speed, not results, so they
    stay out of job params (a changed param reruns the job)."""
    if isinstance(obj, dict):
        return {k: without_workers(v) for k, v in obj.items() if k != "workers"}
    return obj


def dataset_label(config: dict[str, Any]) -> str:
    """Short description of the data a run used (shown in table captions)."""
    data = config["data"]
    if data["source"] == "synthetic":
        return f"synthetic C-NMC-layout data (seed {data.get('synthetic', {}).get('seed', 0)})"
    return f"C-NMC 2019 ({data['raw_dir']})"


def weights_input(config: dict[str, Any], backbone: str) -> list[str]:
    """The local weights file a training job needs, or nothing when training from scratch."""
    if not config["weights"]["pretrained"]:
        return []
    return [f"{config['weights']['dir']}/{backbone}.safetensors"]


__all__ = [
    "as_json",
    "dataset_label",
    "expand_experiments",
    "experiment_meta",
    "final_targets",
    "pkg",
    "results_dir",
    "used_splits",
    "weights_input",
]
