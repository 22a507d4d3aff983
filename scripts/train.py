#!/usr/bin/env python
"""Train step: fine-tune one experiment (backbone x strategy x seed), resumable after preemption.

Writes best.pt, last.pt and history.parquet to --out-dir; keeps its resume state in
--resume-dir (not a Snakemake output, so a retried job continues where it stopped). On
SIGTERM/SIGUSR1 it saves nothing new, stops at the next batch and exits 128+signal
(143 / 138); rerunning the same command resumes from the last completed epoch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.plumbing import cli
from leukopipe.train.loop import AMP_MODES, TrainRequest, config_fields, train_step
from leukopipe.train.models import STRATEGIES

_CHOICES = {"strategy": STRATEGIES, "amp": AMP_MODES}


def _float_or_none(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


_TYPES = {"int": int, "float": float, "str": str, "float | None": _float_or_none}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, so the CLI can never fall behind the dataclass."""
    for name, type_name, default, help_text in config_fields():
        flag = "--" + name.replace("_", "-")
        required = default.__class__.__name__ == "_MISSING_TYPE"
        if type_name == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                           help=help_text)
            continue
        kwargs = {"help": help_text, "choices": _CHOICES.get(name)}
        if required:
            p.add_argument(flag, required=True, type=str, **kwargs)
        elif name == "pretrained_weights":
            p.add_argument(flag, default="none", metavar="PATH|none", **kwargs)
        elif name == "workers":
            p.add_argument(flag, default=default, metavar="N|auto", **kwargs)
        else:
            p.add_argument(flag, type=_TYPES[str(type_name)], default=default, **kwargs)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The step's flags: one per TrainConfig field plus the files and run options."""
    p = cli.parser(__doc__)
    _add_config_flags(p)
    p.add_argument("--train-manifest", required=True, type=Path,
                   help="training manifest (parquet; label 0 = Hem, 1 = ALL)")
    p.add_argument("--train-pixels", required=True, type=Path,
                   help="training pixel store (.npy, (N,S,S,3) uint8, row i = manifest row i)")
    p.add_argument("--val-manifest", required=True, type=Path, help="validation manifest")
    p.add_argument("--val-pixels", required=True, type=Path, help="validation pixel store")
    p.add_argument("--out-dir", required=True, type=Path,
                   help="where best.pt, last.pt and history.parquet are written")
    p.add_argument("--resume-dir", required=True, type=Path,
                   help="where the per-epoch resume state (state.pt) lives; keep it outside "
                        "the Snakemake outputs")
    p.add_argument("--weights-record", type=Path, default=None,
                   help="record of the pretrained weights (fetch_weights); the file must match it")
    p.add_argument("--extra-meta-json", type=Path, default=None,
                   help="JSON file stored verbatim in the checkpoints (e.g. the pipeline config)")
    p.add_argument("--device", default=None,
                   help="torch device, e.g. cuda or cpu; None = cuda if available")
    p.add_argument("--on-mismatch", choices=("restart", "error"), default="restart",
                   help="what to do with a resume state made under another config or data")
    p.add_argument("--keep-state", action="store_true",
                   help="keep resume_dir/state.pt after training finished")
    p.add_argument("--summary-json", type=Path, default=None,
                   help="also write the run summary here (it is always printed to stdout)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    # a stop signal ends it as TrainingInterrupted: cli.run exits 128 + signal
    train_step(TrainRequest.from_flags(vars(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
