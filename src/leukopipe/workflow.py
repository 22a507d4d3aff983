"""Helpers the Snakemake rule files use: output locations, code inputs, shell-safe params."""

from __future__ import annotations

import json
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


def final_targets(config: dict[str, Any]) -> list[str]:
    """What `snakemake` builds by default for this configuration."""
    r = results_dir(config)
    targets = []
    for split in used_splits(config):
        targets += [
            f"{r}/augment/{split}/train_balanced.parquet",
            f"{r}/augment/{split}/val.parquet",
            f"{r}/augment/{split}/test.parquet",
        ]
    return targets


__all__ = ["as_json", "expand_experiments", "final_targets", "pkg", "results_dir", "used_splits"]
