# Helpers shared by the rule files: where outputs go and which code each step runs.
import json
import os
import sys
from pathlib import Path

from leukopipe.config import expand_experiments, used_splits

# every output of a run lives under results/<run>/ so runs never overwrite each other
R = f"results/{config['run']}"
EXPERIMENTS = expand_experiments(config)
SPLIT_MODES = used_splits(config)

# Job shells find the interpreter that runs Snakemake (a conda env, under --sdm conda, wins)
# and import the package from this checkout, installed or not.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(Path(workflow.basedir) / "src"), os.environ.get("PYTHONPATH")) if p
)


def pkg(*modules):
    """Package modules a step imports: declared as inputs so code edits rerun the step."""
    return [f"src/leukopipe/{m}.py" for m in ("__init__", "atomic", "cli", *modules)]


def as_json(obj):
    """A JSON literal safe inside single quotes in a shell command."""
    return json.dumps(obj, sort_keys=True).replace("'", "\\u0027")


def all_targets():
    """Final products of the pipeline for the current configuration."""
    targets = []
    for split in SPLIT_MODES:
        targets += [
            f"{R}/augment/{split}/train_balanced.parquet",
            f"{R}/augment/{split}/val.parquet",
            f"{R}/augment/{split}/test.parquet",
        ]
    return targets
