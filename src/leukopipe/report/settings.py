"""What a run's setting was, from its own records, and what differs from a published setting.

A run's setting (image size, pretrained weights, epoch budget, seeds) comes from its
``metrics.json`` (the training record, which holds the weights record the run started from); a
published setting from ``published.yaml`` (``setting:``; null where the source does not say).
Only what a source states can differ from it; a difference in image size, weights (none
against pretrained) or a smaller epoch budget makes the run not comparable with the number.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

SETTING = "Setting"
DIFFERS = "Differs from the published setting"
NOT_STATED = "not stated"
NO_WEIGHTS = "none (random initialisation)"


def _values(group: pd.DataFrame, column: str) -> list[Any]:
    if column not in group:
        return []
    return sorted({v for v in group[column] if v is not None and not pd.isna(v)}, key=str)


def run_weights(row: Any) -> str | None:
    """The weights a run started from: its timm tag from its recorded weights, ``none`` when it
    trained from scratch, None when its record says nothing (ensembles, pooled folds)."""
    path = getattr(row, "pretrained_weights", None)
    if getattr(row, "image_size", None) is None or pd.isna(row.image_size):
        return None  # no training record
    if path is None or pd.isna(path):
        return NO_WEIGHTS
    tag = getattr(row, "weights_tag", None)
    if not isinstance(tag, str) or not tag:
        return "pretrained (tag not recorded)"
    # a backbone named with its tag (resnet50.tv_in1k) already says it
    return str(row.backbone) if str(row.backbone).endswith(f".{tag}") else f"{row.backbone}.{tag}"


def run_setting(group: pd.DataFrame) -> dict[str, Any]:
    """The setting of the runs summarised in one row (their seeds), as their records say."""
    return {
        "image_size": [int(v) for v in _values(group, "image_size")],
        "weights": sorted({w for w in (run_weights(r) for r in group.itertuples()) if w}),
        "max_epochs": [int(v) for v in _values(group, "max_epochs")],
        "patience": [int(v) for v in _values(group, "patience")],
        "seeds": len(_values(group, "seed")) or len(group),
        "backbones": [str(v) for v in _values(group, "backbone")],
    }


def _join(values: list[Any]) -> str:
    return "/".join(map(str, values))


def setting_text(s: dict[str, Any]) -> str:
    """e.g. ``64 px; weights none (random initialisation); at most 6 epochs (patience 3); 1
    seed``; a row without a training record (an ensemble) refers to its members."""
    if not s["image_size"]:
        return "not recorded (see its members' rows)"
    parts = []
    if s["image_size"]:
        parts.append(f"{_join(s['image_size'])} px")
    if s["weights"]:
        parts.append(f"weights {_join(s['weights'])}")
    if s["max_epochs"]:
        patience = f" (patience {_join(s['patience'])})" if s["patience"] else ""
        parts.append(f"at most {_join(s['max_epochs'])} epochs{patience}")
    parts.append(f"{s['seeds']} seed{'s' if s['seeds'] != 1 else ''}")
    return "; ".join(parts)


def published_setting_text(p: dict[str, Any]) -> str:
    """A published setting in the same words, ``not stated`` where the source does not say."""
    size = f"{p['image_size']} px" if p.get("image_size") else f"image size {NOT_STATED}"
    weights = f"weights {p['pretrained'] or NOT_STATED}"
    if p.get("max_epochs"):
        patience = f" (patience {p['patience']})" if p.get("patience") else ""
        epochs = f"at most {p['max_epochs']} epochs{patience}"
    else:
        epochs = f"epochs {NOT_STATED}"
    parts = [size, weights, epochs, f"runs: {p.get('runs') or NOT_STATED}"]
    if p.get("model"):
        parts.insert(0, str(p["model"]))
    return "; ".join(parts)


def differences(s: dict[str, Any], p: dict[str, Any], who: str) -> tuple[list[str], list[str]]:
    """(what makes the run not comparable, other differences) against what ``who`` states."""
    blocking, other = [], []
    size = p.get("image_size")
    if size and s["image_size"] and s["image_size"] != [size]:
        blocking.append(f"{_join(s['image_size'])} px ({who}: {size} px)")
    if p.get("pretrained") and NO_WEIGHTS in s["weights"]:
        blocking.append(f"random initialisation ({who}: {p['pretrained']})")
    epochs = p.get("max_epochs")
    if epochs and s["max_epochs"] and min(s["max_epochs"]) < epochs:
        patience = f", patience {p['patience']}" if p.get("patience") else ""
        blocking.append(f"at most {_join(s['max_epochs'])} epochs ({who}: {epochs}{patience})")
    backbone = p.get("backbone")  # a timm name, where the source names one model
    if backbone and s["backbones"] and s["backbones"] != [backbone]:
        other.append(f"model {_join(s['backbones'])} ({who}: {backbone})")
    return blocking, other


def compare_settings(s: dict[str, Any], published: list[tuple[str, dict[str, Any]]]) -> str:
    """The Differs cell: ``Not comparable: ...`` when the image size, the weights or the epoch
    budget differs from what a source states; otherwise the other differences, or that
    nothing stated differs."""
    blocking, other = [], []
    for who, p in published:
        b, o = differences(s, p, who)
        blocking += b
        other += o
    if not s["image_size"]:
        return "not recorded (see its members' rows)"
    if blocking:
        return "Not comparable: " + "; ".join(blocking + other)
    if other:
        return "Same stated setting except: " + "; ".join(other)
    return "Nothing the source states differs"
