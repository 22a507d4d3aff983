#!/usr/bin/env python
"""Report step: one self-contained HTML page with the comparison tables and figures.

(`snakemake --report` also works: the tables and figures are registered as report items.)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.plumbing import atomic, cli
from leukopipe.plumbing.errors import MissingInputError
from leukopipe.plumbing.readers import read_parquet
from leukopipe.report.html import build_html

log = logging.getLogger("report")


def main(argv: Sequence[str] | None = None) -> int:
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
    args = p.parse_args(argv)
    if not args.tables.is_file():
        raise MissingInputError(f"{args.tables}: run the compare step first")
    atomic.write_text(args.out, build_html(read_parquet(args.rows), args.figures, args.gradcam))
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
