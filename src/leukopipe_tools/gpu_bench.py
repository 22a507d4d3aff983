"""One backbone's training and inference measurements, run by the GPU check in a child process.

Each backbone gets a process (and a time limit) of its own, so a hang, an out-of-memory error
or a slow compilation costs that backbone only. The measurements are those of
:mod:`leukopipe_tools.benchmark`: the real training loop versus the pure step (their ratio),
the epoch split, the checkpoint save, the loader wait versus compute per step, batched
inference and peak GPU memory. The result file is rewritten after every measurement, so a
backbone stopped by its time limit still reports what it finished.

    python -m leukopipe_tools.gpu_bench --backbone resnet50 --device cuda --json-out r.json \\
        --train-pixels train_pixels.npy --train-manifest train.parquet \\
        --val-pixels val_pixels.npy --val-manifest val.parquet
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from leukopipe.plumbing.atomic import write_json
from leukopipe_tools import benchmark as bm


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-batch-size", type=int, default=512,
                   help="batch of the inference measurement (evaluate.batch_size)")
    p.add_argument("--epochs", type=int, default=3, help="real-loop epochs (the first is dropped)")
    p.add_argument("--steps", type=int, default=10,
                   help="timed steps of the pure train step and of the step breakdown")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers of the real loop")
    p.add_argument("--amp", default="bf16")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--compile-backend", default=None,
                   help="torch.compile backend instead of the default (inductor); the CPU tiny "
                        "mode uses 'eager': Dynamo's graph capture without code generation, "
                        "which on 2 CPU cores takes seconds instead of minutes")
    p.add_argument("--only-ratio", action="store_true",
                   help="measure the real loop and the pure step only (the compile comparison)")
    for name in ("train-pixels", "train-manifest", "val-pixels", "val-manifest", "json-out"):
        p.add_argument(f"--{name}", type=Path, required=True)
    return p


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the measurements in order, rewriting ``args.json_out`` after each one."""
    import torch

    if args.compile_backend:
        # the training loop calls torch.compile(model): give it the requested backend
        torch.compile = functools.partial(torch.compile, backend=args.compile_backend)
    result: dict[str, Any] = {"backbone": args.backbone, "compile": args.compile,
                              "compile_backend": args.compile_backend or "default",
                              "device": args.device, "rows": {}, "done": False}

    def record(key: str, row: bm.Row) -> None:
        result["rows"][key] = asdict(row)
        write_json(args.json_out, result)

    write_json(args.json_out, result)
    record("real", bm.real_loop_rate(bm.RealLoop(
        args.backbone, args.train_pixels, args.train_manifest, args.val_pixels,
        args.val_manifest, args.batch_size, args.device, epochs=args.epochs,
        workers=args.workers, amp=args.amp, compile=args.compile)))
    image_size = int(np.load(args.train_pixels, mmap_mode="r").shape[1])
    record("pure", bm.pure_step_rate(args.backbone, image_size, args.batch_size, args.device,
                                     steps=args.steps, amp=args.amp, compile=args.compile))
    if not args.only_ratio:
        with tempfile.TemporaryDirectory(prefix="leukopipe-save-") as tmp:
            record("save", bm.checkpoint_save_seconds(args.backbone, Path(tmp), args.device))
        record("breakdown", bm.step_breakdown(args.backbone, args.train_pixels, args.batch_size,
                                              args.device, args.workers, args.amp,
                                              steps=args.steps))
        record("inference", bm.inference_rate(args.backbone, args.val_pixels,
                                              args.eval_batch_size, args.device))
    result["done"] = True
    write_json(args.json_out, result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    measure(_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
