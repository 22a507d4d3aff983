"""A self-contained HTML report (tables and figures inline) from the comparison outputs."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from leukopipe.report import compare

FIGURE_CAPTIONS = {
    "roc": "ROC curves of every experiment on its test set (ALL positive); AUC in the legend.",
    "confusion": "Confusion matrices at the configured threshold (counts and row shares).",
    "training_curves": "Loss and validation macro-F1 per epoch; the star marks the best epoch.",
    "reliability": "Reliability diagram on the test set; expected calibration error in the legend.",
    "risk_coverage": "Expert referral: accuracy of kept cells versus the share kept; the diamond"
    " is the confidence threshold chosen on validation.",
}
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0} td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:0 1em 1.5em 0;vertical-align:top;max-width:580px}
figure img{max-width:100%;border:1px solid #ddd} figcaption{font-size:13px;color:#444}
.caption{font-size:13px;color:#444;max-width:1100px}
"""


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="–", float_format=lambda x: f"{x:.2f}", border=0)


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(Path(path).stem)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def build_html(rows: pd.DataFrame, figures: list[Path], gradcams: list[Path] = ()) -> str:
    """The report page: what was run, the tables with captions, every figure inline, and the
    Grad-CAM grids (one per experiment, named by its folder)."""
    summary = compare.summary_table(rows)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>leukopipe report</title>",
        f"<style>{STYLE}</style></head><body><h1>leukopipe: ALL vs Hem transfer learning</h1>",
        "<p class='caption'>",
        html.escape(
            f"{len(rows)} experiment(s); datasets: "
            f"{', '.join(sorted({str(d) for d in rows['dataset'].dropna()})) or 'unknown'}; "
            f"code versions: {', '.join(sorted({str(c) for c in rows['code_version'].dropna()}))}."
        ),
        "</p><h2>Table 1. Test-set comparison</h2>",
        f"<p class='caption'>{html.escape(compare.caption(rows))}</p>",
        _table(compare.display_table(summary, compare.SHOWN)),
        "<h2>Table 2. Our F1 beside the published values</h2>",
        "<p class='caption'>Published rows come from leukopipe/report/published.yaml; Study A's"
        " Table 3 mixes protocols (challenge entries: weighted F1, patient-disjoint tests).</p>",
        _table(compare.literature_table(rows)),
        "<h2>Table 3. Frozen versus partial fine-tuning (Study B)</h2>",
        "<p class='caption'>Accuracies at the best validation epoch; gap = train minus"
        " validation accuracy in points.</p>",
        _table(compare.study_b_table(rows)),
        "<h2>Table 4. Subject-level diagnosis</h2>",
        "<p class='caption'>One call per subject from the probabilities of its cells (mean"
        " probability of ALL, or fraction of cells called ALL) against a threshold chosen on the"
        " validation subjects; sensitivity and specificity over test subjects with Wilson 95 %"
        " intervals. Cross-validation: each fold's own threshold, subjects pooled.</p>",
        _table(compare.subject_level_table(rows)) if "fold" in rows else "<p>(none)</p>",
        "<h2>Figures</h2>",
    ]
    for fig in figures:
        parts.append(_img(fig, FIGURE_CAPTIONS.get(Path(fig).stem, Path(fig).stem)))
    if gradcams:
        parts.append("<h2>Grad-CAM</h2>")
        parts.append(
            "<p class='caption'>Grad-CAM maps of the called class on sample test cells, from the"
            " deepest convolutional stage (red: regions that raised that class's logit). Rows:"
            " true class and whether the call was right; the most confident cells of each"
            " group.</p>"
        )
        for g in gradcams:
            parts.append(_img(g, Path(g).parent.name))
    parts.append("<h2>Provenance</h2>")
    prov = rows[["experiment", "code_version", "checkpoint_sha256", "metrics_file"]]
    parts.append(_table(prov))
    parts.append("</body></html>")
    return "\n".join(parts)
