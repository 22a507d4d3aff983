#!/usr/bin/env python
"""Merge step: index every labelled C-NMC image (training folds + preliminary test).

Reads the raw-data description written by the download step, decodes and hashes each image,
and writes index.parquet and summary.json. Stops with a list of every bad file otherwise.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from leukopipe.data.merge import build_index, relative_paths
from leukopipe.data.raw_layout import locate
from leukopipe.plumbing import atomic, cli
from leukopipe.plumbing.errors import MissingInputError
from leukopipe.plumbing.provenance import provenance

log = logging.getLogger("merge")


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument(
        "--raw-json",
        required=True,
        type=Path,
        help="raw.json written by the download step (the copy is ready)",
    )
    p.add_argument(
        "--raw-dir",
        required=True,
        type=Path,
        help="folder holding the raw copy now; index paths are relative to it",
    )
    p.add_argument(
        "--expected-size",
        type=int,
        required=True,
        help="width and height every image must have; 0 accepts any size",
    )
    p.add_argument("--workers", type=int, default=1, help="processes decoding and hashing images")
    p.add_argument("--index-out", required=True, type=Path, help="index.parquet to write")
    p.add_argument("--summary-out", required=True, type=Path, help="summary.json to write")
    args = p.parse_args(argv)

    if not args.raw_json.is_file():
        raise MissingInputError(f"{args.raw_json}: not found; run the download step first")
    layout = locate(args.raw_dir)
    start = time.perf_counter()
    index, summary = build_index(layout, args.expected_size or None, args.workers, args.raw_dir)
    # the data are known by content, not by place: paths relative to the raw folder
    index["path"] = relative_paths(index["path"], args.raw_dir)
    seconds = time.perf_counter() - start
    summary["throughput"] = {
        "images": len(index),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(index) / seconds, 1) if seconds else None,
        "workers": args.workers,
    }
    summary["provenance"] = provenance()
    debris = summary["skipped_debris"]
    if debris["count"]:
        log.info(
            "skipped %d piece(s) of archive debris, %d bytes (%s)",
            debris["count"],
            debris["bytes"],
            ", ".join(f"{k}: {v['count']}" for k, v in debris["per_kind"].items()),
        )
    atomic.write_parquet(args.index_out, index)
    atomic.write_json(args.summary_out, summary)
    log.info(
        "indexed %d images (%s) in %.1f s: %s",
        len(index),
        summary["per_class"],
        seconds,
        args.index_out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
