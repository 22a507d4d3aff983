#!/usr/bin/env python
"""Report step: one self-contained HTML page with the comparison tables and figures.

(`snakemake --report` also works: the tables and figures are registered as report items.)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.plumbing import cli
from leukopipe.report.html import report_step


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The step's flags."""
    p = cli.parser(__doc__)
    p.add_argument("--tables", type=Path, required=True, help="comparison.md (checked to exist)")
    p.add_argument("--rows", type=Path, required=True, help="rows.parquet from the compare step")
    p.add_argument("--figures", type=Path, nargs="+", required=True, help="PNG figures to embed")
    p.add_argument(
        "--gradcam",
        type=Path,
        nargs="*",
        default=[],
        help="Grad-CAM grid PNGs (eval/<experiment>/gradcam.png) to embed",
    )
    p.add_argument("--out", type=Path, required=True, help="report.html to write")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report_step(args.tables, args.rows, args.figures, args.gradcam, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
