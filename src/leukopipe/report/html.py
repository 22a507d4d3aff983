"""A self-contained HTML report (tables and figures inline) from the comparison outputs.

The tables, captions, deviations and references are the compare step's own
(``leukopipe.report.tables``, ``captions``), rendered as HTML."""

from __future__ import annotations

import base64
import html
import logging
import re
from pathlib import Path

import pandas as pd

from leukopipe.plumbing import atomic
from leukopipe.plumbing.errors import MissingInputError
from leukopipe.plumbing.readers import read_parquet
from leukopipe.report import tables
from leukopipe.report.captions import FIGURES, GRADCAM, SECTIONS
from leukopipe.report.deviations import deviations
from leukopipe.report.published import citations
from leukopipe.report.summary import headline

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f0f0f0} td:first-child,th:first-child,td.text{text-align:left}
.scroll{overflow-x:auto;max-width:100%}
.ci{display:block;font-size:11px;color:#555;white-space:nowrap}
.hash{font-family:monospace}
.banner{background:#fff3cd;border:2px solid #c69500;padding:.6em 1em;margin:1em 0;color:#3d2f00}
.summary{font-size:15px;line-height:1.45;max-width:1100px}
nav ol{columns:2;font-size:14px}
figure{display:block;margin:0 0 2em;max-width:1000px}
figure img{width:100%;max-width:1000px;border:1px solid #ddd} figcaption{font-size:13px;color:#444}
.caption{font-size:13px;color:#444;max-width:1100px}
"""

# "value [lo, hi]" and "value ± std" cells: the value on the first line, the interval below it
_INTERVAL = re.compile(r"^(-?[0-9.]+)\s+(\[[^\]]+\]|± [0-9.]+)$")


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    text = str(value)
    m = _INTERVAL.match(text)
    if m:
        return f"{html.escape(m.group(1))}<span class='ci'>{html.escape(m.group(2))}</span>"
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        # a sha256 in full would widen the table past the page: its start, the rest on hover
        return f"<span class='hash' title='{text}'>{text[:12]}…</span>"
    return html.escape(text)


def _align(value: object) -> str:
    # numbers line up on the right, words read from the left
    words = isinstance(value, str) and not value[:1].isdigit() and value != "–"
    return " class='text'" if words else ""


def _table(df: pd.DataFrame) -> str:
    """An HTML table that never runs off the page (it scrolls inside its box if it must)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td{_align(v)}>{_cell(v)}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(Path(path).stem)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _items(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def build_html(rows: pd.DataFrame, figures: list[Path], gradcams: list[Path] = ()) -> str:
    """The report page: the headline (warnings, best subject-disjoint model, the leak, each
    study's reproduction), a table of contents, the tables with captions, every figure inline,
    the Grad-CAM grids (one per experiment, named by its folder), the deviations from the
    papers, the references and the provenance."""
    head = headline(rows)
    sections: list[tuple[str, str]] = []  # (title, html body)
    for t in tables.build(rows):
        body = f"<p class='caption'>{html.escape(t.caption)}</p>" + (
            _table(t.frame) if len(t.frame) else "<p>(no rows)</p>"
        )
        sections.append((t.title, body))
    sections.append(
        ("Figures", "".join(_img(f, FIGURES.get(Path(f).stem, Path(f).stem)) for f in figures))
    )
    if gradcams:
        body = f"<p class='caption'>{html.escape(GRADCAM)}</p>" + "".join(
            _img(g, Path(g).parent.name) for g in gradcams
        )
        sections.append(("Grad-CAM", body))
    sections.append((SECTIONS["deviations"], _items(deviations(rows))))
    sections.append((SECTIONS["references"], _items(citations())))
    prov = rows[["experiment", "code_version", "checkpoint_sha256", "metrics_file"]]
    sections.append(("Provenance", _table(prov)))

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>leukopipe report</title>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<style>{STYLE}</style></head><body><h1>leukopipe: ALL vs Hem transfer learning</h1>",
    ]
    parts += [f"<div class='banner' role='alert'><b>Note:</b> {html.escape(w)}</div>"
              for w in head.warnings]
    parts.append("<h2 id='summary'>Summary</h2><div class='summary'>" + _items(head.lines))
    parts.append(
        "<p class='caption'>"
        + html.escape(
            f"{len(rows)} result(s); datasets: "
            f"{', '.join(sorted({str(d) for d in rows['dataset'].dropna()})) or 'unknown'}; "
            f"code versions: {', '.join(sorted({str(c) for c in rows['code_version'].dropna()}))}."
        )
        + "</p></div>"
    )
    parts.append(
        "<nav><h2>Contents</h2><ol>"
        + "".join(f"<li><a href='#{_anchor(t)}'>{html.escape(t)}</a></li>" for t, _ in sections)
        + "</ol></nav>"
    )
    for title, body in sections:
        parts.append(f"<h2 id='{_anchor(title)}'>{html.escape(title)}</h2>{body}")
    parts.append("</body></html>")
    return "\n".join(parts)


def report_step(
    tables_md: Path, rows: Path, figures: list[Path], gradcam: list[Path], out: Path
) -> None:
    """The report step: ``out`` (report.html) from the compare step's rows and figures and the
    Grad-CAM grids; ``tables_md`` (comparison.md) must exist, the sign that compare ran."""
    if not tables_md.is_file():
        raise MissingInputError(f"{tables_md}: run the compare step first")
    atomic.write_text(out, build_html(read_parquet(rows), figures, gradcam))
    # the log line keeps the name it had when the script logged it
    logging.getLogger("report").info("wrote %s", out)
