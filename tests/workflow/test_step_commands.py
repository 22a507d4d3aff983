"""The data steps' command lines (workflow/step_commands): the rules' shell and the benchmark's
argument lists come from the same templates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leukopipe.plumbing.schema import defaults
from leukopipe.workflow.preprocessing import top_level
from leukopipe.workflow.step_commands import (
    STEP_COMMANDS,
    MissingValueError,
    balancing_flags,
    step_argv,
    step_settings,
    step_shell,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"data": defaults("data"), "split": defaults("split"), "augment": defaults("augment")}


def test_every_setting_the_split_script_requires_is_passed() -> None:
    argv = step_argv("split", input={"index": "i.parquet"}, output={},
                     params={**step_settings("split", CONFIG), "out_dir": "out"},
                     wildcards={"split": "image"})
    assert argv[0] == "scripts/split.py"
    required = re.findall(r'add_argument\(\s*"(--[\w-]+)"[^)]*required=True',
                          (ROOT / "scripts/split.py").read_text())
    assert "--near-duplicate-max-distance" in required  # the flag the benchmark once missed
    assert set(required) <= set(argv)
    i = argv.index("--near-duplicate-max-distance")
    assert argv[i + 1] == str(CONFIG["split"]["near_duplicate_max_distance"])


def test_a_missing_value_is_named() -> None:
    with pytest.raises(MissingValueError, match=r"split command needs \{params.out_dir\}"):
        step_argv("split", input={"index": "i"}, output={},
                  params=step_settings("split", CONFIG), wildcards={"split": "image"})


def test_quoted_paths_and_balancing_flags_survive_as_single_arguments() -> None:
    prep = top_level(CONFIG)
    argv = step_argv("augment", input={"train": "t.parquet"},
                     output={"manifest": "m", "pixels": "p", "stats": "s"},
                     params={"raw_dir": "/data/C-NMC copy", "balancing": balancing_flags(prep)},
                     wildcards={"size": 224}, threads=3)
    assert argv[argv.index("--raw-dir") + 1] == "/data/C-NMC copy"
    assert argv[argv.index("--target-per-class") + 1] == str(prep.target_per_class)
    assert argv[argv.index("--transforms-json") + 1].startswith("{")
    assert argv[argv.index("--workers") + 1] == "3"


def test_rules_take_their_shell_from_the_templates() -> None:
    rules = (ROOT / "rules/data.smk").read_text() + (ROOT / "rules/augment.smk").read_text()
    for step in STEP_COMMANDS:
        block = rules.split(f"rule {step}:", 1)[1].split("\nrule ", 1)[0]
        assert f'get_shell("{step}")' in block, step
        # every params value the command names is declared by the rule
        for name in re.findall(r"\{params\.(\w+)", step_shell(step)):
            assert re.search(rf"^\s+{name}=", block, re.M), (step, name)
