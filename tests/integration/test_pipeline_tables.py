"""The comparison a real pipeline run writes: every run stands in each table it belongs in,
under the published rows it matches (whatever its preprocessing label), saying what differs.

One tiny Snakemake run in a throw-away workspace: a Study A backbone fully fine-tuned on the
image-level split (with the group's preprocessing in its label, as every run has) and Study
B's frozen ResNet18 on the official split, both from weight files with a weights record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pipeline_workspace import make_workspace, snakemake

from leukopipe.report.captions import TABLES

pytestmark = pytest.mark.slow
RUN = "results/tiny"
CONFIG = {
    "weights": {"pretrained": True, "dir": "resources/weights"},
    "experiments": [
        {"name": "a", "split": "image", "backbones": ["efficientnet_b0"],
         "strategies": ["full"], "seeds": [0]},
        {"name": "b", "split": "official", "backbones": ["resnet18"],
         "strategies": ["frozen"], "seeds": [0], "augment": "none"},
    ],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("tables") / "ws", CONFIG)
    proc = snakemake(ws, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return ws / RUN


def _section(md: str, key: str) -> list[list[str]]:
    """The body rows of one table of comparison.md, as lists of cells."""
    text = md.split(f"### {TABLES[key].title}\n", 1)[1].split("\n### ", 1)[0]
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def _header(md: str, key: str) -> list[str]:
    text = md.split(f"### {TABLES[key].title}\n", 1)[1]
    line = next(ln for ln in text.splitlines() if ln.startswith("|"))
    return [c.strip() for c in line.strip("|").split("|")]


def _tag(run: Path, backbone: str) -> str:
    return json.loads((run / f"weights/{backbone}.json").read_text())["pretrained_tag"]


def test_study_a_row_is_followed_by_the_run_whatever_its_label(run):
    md = (run / "tables/comparison.md").read_text()
    header, body = _header(md, "study_a"), _section(md, "study_a")
    models = [r[header.index("Model")] for r in body]
    published = models.index("efficientnet_b0 (full)")
    ours = body[published + 1]
    assert ours[0] == "this project"
    assert ours[header.index("Model")] == "efficientnet_b0 (full) · ra_in1k · 32px-bal80"
    setting = ours[header.index("Setting")]
    assert setting == (
        f"32 px; weights efficientnet_b0.{_tag(run, 'efficientnet_b0')}; at most 2 epochs"
        " (patience 2); 1 seed"
    )
    assert ours[header.index("Differs from the published setting")] == (
        "Not comparable: 32 px (Study A: 224 px); at most 2 epochs (Study A: 50, patience 15)"
    )
    # the other published rows have no run of theirs in this config
    assert [r[0] for r in body].count("this project") == 1


def test_study_b_and_preliminary_test_tables_hold_the_official_run(run):
    md = (run / "tables/comparison.md").read_text()
    header, body = _header(md, "study_b"), _section(md, "study_b")
    (r,) = [b for b in body if b[0] == "resnet18 (frozen) · a1_in1k · 32px-none"]
    assert r[header.index("Study B acc. % (published)")] == "65.77"
    assert r[header.index("Differs from the published setting")].startswith(
        "Not comparable: 32 px (Study B: 224 px)"
    )
    header, body = _header(md, "honest"), _section(md, "honest")
    sources = [b[0] for b in body]
    assert sources[:2] == [
        "leakage-aware benchmark (published)",
        "C-NMC 2019 challenge winner (published)",
    ]
    ours = [b for b in body if b[0] == "this project"]
    assert [b[header.index("Model")] for b in ours] == ["resnet18 (frozen) · a1_in1k · 32px-none"]
    assert "preliminary test set" in ours[0][header.index("Protocol")]
    # the image-level run stands beside no preliminary-test reference
    assert "efficientnet_b0" not in " ".join(b[header.index("Model")] for b in ours)


def test_every_run_appears_in_every_table_it_belongs_in(run):
    """Table 1 holds every evaluated run; Table 2 every Study A backbone fully fine-tuned on
    the image split; Tables 3 and 5 every official-split run (frozen/partial for Table 3)."""
    rows = pd.read_parquet(run / "tables/rows.parquet")
    md = (run / "tables/comparison.md").read_text()

    def models(key: str) -> set[str]:
        header = _header(md, key)
        return {r[header.index("Model")] for r in _section(md, key)}

    from leukopipe.report.published import load_published

    study_a = {r["model"] for r in load_published()["study_a"]["table2"]["rows"]}
    for r in rows.itertuples():
        assert r.model in models("main"), r.model
        if r.split_kind == "image" and r.strategy == "full" and r.backbone in study_a:
            assert r.model in models("study_a"), r.model
        if r.split_kind == "official":
            assert r.model in models("honest"), r.model
            if r.strategy in ("frozen", "partial"):
                assert r.model in models("study_b"), r.model
