#!/usr/bin/env python3
"""GPU check: the real pipeline, resume after kills and the benchmark, on one node in < 9 min.

    python3 scripts/gpu_check.py --out gpu-check              # on a CUDA node (make gpu-check)
    python3 scripts/gpu_check.py --out /tmp/gc --device cpu --tiny   # the same code, tiny, CPU

Writes gpu-check.md (the summary) and snakemake.log into --out. Needs the package's own
dependencies and the checkout installed in this Python (`pip install --no-deps -e .`, which
.venv and tools/gpu-session.sh do).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

try:
    from leukopipe_tools import gpu_check as gc
except ModuleNotFoundError as exc:  # a bare python3: say how to install, not a traceback
    sys.exit(f"error: {exc.name} is not importable by {sys.executable}; install this checkout "
             "first: python3 -m pip install --no-deps -e . (or run sh tools/gpu-session.sh)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(gc.__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("gpu-check"),
                   help=f"folder for {gc.SUMMARY_NAME} and {gc.SNAKEMAKE_LOG} (small files only)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--tiny", action="store_true",
                   help="tiny sizes (few donors, 32 px, 1 epoch, resnet18 only, Study A's and "
                        "B's shapes without cross-validation or ensemble): the same code path "
                        "on CPU, for the test suite")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="scratch folder for data, stores and runs (several GB at full size); "
                        "default: a new temporary folder, removed at the end")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch folder")
    p.add_argument("--parts", default=",".join(gc.PARTS),
                   help=f"comma-separated subset of {','.join(gc.PARTS)}")
    p.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                   help="end everything this many seconds after the start, cutting the last "
                        "parts' budgets to fit (default: the sum of the budgets + "
                        f"{gc.FINISH_S:.0f} s)")
    p.add_argument("--budget", nargs="*", default=[], metavar="PART=SECONDS",
                   help="override a part's time budget, e.g. bench=240 (defaults on a GPU: "
                        f"{', '.join(f'{k}={v:.0f}' for k, v in gc.BUDGETS.items())}; --tiny: "
                        f"{', '.join(f'{k}={v:.0f}' for k, v in gc.TINY_BUDGETS.items())})")
    args = p.parse_args(argv)
    args.parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    unknown = sorted(set(args.parts) - set(gc.PARTS))
    if unknown:
        p.error(f"unknown part(s) {unknown}; choose from {', '.join(gc.PARTS)}")
    try:
        args.budget = gc.parse_budgets(args.budget, (gc.TINY if args.tiny else gc.FULL).budgets)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    return gc.run_check(gc.CheckOptions(a.out, a.device, a.tiny, a.parts, a.budget, a.work_dir,
                                        a.keep_work, a.deadline))


if __name__ == "__main__":
    sys.exit(main())
