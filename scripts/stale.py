#!/usr/bin/env python
"""List finished outputs whose code changed in substance since they were made, and why.

Run from the workflow's folder. Each line: the output, its rule, and the files whose substance
changed (comments, docstrings, formatting and message wording never count). Snakemake reruns
these on its own; to rerun one step's outputs explicitly: snakemake -R <rule> (or
--forcerun <file>).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.plumbing import cli
from leukopipe.workflow.stale import stale_outputs

REPO = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--workdir", type=Path, default=Path.cwd(),
                   help="folder Snakemake runs in (holds .snakemake/)")
    args = p.parse_args(argv)
    stale = stale_outputs(args.workdir, REPO / "scripts")
    for s in stale:
        print(f"{s.path}\t{s.rule}\t{', '.join(s.changed)}")
    print(f"{len(stale)} output(s) out of date with respect to code", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
