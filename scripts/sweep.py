#!/usr/bin/env python
"""Hyperparameter sweep outside the DAG: lr x partial depth x seed for one backbone, as a SLURM
job array through submitit (requeued on time limit, resumed from each run's state.pt).

Reads an existing augment output (a training store such as
results/<run>/augment/official/224px/bal10000/, and the validation store one folder up), writes
every run under --out-dir/runs/<point>/, the submitit logs under --out-dir/submitit/, and the
collected results to --out-dir/sweep.parquet and a ranked --out-dir/sweep.md. Rerunning the same
command submits only the points that have no summary yet.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.plumbing import cli
from leukopipe.train.loop import TrainConfig
from leukopipe.train.models import STRATEGIES
from leukopipe.workflow.sweep import CLUSTERS, ClusterSettings, SweepRequest, run_request


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--augment-dir", required=True, type=Path,
                   help="training store of one split and preprocessing "
                        "(augment/<split>/<size>px/<augmentation>: train_balanced.parquet, "
                        "train_pixels.npy); val.parquet and val_pixels.npy one folder up")
    p.add_argument("--out-dir", required=True, type=Path,
                   help="sweep folder (runs/, resume/, submitit/, sweep.parquet, sweep.md)")
    g = p.add_argument_group("grid")
    g.add_argument("--backbone", required=True, help="timm model name, e.g. resnet50")
    g.add_argument("--strategy", choices=STRATEGIES, default="partial",
                   help="fine-tuning strategy of every point")
    g.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3],
                   help="learning rates")
    g.add_argument("--partial-stages", type=int, nargs="+", default=[1, 2, 3],
                   help="depths tried by the partial strategy (ignored by the others)")
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds")
    t = p.add_argument_group("training (same meaning as scripts/train.py)")
    t.add_argument("--epochs", type=int, default=50, help="maximum number of epochs")
    t.add_argument("--patience", type=int, default=15,
                   help="stop after this many epochs without a better val macro-F1")
    t.add_argument("--batch-size", type=int, default=64, help="training batch size")
    t.add_argument("--eval-batch-size", type=int, default=256, help="validation batch size")
    t.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay")
    t.add_argument("--amp", choices=("bf16", "fp16", "none"), default="bf16",
                   help="mixed precision on CUDA")
    t.add_argument("--pretrained-weights", default="none", metavar="PATH|none",
                   help="local ImageNet weights (.safetensors; fetch them on the login node "
                        "with scripts/fetch_weights.py), or none")
    t.add_argument("--workers", default="auto", metavar="N|auto",
                   help="DataLoader workers per job ('auto': the job's CPUs minus one)")
    t.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads per job (default: torch's choice)")
    c = p.add_argument_group("cluster")
    c.add_argument("--cluster", choices=CLUSTERS, default="slurm",
                   help="slurm: job array; local: subprocesses here; debug: in this process")
    c.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    c.add_argument("--account", default=None, help="SLURM account (-A)")
    c.add_argument("--gpus", type=int, default=1, help="GPUs per job (0 for CPU jobs)")
    c.add_argument("--cpus-per-task", type=int, default=8, help="CPUs per job")
    c.add_argument("--mem-gb", type=float, default=32, help="memory per job in GB")
    c.add_argument("--timeout-min", type=int, default=720,
                   help="time limit per job in minutes; a job reaching it is requeued and "
                        "resumes from its last completed epoch")
    c.add_argument("--max-num-timeout", type=int, default=3,
                   help="how often one point may be requeued after its time limit")
    c.add_argument("--signal-delay-s", type=int, default=120,
                   help="seconds before the time limit at which SLURM warns the job (USR2); "
                        "slurmctld checks limits only every 30 s, so keep it >= 60")
    c.add_argument("--array-parallelism", type=int, default=16,
                   help="array tasks running at the same time")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = TrainConfig(
        backbone=args.backbone, strategy=args.strategy, epochs=args.epochs,
        patience=args.patience, batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size, weight_decay=args.weight_decay, amp=args.amp,
        pretrained_weights=args.pretrained_weights, workers=args.workers,
    )
    cluster = ClusterSettings(
        args.cluster, timeout_min=args.timeout_min, partition=args.partition, gpus=args.gpus,
        cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
        array_parallelism=args.array_parallelism, max_num_timeout=args.max_num_timeout,
        signal_delay_s=args.signal_delay_s, account=args.account,
    )
    return run_request(SweepRequest(args.augment_dir, args.out_dir, base, args.lrs,
                                    args.partial_stages, args.seeds, cluster, args.threads))


if __name__ == "__main__":
    sys.exit(cli.run(main))
