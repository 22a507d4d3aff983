"""Cross-validation pooled out of fold: every labelled image tested once, by the fold model
that never saw its subject, scored as one test set.

The input is what evaluation stored per fold (predictions and metrics.json); nothing is
re-scored. Metrics and subject-bootstrap intervals come from the concatenated predictions;
referral and subject-level calls keep each fold's own validation-chosen thresholds
(:func:`leukopipe.evaluate.eval_record.pooled_record`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pandas as pd

from leukopipe.data.split_modes import family, parse_split_id, pooled_name
from leukopipe.evaluate.eval_record import (
    OutputFiles,
    finish_record,
    pooled_record,
    read_metrics,
    write_outputs,
)
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.readers import read_parquet

# the step's own name, which its log lines have always carried
log = logging.getLogger("pool_folds")


def load_parts(
    predictions: list[str | os.PathLike[str]], records: list[str | os.PathLike[str]]
) -> list[tuple[pd.DataFrame, dict[str, Any]]]:
    """Each fold's (predictions, metrics record), in fold order; every fold of one family."""
    if len(predictions) != len(records) or len(records) < 2:
        raise InvalidInputError(
            f"pooling needs the predictions and the metrics.json of every fold (at least 2),"
            f" got {len(predictions)} and {len(records)}"
        )
    parts = []
    for pred_path, rec_path in zip(predictions, records, strict=True):
        rec = read_metrics(rec_path)
        parts.append((read_parquet(pred_path), rec))
    splits = [str(rec["experiment"]["split"]) for _, rec in parts]
    folds = [parse_split_id(s) for s in splits]
    if None in folds or len({family(s) for s in splits}) != 1:
        raise InvalidInputError(f"not the folds of one cross-validation: splits {splits}")
    k = folds[0][0]
    if sorted(f for _, f in folds) != list(range(k)):
        raise InvalidInputError(
            f"pooling needs all {k} folds of {family(splits[0])} once each, got {splits}"
        )
    order = sorted(range(len(parts)), key=lambda i: folds[i][1])
    return [parts[i] for i in order]


def pool(
    parts: list[tuple[pd.DataFrame, dict[str, Any]]],
    *,
    threshold: float,
    n_boot: int,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The pooled predictions and record; its experiment says which folds it pools."""
    predictions, record = pooled_record(parts, threshold=threshold, n_boot=n_boot, seed=seed)
    first = parts[0][1]["experiment"]
    split = str(first["split"])
    fam = family(split)
    record["experiment"] = {
        **{k: v for k, v in first.items() if k != "fold"},
        "name": pooled_name(str(first["name"]), split),
        "split": fam,
        "family": fam,
        "pooled": True,
        "folds": [str(rec["experiment"]["name"]) for _, rec in parts],
    }
    # the folds train alike: the first one's weights record stands for all
    record["training"] = {"weights": (parts[0][1].get("training") or {}).get("weights")}
    return predictions, record


def run_pool(
    member_predictions: list[str | os.PathLike[str]],
    member_metrics: list[str | os.PathLike[str]],
    outputs: OutputFiles,
    *,
    threshold: float,
    n_boot: int,
    seed: int = 0,
) -> dict[str, Any]:
    """The pool_folds step: every fold's stored predictions and record pooled out of fold,
    written atomically, a summary logged; returns the record."""
    parts = load_parts(member_predictions, member_metrics)
    predictions, scored = pool(parts, threshold=threshold, n_boot=n_boot, seed=seed)
    record = finish_record(
        scored, experiment=scored["experiment"], outputs=outputs, training=scored["training"]
    )
    write_outputs(outputs, predictions, None, record)
    log.info(
        "pooled %d folds of %s: %d test images, accuracy %.4f",
        len(parts), record["experiment"]["family"], record["n_test"],
        record["metrics"]["accuracy"],
    )
    return record
