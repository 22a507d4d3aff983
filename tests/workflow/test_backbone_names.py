"""Checking backbone names at every Snakemake start without importing torch: what the config
check needs of timm (names, tags, fixed input sizes, patch sizes) is cached per timm
installation, asked of timm in a child process, and the rule files import nothing heavy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from leukopipe.workflow import backbone_names
from leukopipe.workflow.backbone_names import lookup, patch_sizes
from leukopipe.workflow.config import ConfigError, validate

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "timm")


VITS = ["vit_small_patch16_224", "vit_small_patch14_dinov2"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder filled once by the real child process (model list, two ViTs' patches):
    each fill imports timm and torch anew, seconds of CPU a time."""
    home = tmp_path_factory.mktemp("built")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(home))
        lookup("resnet50")
        patch_sizes(VITS)
        patch_sizes(["resnet18"])  # a second request adds to the first
    return home / "leukopipe"


@pytest.fixture
def empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder with nothing in it yet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "leukopipe"


@pytest.fixture
def cache(built: Path, empty: Path) -> Path:
    """A copy of the filled cache folder."""
    shutil.copytree(built, empty)
    return empty


def _written(cache: Path) -> dict:
    (path,) = cache.glob("timm-models-v2-*.json")
    return json.loads(path.read_text())


def test_the_list_is_written_once_and_marks_vision_transformers(cache: Path) -> None:
    assert lookup("resnet18").fixed_input_size is False
    assert lookup("efficientnet_b0").fixed_input_size is False
    assert lookup("vit_small_patch16_224").fixed_input_size is True
    dino = lookup("vit_small_patch14_dinov2")
    assert dino.fixed_input_size is True and dino.input_size == 518 and dino.tag is None
    assert lookup("resnet5O") is None
    assert "resnet50" in _written(cache)["models"]


def test_an_arch_tag_name_is_looked_up_by_its_arch(cache: Path) -> None:
    """Pretrained tags (``arch.tag``) resolve to their arch, with the tag's own input size."""
    tagged = lookup("resnet50.tv_in1k")
    assert (tagged.arch, tagged.tag, tagged.fixed_input_size) == ("resnet50", "tv_in1k", False)
    assert lookup("resnet50.a1h_in1k").input_size == 176  # not the default tag's 224
    assert lookup("vit_small_patch14_dinov2.lvd142m").input_size == 518
    assert lookup("resnet50.no_such_tag") is None
    assert "resnet50.tv_in1k" in backbone_names.similar("resnet50.tv_in1")


def test_patch_sizes_are_asked_once_and_kept(cache: Path) -> None:
    """Filled by ``built``: asked of timm for these three only, then read from the cache."""
    assert _written(cache)["patch_sizes"] == {
        "vit_small_patch14_dinov2": [14, 14],
        "vit_small_patch16_224": [16, 16],
        "resnet18": None,  # a CNN has no patch embedding
    }
    # what the cache holds is the answer from now on: timm is not asked again
    (path,) = cache.glob("timm-models-v2-*.json")
    data = _written(cache)
    data["patch_sizes"]["vit_small_patch16_224"] = [8, 8]
    path.write_text(json.dumps(data))
    assert patch_sizes(["vit_small_patch16_224"]) == {"vit_small_patch16_224": [8, 8]}


def test_a_damaged_cache_is_rebuilt(cache: Path) -> None:
    first = lookup("resnet50")
    (written,) = cache.glob("timm-models-v2-*.json")
    written.write_text("{not json")
    assert lookup("resnet50") == first
    assert "resnet50" in json.loads(written.read_text())["models"]


def test_an_unwritable_cache_only_costs_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where the folder should be
    assert lookup("resnet50") is not None


def test_another_timm_installation_gets_its_own_list(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = backbone_names.cache_file()
    monkeypatch.setattr(backbone_names, "_installation_key", lambda: "0.0.0-1")
    assert backbone_names.cache_file() == cache / "timm-models-v2-0.0.0-1.json" != first


def test_unknown_names_are_still_refused_with_similar_ones(cache: Path) -> None:
    lookup("resnet50")  # from the cache now
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["experiments"][0]["backbones"] = ["resnet50", "resnet5O"]
    with pytest.raises(ConfigError, match=r"experiments\[0\].backbones\[1\] = \"resnet5O\".*similar: .*resnet50"):
        validate(config)


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True)


@pytest.mark.parametrize("warm", [True, False], ids=["warm-cache", "cold-cache"])
def test_validating_the_shipped_config_imports_no_torch(
    built: Path, empty: Path, warm: bool
) -> None:
    """What the Snakefile and the rule files import, then validating and expanding the shipped
    config.yaml (vision transformers included, so the patch-grid check runs), in a fresh
    interpreter: none of torch, torchvision, timm gets imported there; a cold cache is filled
    by a child process."""
    if warm:
        shutil.copytree(built, empty)
    cache = empty
    imports = []
    for f in (ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))):
        imports += re.findall(r"^from (leukopipe[\w.]*) import", f.read_text(), flags=re.M)
    assert "leukopipe.workflow.config" in imports
    code = "\n".join(
        [f"import {m}" for m in sorted(set(imports))]
        + [
            "import sys, yaml",
            "from leukopipe.workflow.config import expand_experiments, validate",
            "c = validate(yaml.safe_load(open('config.yaml')))",
            "assert {e.backbone for e in expand_experiments(c).values()}"
            " >= {'vit_small_patch16_224', 'vit_small_patch14_dinov2'}",
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))",
        ]
    )
    proc = _fresh_python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    assert set(_written(cache)["patch_sizes"]) >= {"vit_small_patch16_224",
                                                   "vit_small_patch14_dinov2"}


def test_a_vit_size_off_the_patch_grid_is_refused_from_the_cache(cache: Path) -> None:
    """The patch-grid check answers from the cached patch size, with timm's tags too."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    vit = next(g for g in config["experiments"] if g["name"] == "study_c_vit")
    vit["backbones"] = ["vit_small_patch14_dinov2.lvd142m"]
    vit["image_size"] = 230
    code = "\n".join([
        "import sys, yaml",
        "from leukopipe.workflow.config import ConfigError, validate",
        f"c = yaml.safe_load({yaml.safe_dump(config)!r})",
        "try:",
        "    validate(c)",
        "except ConfigError as e:",
        "    print(e)",
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))",
    ])
    proc = _fresh_python(code)
    message, heavy = proc.stdout.strip().splitlines()
    assert heavy == "[]", proc.stdout + proc.stderr
    assert re.fullmatch(
        r"config error: experiments\[\d+\]\.image_size = 230 is not allowed for"
        r" vit_small_patch14_dinov2\.lvd142m \(group study_c_vit\): image size 230 px does not"
        r" fit .*14 px patches.*224 or 238", message), message
