"""Every table and figure caption of the comparison, written once.

The compare step's Markdown, LaTeX and CSV tables, the HTML report and the Snakemake report
captions (``report/*.rst``) all read the texts below. The .rst files are generated from this
module (``python -m leukopipe.report.captions report``), and a test checks they are current.
Captions hold no numbers: counts and published values are added by the code that has them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from leukopipe.plumbing.atomic import write_text


@dataclass(frozen=True)
class Caption:
    """A table's title and the text under it."""

    title: str
    text: str


TABLES: dict[str, Caption] = {
    "main": Caption(
        "Table 1. Test-set comparison (Study A's Table 2 shape)",
        "Every evaluated model on its own test set, in percent. Protocol: image-level splits"
        " put cells of one patient in training and test (leaky, with the audit's counts);"
        " subject-disjoint splits never test a subject seen in training. Precision, recall and"
        " F1 are ALL-class values as in Study A; macro- and weighted F1 average both classes."
        " Single run: value [95 % bootstrap interval]; several seeds or folds: mean ± std."
        " TTA x8: mean probability over the 8 flips x 90-degree rotations;"
        " ensembles: soft vote (mean probability) of their members, from stored predictions;"
        " cross-validation: mean ± std over folds and one pooled out-of-fold row.",
    ),
    "study_a": Caption(
        "Table 2. Study A's published results beside this project's runs",
        "Study A's Table 2 (every backbone fully fine-tuned, image-level split) row by row,"
        " each followed by every run of this project of the same backbone fully fine-tuned on"
        " the image-level split, whatever its preprocessing, weights or seed; other"
        " configurations have no published counterpart and appear in Table 1 only. Precision,"
        " recall and F1 are ALL-class values, the convention that reproduces Study A's numbers;"
        " Study A did not publish macro- or weighted F1. Setting: the run's image size,"
        " pretrained weights (timm tag, or none), epoch budget and seeds from its records, and"
        " what Study A states; a run whose image size, weights or epoch budget differs from"
        " Study A's is marked not comparable.",
    ),
    "study_b": Caption(
        "Table 3. Frozen versus partial fine-tuning (Study B)",
        "Accuracies at the best validation epoch (gap = train minus validation accuracy, in"
        " points) and on the test set, with the test set's balanced accuracy, macro-F1 and"
        " majority-class accuracy (the score of always answering the larger class): a frozen"
        " model near the majority-class accuracy has learnt little. Study B's 'validation"
        " accuracy' was measured on the labelled preliminary test set, which is this project's"
        " test set of the official split: compare it with Test acc., not Val acc. It is shown"
        " only beside the same backbone and strategy on the official split, with what differs"
        " from Study B's stated setting. Study B also chose its epoch on that set, so its"
        " number is optimistic; here the epoch is chosen on validation carved out of training.",
    ),
    "subjects": Caption(
        "Table 4. Subject-level diagnosis",
        "One call per subject from its cells: mean probability of ALL, or the fraction of its"
        " cells called ALL, against a threshold chosen on the validation subjects (highest"
        " balanced accuracy; per fold for pooled cross-validation). Sensitivity = ALL subjects"
        " called ALL, specificity = Hem subjects called Hem, with Wilson 95 % intervals over"
        " subjects.",
    ),
    "honest": Caption(
        "Table 5. The preliminary test set: published results beside this project's runs",
        "Published results measured on the labelled preliminary test set (28 subjects unseen in"
        " training), which is this project's test set of the official split, followed by every"
        " run of this project on that split: the leakage-aware benchmark's best model (trained"
        " on the three training folds, as the official split is) and the C-NMC 2019 challenge"
        " winner's preliminary-test scores. Each published value sits under its own metric;"
        " sensitivity is the ALL-class recall, specificity the Hem-class recall. Setting: what"
        " each run's records say and what each source states ('not stated' where it does"
        " not); the last column lists what differs from what the sources state.",
    ),
    "leakage": Caption(
        "Table 6. Leakage audit of each test set",
        "What each test set shares with its training part, from the split step's audit.json:"
        " test subjects that also have cells in training, test images from those subjects,"
        " byte-identical copies (sha256) and near-duplicates (256-bit perceptual hashes within"
        " split.near_duplicate_max_distance bits, byte-identical copies included) of training"
        " images. Image-level splits share subjects by design (Study A's protocol);"
        " subject-disjoint splits share none.",
    ),
    "cross_validation": Caption(
        "Table 7. Cross-validated models out of fold (e.g. Study C beside Study A)",
        "Every cross-validated model with its folds pooled: each labelled image tested once, by"
        " the fold model that never saw its subject, so the rows share one subject-disjoint"
        " test set and compare like with like (here, today's backbones beside Study A's)."
        " Single run: value [95 % bootstrap interval resampling subjects]; several seeds:"
        " mean ± std. No published result was measured this way: the leakage-aware benchmark"
        " was tested on the preliminary test set and stands beside the official split in"
        " Table 5.",
    ),
    "quoted": Caption(
        "Table 9. Earlier C-NMC 2019 work as quoted by Study A (its Table 3)",
        "F1 values exactly as Study A's Table 3 quotes them. Study A does not say on which test"
        " set, nor which F1 (ALL-class or weighted), each was measured, so they are not placed"
        " beside any run; the challenge winner's own scores, from its paper, are in Table 5."
        " The last row is Study A's own model (its Table 2 EfficientNet-B3 ALL-class F1).",
    ),
    "calibration": Caption(
        "Table 8. Calibration (temperature scaling) and expert referral",
        "Each model's probabilities rescaled by one temperature T fitted on its validation set"
        " (p_cal = sigmoid(logit(p) / T), minimising the validation negative log-likelihood;"
        " T above 1: the model was overconfident). Expected calibration error (15 equal-width"
        " confidence bins) and Brier score on the test set before and after, each with a 95 %"
        " bootstrap interval resampling test subjects (paired: the same resamples before and"
        " after). Calls and the order of confidences do not change, so accuracy, AUC and the"
        " cells referred stay the same; Study B's referral threshold (the lowest confidence"
        " whose accepted validation cells reach evaluate.referral_target) is chosen on the"
        " calibrated validation probabilities and so reads as a probability of the called"
        " class. Pooled cross-validation: each fold's own temperature and threshold.",
    ),
}

