"""Pinned conda environments (envs/*.yaml) agree with requirements.txt, and every rule that
runs a command names one (for `snakemake --sdm conda`). Plain parsing: no conda needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
RULE_FILES = [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def _requirements() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN.match(line)
        assert m, f"requirements.txt: {line!r} is not pinned with =="
        pins[_normalise(m.group(1))] = m.group(2)
    return pins


def _rule_blocks(path: Path) -> dict[str, str]:
    """rule name -> its text (up to the next top-level statement)."""
    blocks: dict[str, str] = {}
    current, lines = None, []
    for line in path.read_text().splitlines():
        m = re.match(r"^rule (\w+):", line)
        if m or (line and not line[0].isspace() and not line.startswith("#")):
            if current:
                blocks[current] = "\n".join(lines)
            current, lines = (m.group(1), []) if m else (None, [])
            continue
        lines.append(line)
    if current:
        blocks[current] = "\n".join(lines)
    return blocks


def _rules() -> dict[str, tuple[Path, str]]:
    return {name: (path, text) for path in RULE_FILES
            for name, text in _rule_blocks(path).items()}


def test_rule_parser_finds_the_pipeline_rules():
    # guards the checks below against a parser that silently finds nothing
    assert {"download", "merge", "split", "augment", "resize", "fetch_weights", "train",
            "evaluate", "compare", "report", "all"} <= set(_rules())


@pytest.mark.parametrize("rule", sorted(r for r, (_, text) in _rules().items()
                                        if re.search(r"^\s+(shell|script|run):", text, re.M)))
def test_every_rule_that_runs_something_names_an_existing_pinned_env(rule):
    path, text = _rules()[rule]
    m = re.search(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", text, re.M)
    assert m, f"rule {rule} in {path.name} has no conda: directive"
    env = (path.parent / m.group(1)).resolve()
    assert env.parent == ROOT / "envs" and env.is_file(), f"rule {rule}: {m.group(1)} not in envs/"


def test_no_env_file_is_unused():
    used = {(path.parent / m).resolve().name for path, text in _rules().values()
            for m in re.findall(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", text, re.M)}
    assert used == {p.name for p in ENVS}


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_pins_agree_with_requirements(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["channels"][0] == "conda-forge" and "nodefaults" in spec["channels"]
    pins = _requirements()
    deps = spec["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    # conda part: only the interpreter (3.11, the lowest pyproject.toml allows) and pip itself
    assert "python=3.11" in conda and set(conda) <= {"python=3.11", "pip"}, conda
    assert 'requires-python = ">=3.11"' in (ROOT / "pyproject.toml").read_text()
    assert pip, f"{env.name}: no pip packages"
    for line in pip:
        m = PIN.match(line.strip())
        assert m, f"{env.name}: {line!r} is not pinned with =="
        name, version = _normalise(m.group(1)), m.group(2)
        assert name in pins, f"{env.name}: {name} is not in requirements.txt"
        assert version == pins[name], (
            f"{env.name}: {name}=={version} but requirements.txt pins {pins[name]}")
    names = {_normalise(PIN.match(line.strip()).group(1)) for line in pip}
    assert len(names) == len(pip), f"{env.name}: a package is listed twice"
    # what every step script imports at least
    assert {"numpy", "pandas", "pyarrow", "pyyaml", "jsonschema", "torch"} <= names


def test_train_env_has_what_training_and_reporting_import():
    pip = yaml.safe_load((ROOT / "envs" / "train.yaml").read_text())["dependencies"][-1]["pip"]
    names = {_normalise(PIN.match(p).group(1)) for p in pip}
    assert {"timm", "torchvision", "scikit-learn", "matplotlib", "safetensors",
            "tabulate"} <= names


def test_pyproject_ranges_admit_the_pins_and_the_site_minimums():
    """pyproject declares ranges a site's PyTorch can satisfy (torch 2.11-2.14 ...); the tested
    pins of requirements.txt must lie inside them, and every runtime pin must be declared."""
    import tomllib

    from packaging.requirements import Requirement

    deps = {_normalise(r.name): r.specifier for r in map(
        Requirement, tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        ["dependencies"])}
    pins = _requirements()
    assert set(pins) == set(deps), set(pins) ^ set(deps)
    for name, version in pins.items():
        assert deps[name].contains(version), f"{name}=={version} outside {deps[name]}"
    lowest = {"torch": "2.11.0", "torchvision": "0.26.0", "timm": "1.0.29", "pandas": "3.0.0",
              "numpy": "2.4.0", "pyarrow": "25.0.0"}
    for name, version in lowest.items():
        assert deps[name].contains(version), f"{name} {deps[name]} excludes {version}"
    assert not deps["torch"].contains("2.15.0") and not deps["torchvision"].contains("0.30.0")
