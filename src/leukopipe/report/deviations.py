"""What differs from the papers, said with this run's own numbers: the image split's test
counts, the smaller training set, the pretrained weights, single runs, Study B's unstated
fine-tuning depth and its epoch chosen on the set it reports. The published side comes from
``published.yaml``, ours from the rows (metrics records plus split audits)."""

from __future__ import annotations

import pandas as pd

from leukopipe.report.compare import RANDOM_INIT
from leukopipe.report.published import load_published
from leukopipe.train.dinobloom_names import (
    TRAINED_SIZE,
    ZENODO_RECORD,
    architecture,
    is_dinobloom,
)
from leukopipe.train.weight_files import pretraining_data


def _image_split(rows: pd.DataFrame) -> list[str]:
    pub = load_published()["study_a"]
    test, labelled, train = pub["table2"]["test_set"], pub["labelled"], pub["train_set"]
    image = rows[(rows["split_kind"] == "image") & ~rows["pooled"]]
    # Study A's own test fraction (1,253 of 12,528) when this run has no image-level split
    frac = (
        float(image["test_fraction"].iloc[0])
        if len(image) and pd.notna(image["test_fraction"].iloc[0])
        else round(test["n"] / labelled["n"], 2)
    )
    rule_all, rule_hem = round(frac * labelled["n_all"]), round(frac * labelled["n_hem"])
    same_total = rule_all + rule_hem == test["n"]
    why = (
        f"Per-class rounding of {frac:g} x {labelled['n_all']:,} ALL and {frac:g} x"
        f" {labelled['n_hem']:,} Hem labelled images gives {rule_all} ALL + {rule_hem} Hem"
        f" on the full data; Study A's {test['n_all']} + {test['n_hem']} are"
        f" {100 * test['n_all'] / labelled['n_all']:.2f} % and"
        f" {100 * test['n_hem'] / labelled['n_hem']:.2f} % of its classes, so its split was not"
        " exactly stratified by class"
        + (f" (the total, {test['n']:,}, is the same)." if same_total else ".")
    )
    out = []
    if len(image):
        r = image.iloc[0]
        out.append(
            f"Image-level test set: {int(r.n_test_all)} ALL + {int(r.n_test_hem)} Hem images"
            f" ({frac:g} of each class, rounded per class) against Study A's"
            f" {test['n_all']} + {test['n_hem']}. {why}"
        )
        val = int(r.val_images)
        out.append(
            f"Training set: {int(r.train_all)} ALL + {int(r.train_hem)} Hem images on the"
            f" image-level split against Study A's {train['n_all']:,} + {train['n_hem']:,}:"
            f" validation ({val} images, {r.val_fraction:g} of the training part) is carved out"
            " of the training part here, because the test set must stay untouched and Study A"
            " does not say where its validation set came from."
        )
    else:
        out.append(f"No image-level split in this run. {why}")
    return out


