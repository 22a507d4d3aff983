#!/usr/bin/env python
"""List finished outputs whose code changed in substance since they were made, and why.

Run from the workflow's folder. Each line: the output, its rule, and the files whose substance
changed (comments, docstrings, formatting and message wording never count). Snakemake reruns
these on its own; to rerun one step's outputs explicitly: snakemake -R <rule> (or
--forcerun <file>).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.plumbing import cli
from leukopipe.workflow.stale import print_stale

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The step's flags."""
    p = cli.parser(__doc__)
    p.add_argument("--workdir", type=Path, default=Path.cwd(),
                   help="folder Snakemake runs in (holds .snakemake/)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    print_stale(parse_args(argv).workdir, REPO / "scripts")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