SECTIONS = {
    "deviations": "Deviations from the papers",
    "references": "References",
    "provenance": "Provenance: each row's metrics file, checkpoint digest and code version are"
    " in comparison.csv.",
}

FIGURES: dict[str, str] = {
    "roc": "ROC curves of every experiment on its test set (ALL is the positive class); AUC in"
    " the legend.",
    "confusion": "Confusion matrices at the configured threshold: counts and the share of each"
    " true class.",
    "training_curves": "Training and validation loss per epoch and validation macro-F1 (the"
    " early-stopping criterion); the star marks the best epoch, whose checkpoint was"
    " evaluated.",
    "reliability": "Reliability diagram: accuracy versus confidence of the predicted class on"
    " the test set; the expected calibration error (ECE) is in the legend.",
    "reliability_calibrated": "Reliability diagram after temperature scaling (one temperature"
    " per model, fitted on its validation set): accuracy versus calibrated confidence of the"
    " predicted class on the test set, ECE in the legend.",
    "risk_coverage": "Expert referral (Study B's hybrid workflow): accuracy of the cells the"
    " model keeps versus the share it keeps; the diamond is the confidence threshold chosen on"
    " validation for the target.",
}

# the per-experiment Grad-CAM grids of the HTML report (not Snakemake report items)
GRADCAM = (
    "Grad-CAM maps of the called class on sample test cells, from the configured feature stage"
    " (gradcam.stage; red: regions that raised that class's logit). Rows: true class and"
    " whether the call was right; the most confident cells of each group."
)

# what report/comparison.rst says about comparison.md before listing its tables
COMPARISON_INTRO = (
    "Comparison of every experiment on its test set, with the published results of Study A"
    " and Study B beside the runs of the same backbone and strategy, each row's test protocol"
    " from the split audit, and the deviations from the papers."
)


def rst(name: str) -> str:
    """The text of ``report/<name>.rst``: a figure's caption, or the tables' for comparison."""
    if name == "comparison":
        items = "\n\n".join(f"**{c.title}.** {c.text}" for c in TABLES.values())
        return f"{COMPARISON_INTRO}\n\n{items}\n"
    return FIGURES[name] + "\n"


RST_NAMES = ("comparison", *FIGURES)


def write_rst(folder: str | Path) -> list[Path]:
    """(Re)write every Snakemake report caption under ``folder`` from the texts above."""
    written = []
    for name in RST_NAMES:
        path = Path(folder) / f"{name}.rst"
        write_text(path, rst(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_rst(sys.argv[1] if len(sys.argv) > 1 else "report"):
        print(p)
