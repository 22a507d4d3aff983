"""The compare step as one call: comparison tables and figures from stored evaluation results.

Its own module, so that the code fingerprints of the modules it draws on (tables, figures)
stay out of the steps that use only one of them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from leukopipe.report import compare, figures, protocol, tables

# the step's log line keeps the name it had when the script logged it
_step_log = logging.getLogger("compare")


def compare_step(
    metrics: list[Path], audits: list[Path], tables_dir: Path, figures_dir: Path
) -> None:
    """Rows from the metrics.json files with their test sets' protocol (the split audits), then
    tables/comparison.{md,csv,tex}, rows.parquet and the figures."""
    rows = compare.flat_rows(compare.load_records(metrics))
    rows = protocol.with_audits(rows, protocol.load_audits(audits))
    tables.write(rows, tables_dir)
    figures.comparison_figures(rows, figures_dir)
    _step_log.info("compared %d experiment(s): %s", len(rows), tables_dir / "comparison.md")
