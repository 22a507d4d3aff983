"""The published numbers this project reproduces, loaded from the package data file.

The numbers live in ``leukopipe/report/published.yaml`` (data, not code) so that the comparison
tables and the tests read one source; each entry carries its ``source``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

_RESOURCE = ("report", "published.yaml")


def load_published() -> dict[str, Any]:
    """Parse ``leukopipe/report/published.yaml`` (Study A Tables 2-3, Study B, benchmarks)."""
    text = resources.files("leukopipe").joinpath(*_RESOURCE).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(
            "leukopipe/report/published.yaml is not a mapping; the installed package is damaged "
            "- reinstall leukopipe."
        )
    return data


CITED = {
    "study_a": "Study A",
    "study_b": "Study B",
    "leakage_aware_benchmark": "Leakage-aware benchmark",
    "challenge_winner": "C-NMC 2019 challenge winner",
    "dataset": "Dataset",
}


def citations() -> list[str]:
    """Every reference as the report and README cite it: authors (where named), title, venue,
    year, identifier and address."""
    pub = load_published()
    return [
        f"{label}: {' '.join(pub[key]['citation'].split())} {pub[key]['url']}"
        for key, label in CITED.items()
    ]
