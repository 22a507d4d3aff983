"""Helpers the Snakemake rule files use: output locations, code inputs, shell-safe params."""

from __future__ import annotations

import ast
import json
import shlex
from functools import cache
from pathlib import Path
from typing import Any

from leukopipe.workflow.config import expand_ensembles, expand_experiments, used_splits


def results_dir(config: dict[str, Any]) -> str:
    """Every output of a run lives under results/<run>/ so runs never overwrite each other."""
    return f"results/{config['run']}"


BASE_MODULES = ("workflow.atomic", "workflow.cli")
PACKAGE_DIR = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = PACKAGE_DIR.parents[1] / "scripts"


def _module_file(module: str) -> Path | None:
    """The source file of package module ``module`` (dotted, without ``leukopipe.``)."""
    base = PACKAGE_DIR.joinpath(*module.split(".")) if module else PACKAGE_DIR
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(module: str) -> set[str]:
    """``module`` and the packages Python runs first to import it (their ``__init__``)."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(len(parts) + 1)}


@cache
def _imports(module: str, path: Path | None = None) -> frozenset[str]:
    """leukopipe modules that ``module`` imports directly (read from its source, not run)."""
    source = path if path is not None else _module_file(module)
    if source is None:
        return frozenset()
    tree = ast.parse(source.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "leukopipe":
                continue
            base = ".".join(parts[1:])
            found |= _with_parents(base)
            # from leukopipe.pkg import name: name may itself be a submodule
            found.update(f"{base}.{a.name}".lstrip(".") for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("leukopipe."):
                    found |= _with_parents(a.name.removeprefix("leukopipe."))
    return frozenset(m for m in found if _module_file(m) is not None)


def _relative(module: str) -> str:
    path = _module_file(module)
    assert path is not None
    return str(path.relative_to(PACKAGE_DIR.parents[1]))


def pkg(*modules: str) -> list[str]:
    """Every package module a step's code reaches (the named ones and, transitively, what they
    import), declared as inputs so that editing any of them reruns the step."""
    seen: set[str] = set()
    todo = [*BASE_MODULES, *modules]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_imports(m))
            todo.extend(_with_parents(m))
    return sorted(_relative(m) for m in seen if _module_file(m) is not None)


def step_code(script: str, *lazy_modules: str) -> list[str]:
    """The code a step runs: ``scripts/<script>.py`` and every package module it reaches.

    Declared as inputs, so editing the script or any module it imports reruns the step.
    ``lazy_modules`` names modules imported at run time (importlib) that a source scan misses.
    """
    path = SCRIPTS_DIR / f"{script}.py"
    return [f"scripts/{script}.py", *pkg(*_imports(script, path), *lazy_modules)]


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


def tta_enabled(config: dict[str, Any]) -> bool:
    """Whether evaluation also scores 8-fold dihedral test-time augmentation."""
    return bool(config["evaluate"].get("tta", False))


def gradcam_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Grad-CAM grid settings with defaults; ``per_group`` 0 means no grids."""
    return {"per_group": 2, "stage": -1, "alpha": 0.45, **config.get("gradcam", {})}


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
    """Every metrics.json the comparison reads: experiments, their TTA variants, ensembles."""
    r = results_dir(config)
    names = sorted(expand_experiments(config))
    out = [f"{r}/eval/{n}/metrics.json" for n in names]
    if tta_enabled(config):
        out += [f"{r}/eval/{n}/tta_metrics.json" for n in names]
    out += [f"{r}/eval/{e}/metrics.json" for e in sorted(expand_ensembles(config))]
    return out


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
            # only cross-validated experiments carry a fold (others keep their params)
            **({"fold": exp.fold} if exp.fold is not None else {}),
        },
        "config": without_workers(
            {
                **{k: config[k] for k in ("data", "augment", "weights", "train")},
                # k is part of a fold's split id; other experiments do not depend on it
                "split": {
                    k: v for k, v in config["split"].items() if k != "folds" or exp.fold is not None
                },
            }
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
    "comparison_metrics",
    "dataset_label",
    "ensemble_meta",
    "evaluate_outputs",
    "expand_ensembles",
    "expand_experiments",
    "experiment_meta",
    "final_targets",
    "gradcam_grids",
    "gradcam_options",
    "output_flags",
    "pkg",
    "results_dir",
    "step_code",
    "used_splits",
    "weights_input",
]