def _pretrained(rows: pd.DataFrame) -> list[str]:
    trained = rows[(rows["variant"] == "single") & rows["backbone"].notna()]
    if trained.empty:
        return []
    tags = trained["weights_tag"] if "weights_tag" in trained else pd.Series(None, trained.index)
    uses = trained.assign(tag=tags.where(tags.notna(), None)).groupby(
        ["backbone", "tag"], dropna=False
    )["pretrained_weights"].agg(lambda s: s.notna().any())
    # a run whose record names no weights started from random initialisation
    uses[uses.index.get_level_values("tag") == RANDOM_INIT] = False
    size = trained["image_size"].dropna()
    at = f" at {int(size.iloc[0])} px" if len(size) and size.nunique() == 1 else ""
    if not uses.any():
        return [
            f"Pretrained weights: none; every model here trains{at} from random initialisation"
            " (weights.pretrained is false), unlike both studies. With pretrained weights, each"
            " backbone uses the timm tag its name gives (architecture.tag) or timm's default"
            " tag, whose resolution, normalisation and pretraining data this list then names."
        ]
    parts = []
    for (backbone, recorded), pretrained in uses.items():
        if not pretrained:
            parts.append(f"{backbone}: random initialisation (no weights file)")
            continue
        if is_dinobloom(str(backbone)):
            parts.append(
                f"{backbone}: DinoBloom's Zenodo checkpoint (record {ZENODO_RECORD}) converted"
                f" into timm's {architecture(str(backbone))}, pretrained at {TRAINED_SIZE} px on"
                " white-blood-cell images without labels, normalised with ImageNet's mean and"
                " std as DinoBloom's own evaluation code does; its paper names 13 public"
                " peripheral-blood and bone-marrow datasets, and C-NMC 2019 is not among those"
                " its authors' repository lists (the paper's own dataset table was not checked"
                " here)"
            )
            continue
        # the tag the run's weights record names; older records: timm's default tag
        named = f"{backbone}.{recorded}" if isinstance(recorded, str) else str(backbone)
        tag = pretrained_tag(named)
        data = pretraining_data(tag["tag"]) or "see the tag's model card"
        parts.append(
            f"{backbone}: timm tag {tag['tag']} ({data}), pretrained at {tag['input']} px,"
            f" normalised with mean {tag['mean']} and std {tag['std']}"
        )
    return [
        f"Pretrained weights: the timm tag each run's weights record names, trained at its own"
        f" resolution and normalisation, while every model here trains{at}: "
        + "; ".join(parts)
        + ". The studies do not name their weights. experiments[].backbones chooses a tag as"
        " architecture.tag (e.g. resnet50.tv_in1k, torchvision's original weights; the tags"
        " are listed by timm.list_pretrained('<architecture>*')); a bare architecture takes"
        " timm's default tag. The input normalisation and the weights file follow the tag."
    ]


def pretrained_tag(backbone: str) -> dict[str, str]:
    """timm's pretrained tag of ``backbone`` (``architecture.tag``, or the architecture's default
    tag): tag, input size and normalisation."""
    import timm  # deferred: only the report needs the registry, and it imports torch

    from leukopipe.train.models import normalisation

    cfg = timm.models.get_pretrained_cfg(backbone)
    mean, std = normalisation(backbone)
    side = cfg.input_size[-1] if cfg is not None and cfg.input_size else "?"
    return {
        "tag": cfg.tag if cfg is not None and cfg.tag else "(none)",
        "input": str(side),
        "mean": "(" + ", ".join(f"{v:g}" for v in mean) + ")",
        "std": "(" + ", ".join(f"{v:g}" for v in std) + ")",
    }


def _seeds(rows: pd.DataFrame) -> list[str]:
    single = rows[(rows["variant"] == "single") & rows["fold"].isna() & ~rows["pooled"]]
    if single.empty:
        return []
    seeds = single.groupby(["split", "model"])["seed"].nunique()
    once = int((seeds <= 1).sum())
    if once == 0:
        return [f"Every configuration ran {seeds.min()} to {seeds.max()} seeds."]
    return [
        f"Single runs: {once} of {len(seeds)} configurations ran one seed (as both studies did);"
        " their intervals resample test subjects and say nothing about the spread between"
        " training runs. Add seeds to experiments[].seeds for mean ± std over runs."
    ]


def _study_b_depth(rows: pd.DataFrame) -> list[str]:
    partial = rows[(rows["strategy"] == "partial") & rows["partial_stages"].notna()]
    if partial.empty:
        return []
    stages = sorted({int(s) for s in partial["partial_stages"]})
    return [
        "Partial fine-tuning: Study B fine-tunes 'the deeper convolutional stages' without"
        f" saying how many; here the deepest {', '.join(map(str, stages))} stage(s) train"
        " (experiments[].partial_stages)."
    ]


def _study_b_epoch(rows: pd.DataFrame) -> list[str]:
    pub = load_published()["study_b"]
    if not (rows["split_kind"] == pub["split"]).any():
        return []
    return [
        "Epoch selection: Study B stopped early on its 'validation' set, the preliminary test"
        f" set, and reports its accuracy on that same set (peak at epoch {pub['peak_epoch']}):"
        " choosing the epoch on the reported set makes the number optimistic by construction."
        " Here early stopping watches validation images carved out of the training folds, and"
        " the preliminary test set is only scored."
    ]


def deviations(rows: pd.DataFrame) -> list[str]:
    """The report's 'Deviations from the papers' items for this run."""
    return [
        *_image_split(rows),
        *_pretrained(rows),
        *_seeds(rows),
        *_study_b_depth(rows),
        *_study_b_epoch(rows),
    ]
