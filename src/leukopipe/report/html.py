"""A self-contained HTML report (tables and figures inline) from the comparison outputs.

The tables, captions, deviations and references are the compare step's own
(``leukopipe.report.tables``, ``captions``), rendered as HTML."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from leukopipe.report import tables
from leukopipe.report.captions import FIGURES, GRADCAM, SECTIONS
from leukopipe.report.deviations import deviations
from leukopipe.report.published import citations

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


def _items(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"


def build_html(rows: pd.DataFrame, figures: list[Path], gradcams: list[Path] = ()) -> str:
    """The report page: what was run, the tables with captions, every figure inline, the
    Grad-CAM grids (one per experiment, named by its folder), the deviations from the papers
    and the references."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>leukopipe report</title>",
        f"<style>{STYLE}</style></head><body><h1>leukopipe: ALL vs Hem transfer learning</h1>",
        "<p class='caption'>",
        html.escape(
            f"{len(rows)} experiment(s); datasets: "
            f"{', '.join(sorted({str(d) for d in rows['dataset'].dropna()})) or 'unknown'}; "
            f"code versions: {', '.join(sorted({str(c) for c in rows['code_version'].dropna()}))}."
        ),
        "</p>",
    ]
    for t in tables.build(rows):
        parts += [
            f"<h2>{html.escape(t.title)}</h2>",
            f"<p class='caption'>{html.escape(t.caption)}</p>",
            _table(t.frame) if len(t.frame) else "<p>(no rows)</p>",
        ]
    parts.append("<h2>Figures</h2>")
    for fig in figures:
        parts.append(_img(fig, FIGURES.get(Path(fig).stem, Path(fig).stem)))
    if gradcams:
        parts.append("<h2>Grad-CAM</h2>")
        parts.append(f"<p class='caption'>{html.escape(GRADCAM)}</p>")
        for g in gradcams:
            parts.append(_img(g, Path(g).parent.name))
    parts.append(f"<h2>{html.escape(SECTIONS['deviations'])}</h2>")
    parts.append(_items(deviations(rows)))
    parts.append(f"<h2>{html.escape(SECTIONS['references'])}</h2>")
    parts.append(_items(citations()))
    parts.append("<h2>Provenance</h2>")
    prov = rows[["experiment", "code_version", "checkpoint_sha256", "metrics_file"]]
    parts.append(_table(prov))
    parts.append("</body></html>")
    return "\n".join(parts)
