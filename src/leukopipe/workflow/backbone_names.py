"""The models timm knows, for checking ``experiments[].backbones`` without importing timm.

Importing timm imports torch and torchvision: about 7 of the 13 seconds a ``snakemake -n`` took,
paid on every Snakemake start only to look names up. The list depends only on the installed
timm, so it is kept, with each model's fixed-input-size flag (which marks the vision
transformers whose patch grid the config check must see), per timm installation (its version
and the mtime of its package file) in the user's cache folder, and rebuilt when timm changes.
A cache that cannot be read or written costs only the import.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path

from leukopipe.workflow.atomic import write_text


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/leukopipe`` (``~/.cache/leukopipe`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "leukopipe"


def _installation_key() -> str | None:
    """timm's version and the mtime of its ``__init__.py``; None when timm is not installed."""
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        return None
    try:
        mtime = Path(spec.origin).stat().st_mtime_ns
    except OSError:
        return None
    return f"{importlib.metadata.version('timm')}-{mtime}"


def timm_models() -> dict[str, bool]:
    """Every name ``timm.list_models()`` returns for the installed timm, and every pretrained tag
    ``timm.list_pretrained()`` returns (``architecture.tag``, e.g. ``resnet50.tv_in1k``), mapped
    to whether its pretrained config fixes the input size (true for vision transformers)."""
    key = _installation_key()
    # with-tags: the list also holds every pretrained tag (``resnet50.tv_in1k``), which the
    # first format (timm-models-<key>.json) lacked
    cached = cache_dir() / f"timm-models-with-tags-{key}.json" if key else None
    if cached is not None:
        try:
            known = json.loads(cached.read_text(encoding="utf-8"))
            if isinstance(known, dict):
                return {str(k): bool(v) for k, v in known.items()}
        except (OSError, ValueError):
            pass  # not written yet, or unreadable: ask timm
    import timm  # deferred: slow, and needed only when the cache cannot answer

    known = {}
    for name in [*timm.list_models(), *timm.list_pretrained()]:
        cfg = timm.models.get_pretrained_cfg(name)
        known[name] = bool(cfg is not None and cfg.fixed_input_size)
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_text(cached, json.dumps(known, sort_keys=True))
        except OSError:
            pass  # a read-only or full home only makes the next start slower
    return known
