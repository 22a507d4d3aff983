#!/usr/bin/env python
"""Compare step: comparison tables and figures from stored evaluation results (no training).

Reads metrics.json files (with predictions.parquet and history.parquet beside each) and writes
tables/comparison.{md,csv,tex} (Study A Table 2's shape with TTA, ensemble and cross-validation
rows, the literature and Study B tables, subject-level diagnosis) and figures/*.png.
Cross-validation folds are pooled out of fold from their stored predictions here. A copied
results/<run>/eval/ tree is all it needs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from leukopipe.report import compare, figures
from leukopipe.workflow import atomic, cli

log = logging.getLogger("compare")


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
    p.add_argument(
        "--threshold",
        type=float,
        required=True,
        help="probability of ALL from which a cell is called ALL (pooled folds)",
    )
    p.add_argument(
        "--bootstrap", type=int, required=True, help="bootstrap resamples for pooled folds' CIs"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    args = p.parse_args(argv)

    records = compare.load_records(args.metrics)
    rows, pooled_preds = compare.with_pooled(
        records, threshold=args.threshold, n_boot=args.bootstrap, seed=args.seed
    )
    summary = compare.summary_table(rows)
    main_table = compare.display_table(summary, compare.SHOWN)
    cap = compare.caption(rows)
    lit = compare.literature_table(rows)
    study_b = compare.study_b_table(rows)
    subjects = compare.subject_level_table(rows)

    md = "\n".join(
        [
            compare.markdown(
                main_table, "Table 1. Test-set comparison (Study A's Table 2 shape)", cap
            ),
            compare.markdown(
                lit,
                "Table 2. Our F1 beside the published values",
                "Published rows from leukopipe/report/published.yaml. Study A's Table 3 "
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
            compare.markdown(
                subjects,
                "Table 4. Subject-level diagnosis",
                "One call per subject from its cells: mean probability of ALL, or the "
                "fraction of its cells called ALL, against a threshold chosen on the "
                "validation subjects (highest balanced accuracy; per fold for pooled "
                "cross-validation). Sensitivity = ALL subjects called ALL, specificity = Hem "
                "subjects called Hem, with Wilson 95 % intervals over subjects.",
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

    # figures show whole test protocols: single folds are drawn through their pooled row
    shown = rows[rows["fold"].isna() | rows["pooled"]]
    preds = {
        r.experiment: pooled_preds[r.experiment]
        if r.pooled
        else pd.read_parquet(r.predictions_file)
        for r in shown.itertuples()
    }
    trained = rows[(rows["variant"] == "single") & ~rows["pooled"]]
    hist = {
        r.experiment: pd.read_parquet(Path(r.metrics_file).parent / "history.parquet")
        for r in trained.itertuples()
        if (Path(r.metrics_file).parent / "history.parquet").exists()
    }
    names = rows["experiment"].tolist()
    best = dict(zip(names, rows["best_epoch"], strict=True))
    # a pooled row has one referral threshold per fold: no single operating point to mark
    thresholds = {r.experiment: r.referral_threshold for r in rows.itertuples() if not r.pooled}
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
