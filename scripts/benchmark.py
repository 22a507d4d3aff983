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

import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.plumbing import atomic, cli
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe_tools import benchmark as bm

log = logging.getLogger("benchmark")
REPO = Path(__file__).resolve().parents[1]  # the checkout whose step scripts are measured
STAGES = ("data", "percore", "loader", "train", "eval")


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--stages", default="data,percore,loader,train,eval",
                   help=f"comma-separated subset of {','.join(STAGES)}")
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
    args = p.parse_args(argv)

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise InvalidInputError(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    command = "python scripts/benchmark.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    info = bm.machine_info()
    rows: list[bm.Row] = []
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)

    raw = args.raw_dir
    if ("data" in stages or "percore" in stages) and raw is None:
        from leukopipe.data.synthetic import generate

        raw = work / f"raw-{args.fraction:g}"
        log.info("generating a synthetic C-NMC at %g x size in %s", args.fraction, raw)
        generate(raw, bm.synthetic_spec(args.fraction), workers=max(args.workers))
    if "data" in stages:
        target = args.target_per_class
        if target is None:
            target = 10000 if args.raw_dir else max(10, round(10000 * args.fraction))
        rows += bm.data_stage(raw, work / "data", args.workers, args.image_size, target,
                              repo=REPO)
    if "percore" in stages:
        rows += bm.per_core(sorted(raw.rglob("*.bmp"))[:200], args.image_size)

    size = args.train_size or args.image_size
    stores = work / f"stores-{size}"
    if {"loader", "train", "eval"} & set(stages):
        n_val = max(64, args.train_images // 4)
        pixels, manifest = bm.random_store(stores, args.train_images, size, "train")
        vpix, vman = bm.random_store(stores, n_val, size, "val", seed=1)
    if "loader" in stages:
        for w in args.loader_workers:
            rows.append(bm.loader_rate(pixels, args.batch_size, w, device=args.device))
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    train_rates: dict[str, float] = {}
    eval_rates: dict[str, float] = {}
    for backbone in args.backbones:
        if "train" in stages:
            for comp in compiles:
                real = bm.real_loop_rate(backbone, pixels, manifest, vpix, vman, args.batch_size,
                                         args.device, workers=args.loader_workers[-1],
                                         amp=args.amp, compile=comp)
                pure = bm.pure_step_rate(backbone, size, args.batch_size, args.device,
                                         steps=args.steps, amp=args.amp, compile=comp)
                real.note += f"; ratio real/pure = {real.rate / pure.rate:.2f}"
                real.extra["ratio"] = round(real.rate / pure.rate, 3)
                rows += [real, pure]
                train_rates[backbone] = max(train_rates.get(backbone, 0.0), real.rate)
        if "eval" in stages:
            for bs in args.eval_batch_sizes:
                row = bm.inference_rate(backbone, vpix, bs, args.device)
                rows.append(row)
                eval_rates[backbone] = max(eval_rates.get(backbone, 0.0), row.rate)
        log.info("%s done", backbone)

    title = args.title or f"{', '.join(stages)} on {info['host']}"
    section = bm.markdown(rows, info, command, title)
    if train_rates:
        hours = bm.estimate_study_a(train_rates, eval_rates)
        study_a = [b for b in bm.STUDY_A if b in train_rates]
        section += ("\nEstimated wall time at 50 epochs (upper bound: early stopping only "
                    "shortens it), 20,000 training + 1,250 validation images per epoch, fastest "
                    "measured setting per backbone: "
                    + ", ".join(f"{b} {h:.2f} h" for b, h in hours.items() if b != "total")
                    + (f"; Study A ({len(study_a)}/5 backbones measured) "
                       f"{sum(hours[b] for b in study_a):.2f} h" if study_a else "") + "\n")
    print(section)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write("\n" + section)
    if args.json_out:
        atomic.write_json(args.json_out, bm.rows_json(rows, info, command))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
