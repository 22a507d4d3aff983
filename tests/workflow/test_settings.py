"""One home for every setting: the schema holds each optional key's default and description, the
config is filled from it once, and no rule, helper or step script keeps a copy of a default."""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from leukopipe.plumbing.schema import defaults, fill_defaults, load_schema, resolve_ref
from leukopipe.workflow.config import ConfigError, validate

ROOT = Path(__file__).resolve().parents[2]
# scripts the rules call (their settings come from the rules, never from their own defaults)
RULE_SCRIPTS = sorted(
    {m for smk in (ROOT / "rules").glob("*.smk") for m in re.findall(r"scripts/(\w+)\.py", smk.read_text())}
)


def _optional_keys(node: dict, root: dict, path: str = "") -> list[tuple[str, dict]]:
    """(dotted path, schema) of every optional key, list items as ``[]``."""
    node = resolve_ref(node, root)
    out = []
    if "properties" in node:
        required = set(node.get("required", []))
        for key, sub in node["properties"].items():
            sub = resolve_ref(sub, root)
            dotted = f"{path}.{key}" if path else key
            if key not in required:
                out.append((dotted, sub))
            out += _optional_keys(sub, root, dotted)
    if isinstance(node.get("items"), dict):
        out += _optional_keys(node["items"], root, f"{path}.[]")
    return out


def _strip_optional(value: Any, node: dict, root: dict) -> Any:
    node = resolve_ref(node, root)
    if isinstance(value, dict) and "properties" in node:
        required = set(node.get("required", []))
        return {
            k: _strip_optional(v, node["properties"][k], root)
            for k, v in value.items()
            if k in required
        }
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_strip_optional(v, node["items"], root) for v in value]
    return value


def test_every_optional_key_has_a_default_and_a_description():
    root = load_schema()
    # alternatives of each other, not settings with a default
    alternatives = {"ensembles.[].groups", "ensembles.[].experiments"}
    missing = [
        path
        for path, sub in _optional_keys(root, root)
        if path not in alternatives and ("default" not in sub or "description" not in sub)
    ]
    assert not missing, missing


def test_config_yaml_says_what_the_schema_defaults_say():
    """config.yaml minus every optional setting is the same effective config: its optional
    values are the schema's defaults, written out for the reader, never a second opinion.
    (The experiment groups and ensembles are the studies themselves, not settings.)"""
    root = load_schema()
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    stripped = _strip_optional(copy.deepcopy(shipped), root, root)
    for content in ("experiments", "ensembles"):
        stripped[content] = copy.deepcopy(shipped[content])
    assert stripped != shipped  # the file does spell out optional keys
    assert fill_defaults(stripped) == fill_defaults(copy.deepcopy(shipped))


def test_filled_config_holds_the_schema_defaults():
    cfg = validate({"data": {"source": "existing", "raw_dir": "x"},
                    "experiments": [{"name": "a", "backbones": ["resnet18"],
                                     "strategies": ["full"], "seeds": [0]}]})
    assert cfg["train"] == defaults("train")
    assert cfg["augment"]["transforms"] == defaults("augment.transforms")
    assert cfg["experiments"][0]["split"] == defaults("experiments.[]")["split"]
    assert cfg["gradcam"] == defaults("gradcam") and cfg["ensembles"] == []


@pytest.mark.parametrize("section", ["merge", "augment", "data.synthetic"])
def test_retired_worker_keys_say_where_the_setting_went(section):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    node = cfg
    for part in section.split("."):
        node = node.setdefault(part, {})
    node["workers"] = 2
    with pytest.raises(ConfigError, match=r"workers is no longer a setting; .*--set-threads"):
        validate(cfg)


def test_rules_and_helpers_read_plain_keys():
    """No `.get(key, default)` on the config in the rule files or the workflow helpers."""
    files = [*(ROOT / "rules").glob("*.smk"), ROOT / "Snakefile",
             *(ROOT / "src/leukopipe/workflow").glob("*.py")]
    pattern = re.compile(r"config\[[^\]]+\](\[[^\]]+\])*\.get\(|config\.get\(")
    offenders = [f"{f.name}:{i}" for f in files
                 for i, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, offenders


def _schema_key_names() -> set[str]:
    root = load_schema()
    return {path.rsplit(".", 1)[-1] for path, _ in _optional_keys(root, root)}


def test_rule_scripts_keep_no_copy_of_a_setting_default():
    """A flag of a rule's script named like a setting is required, or takes the schema's
    default (``defaults(...)``), never a literal of its own."""
    names = _schema_key_names() | {"expected_size", "target_per_class", "target", "criterion"}
    offenders = []
    for script in RULE_SCRIPTS:
        tree = ast.parse((ROOT / "scripts" / f"{script}.py").read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
                continue
            flags = [a.value for a in node.args if isinstance(a, ast.Constant)]
            dest = next((f[2:].replace("-", "_") for f in flags if f.startswith("--")), "")
            kw = {k.arg: k.value for k in node.keywords}
            default = kw.get("default")
            literal = isinstance(default, ast.Constant) and default.value not in (None, False)
            literal |= isinstance(default, ast.List | ast.Tuple) and bool(default.elts)
            setting = dest in names or dest.removeprefix("referral_") in names
            if setting and literal:
                offenders.append(f"{script}.py {flags[0]}")
    assert RULE_SCRIPTS and not offenders, offenders
