"""The config schema: the one home of every setting's description and default.

``config.schema.json`` is package data. The workflow fills a config from it once, at start
(:func:`fill_defaults`); library code that needs a default (a dataclass field, say) reads it here
(:func:`defaults`) instead of writing the number again. Reading the schema needs no validator, so
steps that only want defaults do not pull the validator into their code.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_FILE = "config.schema.json"


@cache
def _schema_text() -> str:
    return resources.files("leukopipe.plumbing").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """A fresh copy of the configuration's JSON schema."""
    return json.loads(_schema_text())


def resolve_ref(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """``node`` with a local ``$ref`` (``#/$defs/...``) merged in."""
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**resolve_ref(target, root), **{k: v for k, v in node.items() if k != "$ref"}}


def _fill(value: Any, node: dict[str, Any], root: dict[str, Any]) -> Any:
    node = resolve_ref(node, root)
    if isinstance(value, dict) and "properties" in node:
        for key, sub in node["properties"].items():
            sub = resolve_ref(sub, root)
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _fill(value[key], sub, root)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_fill(item, node["items"], root) for item in value]
    return value


def fill_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Add every missing optional key with its schema default, in place (nested sections and
    list items too); returns ``config``."""
    root = load_schema()
    return _fill(config, root, root)


@cache
def _defaults_at(path: str) -> str:
    root = load_schema()
    node = root
    for part in path.split(".") if path else []:
        node = resolve_ref(node, root)
        node = node["items"] if part == "[]" else node["properties"][part]
    return json.dumps(_fill({}, node, root))


def defaults(path: str) -> dict[str, Any]:
    """Default of every key of the config section at ``path`` (e.g. ``"train"``,
    ``"augment.transforms"``, ``"experiments.[]"`` for a list item's keys)."""
    return json.loads(_defaults_at(path))
