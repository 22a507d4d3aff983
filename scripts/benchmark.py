#!/usr/bin/env python
"""Benchmark: measured throughput of the data stage, the loader, training and evaluation.

Writes a stamped markdown section (machine, versions, command, date, load average) that can be
appended to docs/benchmarks.md, and optionally the same rows as JSON. Examples:

    python scripts/benchmark.py --fraction 0.05 --train-size 64 --append docs/benchmarks.md
    python scripts/benchmark.py --raw-dir /tmp/bench12k/raw --stages data --workers 2
    python scripts/benchmark.py --device cuda --stages train,eval --image-size 224 \\
        --batch-size 256 --compile both --backbones resnet18 resnet50 resnet101 \\
        efficientnet_b0 efficientnet_b1 efficientnet_b3 --append docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.plumbing import cli
from leukopipe_tools import benchmark as bm

REPO = Path(__file__).resolve().parents[1]  # the checkout whose step scripts are measured


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--stages", default="data,percore,loader,train,eval",
                   help=f"comma-separated subset of {','.join(bm.STAGES)}")
    p.add_argument("--raw-dir", type=Path, default=None,
                   help="existing C-NMC copy (real or synthetic) for the data stage; without it "
                        "a synthetic copy of --fraction x the real size is generated")
    p.add_argument("--fraction", type=float, default=0.05,
                   help="size of the generated synthetic copy relative to C-NMC (~12,500 images)")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/leukopipe-bench"),
                   help="scratch folder for the generated data, stores and step outputs")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="worker counts at which merge and augment are measured")
    p.add_argument("--image-size", type=int, default=224, help="stored image side, pixels")
    p.add_argument("--target-per-class", type=int, default=None,
                   help="augment target per class (default: 10,000 x --fraction, or 10,000 "
                        "with --raw-dir)")
    p.add_argument("--device", default="cpu", help="cpu or cuda for training and evaluation")
    p.add_argument("--backbones", nargs="+", default=["resnet18"],
                   help="timm backbones for the training and evaluation rows")
    p.add_argument("--train-size", type=int, default=None,
                   help="image side for training/evaluation rows (default: --image-size); the "
                        "stores used are random pixels of this size")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size")
    p.add_argument("--eval-batch-sizes", type=int, nargs="+", default=[64, 512],
                   help="inference batch sizes to compare")
    p.add_argument("--train-images", type=int, default=512,
                   help="images per epoch of the real-loop measurement (and store rows)")
    p.add_argument("--steps", type=int, default=10, help="timed steps of the pure train step")
    p.add_argument("--loader-workers", type=int, nargs="+", default=[0, 1],
                   help="DataLoader worker counts for the loader rows (and the real loop: the "
                        "last one)")
    p.add_argument("--amp", default="bf16", choices=("bf16", "fp16", "none"),
                   help="mixed precision on CUDA (ignored on CPU)")
    p.add_argument("--compile", default="off", choices=("off", "on", "both"),
                   help="torch.compile the model in the training rows")
    p.add_argument("--append", type=Path, default=None,
                   help="markdown file to append the stamped section to (docs/benchmarks.md)")
    p.add_argument("--json-out", type=Path, default=None, help="write the rows as JSON here")
    p.add_argument("--title", default=None, help="heading of the markdown section")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python scripts/benchmark.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    return bm.run_benchmark(bm.BenchmarkRun(**vars(args), command=command, repo=REPO))


if __name__ == "__main__":
    sys.exit(cli.run(main))
