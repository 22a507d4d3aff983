"""A self-contained HTML report (tables and figures inline) from the comparison outputs."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from leukopipe import compare

SHOWN = [
    "Accuracy",
    "Precision (ALL)",
    "Recall (ALL)",
    "F1 (ALL)",
    "AUC",
    "Macro-F1",
    "Weighted F1",
]
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


def build_html(rows: pd.DataFrame, figures: list[Path]) -> str:
    """The report page: what was run, the three tables with captions, every figure inline."""
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
        _table(compare.display_table(summary, SHOWN)),
        "<h2>Table 2. Our F1 beside the published values</h2>",
        "<p class='caption'>Published rows come from leukopipe/data/published.yaml; Study A's"
        " Table 3 mixes protocols (challenge entries: weighted F1, patient-disjoint tests).</p>",
        _table(compare.literature_table(rows)),
        "<h2>Table 3. Frozen versus partial fine-tuning (Study B)</h2>",
        "<p class='caption'>Accuracies at the best validation epoch; gap = train minus"
        " validation accuracy in points.</p>",
        _table(compare.study_b_table(rows)),
        "<h2>Figures</h2>",
    ]
    for fig in figures:
        data = base64.b64encode(Path(fig).read_bytes()).decode("ascii")
        cap = FIGURE_CAPTIONS.get(Path(fig).stem, Path(fig).stem)
        parts.append(
            f"<figure><img alt='{html.escape(Path(fig).stem)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        )
    parts.append("<h2>Provenance</h2>")
    prov = rows[["experiment", "code_version", "checkpoint_sha256", "metrics_file"]]
    parts.append(_table(prov))
    parts.append("</body></html>")
    return "\n".join(parts)
