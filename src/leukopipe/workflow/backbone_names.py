"""The models timm knows, for checking ``experiments[].backbones`` without importing timm.

Importing timm imports torch and torchvision (about 1 GB resident and most of a Snakemake
start), paid on every start only to look names up. What the config check needs depends only on
the installed timm, so it is kept per timm installation (its version and the mtime of its
package file) in the user's cache folder, and rebuilt when timm changes:

- every architecture of ``timm.list_models()`` with its pretrained tags, and per name (the bare
  architecture: timm's default tag) whether its pretrained config fixes the input size (the
  vision transformers, whose patch grid the check must see) and its pretrained input size;
- the patch size of each fixed-size architecture a config has asked about, added when first
  needed (building a model, even without memory, takes about 0.1 s each: all 570 would cost a
  minute).

Anything the cache cannot answer is asked of timm in a child process, so validating a config
never imports torch, torchvision or timm itself. A cache that cannot be read or written costs
only that child process.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from leukopipe.plumbing.atomic import write_text
from leukopipe.train.dinobloom_names import TRAINED_SIZE, architecture, is_dinobloom
from leukopipe.train.patch_grid import patch_size

FORMAT = 2  # of the cache file; in its name, so an older layout is never misread


@dataclass(frozen=True)
class Backbone:
    """What the config check knows of a timm model name, ``arch`` or ``arch.tag``."""

    arch: str
    tag: str | None  # None: timm's default pretrained tag (the first it lists)
    fixed_input_size: bool  # one position embedding per patch: a patch grid to respect
    input_size: int | None  # side of the pretrained config's square input; None: no config


def split_name(name: str) -> tuple[str, str | None]:
    """``"resnet50.tv_in1k"`` -> ``("resnet50", "tv_in1k")``; the tag is everything after the
    first dot, as timm splits it (``timm.models.split_model_name_tag``)."""
    arch, _, tag = name.partition(".")
    return arch, tag or None


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/leukopipe`` (``~/.cache/leukopipe`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "leukopipe"


@cache  # reading the installed version scans the site-packages (~10 ms); timm stays put
def _installation_key() -> str | None:
    """timm's version and the mtime of its ``__init__.py``; None when timm is not installed."""
    spec = importlib.util.find_spec("timm")  # finds the file without importing timm
    if spec is None or spec.origin is None:
        return None
    try:
        mtime = Path(spec.origin).stat().st_mtime_ns
    except OSError:
        return None
    return f"{importlib.metadata.version('timm')}-{mtime}"


def cache_file() -> Path | None:
    """This timm installation's cache file; None when timm is not installed."""
    key = _installation_key()
    return cache_dir() / f"timm-models-v{FORMAT}-{key}.json" if key else None


_parsed: dict[tuple[str, int, int], dict[str, Any]] = {}  # (path, mtime, size) -> content


def _read(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
        seen = (str(path), stat.st_mtime_ns, stat.st_size)
        if seen in _parsed:  # the rule files look backbones up for every job
            return _parsed[seen]
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not written yet, or damaged: ask timm
    ok = isinstance(data, dict) and isinstance(data.get("models"), dict)
    if not (ok and isinstance(data.get("patch_sizes"), dict)):
        return None
    _parsed[seen] = data
    return data


def _write(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(data, sort_keys=True, separators=(",", ":")))
    except OSError:
        pass  # a read-only or full home only makes the next start slower


def _ask_timm(list_models: bool, patch_archs: list[str]) -> dict[str, Any]:
    """Run :func:`_answer` in a child process: timm and torch load there, not here."""
    src = str(Path(__file__).resolve().parents[2])  # this copy of the package, installed or not
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{path}" if path else src}
    request = json.dumps({"list_models": list_models, "patch_archs": patch_archs})
    code = "from leukopipe.workflow.backbone_names import _answer; _answer()"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=request,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:  # timm missing or broken: a bug of the environment, not the config
        raise RuntimeError(f"asking timm for its models failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _answer() -> None:
    """The child process of :func:`_ask_timm`: a JSON request on stdin, the answer on stdout."""
    import timm  # only ever imported here, in the child
    import torch

    request = json.loads(sys.stdin.read())
    answer: dict[str, Any] = {}
    if request["list_models"]:

        def entry(name: str) -> list[Any]:
            cfg = timm.models.get_pretrained_cfg(name)
            size = int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else None
            return [bool(cfg is not None and cfg.fixed_input_size), size]

        models: dict[str, Any] = {name: {"": entry(name)} for name in timm.list_models()}
        for name in timm.list_pretrained():
            arch, tag = split_name(name)
            if arch in models and tag:
                models[arch][tag] = entry(name)
        answer["models"] = models
    sizes: dict[str, list[int] | None] = {}
    for arch in request["patch_archs"]:
        with torch.device("meta"):  # no memory, no initialisation: just the patch embedding
            model = timm.create_model(arch, pretrained=False, num_classes=2)
        sizes[arch] = patch_size(model)
    answer["patch_sizes"] = sizes
    print(json.dumps(answer))


def _models() -> dict[str, Any]:
    """The cache's ``models`` part, built in a child process when missing or stale."""
    path = cache_file()
    data = _read(path)
    if data is None:
        data = {"models": _ask_timm(True, [])["models"], "patch_sizes": {}}
        _write(path, data)
    return data["models"]


def lookup(name: str) -> Backbone | None:
    """``name`` (``arch`` or ``arch.tag``) as the installed timm knows it; None when unknown.
    A DinoBloom variant is its DINOv2 architecture at the size DinoBloom was trained at."""
    if is_dinobloom(name):
        found = lookup(architecture(name))
        return None if found is None else dataclasses.replace(found, input_size=TRAINED_SIZE)
    arch, tag = split_name(name)
    tags = _models().get(arch)
    if tags is None or (tag or "") not in tags:
        return None
    fixed, size = tags[tag or ""]
    return Backbone(arch, tag, bool(fixed), size)


def similar(name: str, n: int = 5) -> list[str]:
    """Known names close to ``name``: architectures, or for ``arch.tag`` that arch's tags."""
    models = _models()
    arch, tag = split_name(name)
    if tag is not None and arch in models:
        names = [f"{arch}.{t}" for t in models[arch] if t]
    else:
        names = sorted(models)
    return difflib.get_close_matches(name, names, n=n, cutoff=0.75)


def patch_sizes(archs: list[str]) -> dict[str, list[int] | None]:
    """``arch`` -> its patch embedding's (height, width) in pixels, None without one; from the
    cache, the missing ones asked of timm (in one child process) and added to it."""
    path = cache_file()
    data = _read(path)
    known = data["patch_sizes"] if data is not None else {}
    missing = sorted({a for a in archs if a not in known})
    if missing:
        known = {**known, **_ask_timm(False, missing)["patch_sizes"]}
        fresh = _read(path)  # another start may have added its own meanwhile: keep both
        if fresh is not None:
            _write(path, {**fresh, "patch_sizes": {**fresh["patch_sizes"], **known}})
    return {a: known[a] for a in archs}


