#!/usr/bin/env python
"""Compare step: comparison tables and figures from stored evaluation results (no training).

Reads metrics.json files (with predictions.parquet and history.parquet beside each) and writes
tables/comparison.{md,csv,tex} (Study A Table 2's shape, plus the literature and Study B
tables) and figures/*.png. A copied results/<run>/eval/ tree is all it needs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from leukopipe import atomic, cli, compare, figures

log = logging.getLogger("compare")
SHOWN = [
    "Accuracy",
    "Precision (ALL)",
    "Recall (ALL)",
    "F1 (ALL)",
    "AUC",
    "Macro-F1",
    "Weighted F1",
]


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--metrics",
        nargs="+",
        required=True,
        type=Path,
        help="metrics.json files; predictions.parquet and history.parquet sit beside each",
    )
    p.add_argument(
        "--tables-dir", required=True, type=Path, help="folder for comparison.{md,csv,tex}"
    )
    p.add_argument("--figures-dir", required=True, type=Path, help="folder for the PNG figures")
    args = p.parse_args(argv)

    records = compare.load_records(args.metrics)
    rows = compare.flat_rows(records)
    summary = compare.summary_table(rows)
    main_table = compare.display_table(summary, SHOWN)
    cap = compare.caption(rows)
    lit = compare.literature_table(rows)
    study_b = compare.study_b_table(rows)

    md = "\n".join(
        [
            compare.markdown(
                main_table, "Table 1. Test-set comparison (Study A's Table 2 shape)", cap
            ),
            compare.markdown(
                lit,
                "Table 2. Our F1 beside the published values",
                "Published rows from leukopipe/data/published.yaml. Study A's Table 3 "
                "mixes split protocols; challenge entries used weighted F1 on "
                "patient-disjoint test sets.",
            ),
            compare.markdown(
                study_b,
                "Table 3. Frozen versus partial fine-tuning (Study B)",
                "Accuracies at the best validation epoch; gap = train minus validation "
                "accuracy in points. Study B reports validation accuracy on the "
                "preliminary test set (patient-disjoint).",
            ),
            "Provenance: each row's metrics file, checkpoint digest and code version are in "
            "comparison.csv.",
        ]
    )
    atomic.write_text(args.tables_dir / "comparison.md", md + "\n")
    atomic.write_parquet(args.tables_dir / "rows.parquet", rows)
    with atomic.atomic_path(args.tables_dir / "comparison.csv") as tmp:
        rows.to_csv(tmp, index=False)
    tex = (
        compare.latex(main_table, "Test-set comparison", cap)
        + "\n"
        + compare.latex(
            study_b, "Frozen versus partial fine-tuning", "Accuracies at the best validation epoch."
        )
    )
    atomic.write_text(args.tables_dir / "comparison.tex", tex)

    names = rows["experiment"].tolist()
    folders = {n: Path(f).parent for n, f in zip(names, rows["metrics_file"], strict=True)}
    preds = {n: pd.read_parquet(folders[n] / "predictions.parquet") for n in names}
    hist = {
        n: pd.read_parquet(folders[n] / "history.parquet")
        for n in names
        if (folders[n] / "history.parquet").exists()
    }
    best = dict(zip(names, rows["best_epoch"], strict=True))
    thresholds = dict(zip(names, rows["referral_threshold"], strict=True))
    fig = args.figures_dir
    figures.roc_figure(preds, fig / "roc.png")
    figures.confusion_figure(preds, fig / "confusion.png")
    figures.training_curves_figure(hist, fig / "training_curves.png", best)
    figures.reliability_figure(preds, fig / "reliability.png")
    figures.risk_coverage_figure(preds, fig / "risk_coverage.png", thresholds)
    log.info("compared %d experiment(s): %s", len(rows), args.tables_dir / "comparison.md")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
