"""The command lines of the data steps, in one place: the rules run them, the benchmark too.

Each entry is the step's shell command as a Snakemake template, one flag per line, exactly as
the rule formats it (``{input.x}``, ``{output.x}``, ``{params.x}``, ``{wildcards.x}``,
``{threads}``; ``:q`` quotes). The rule files take it through :func:`step_shell`; anything else
that runs a step (the benchmark) fills the same template with :func:`step_argv`, so a flag added
to a step reaches every caller at once, and a caller that lacks a value the template names stops
with that name instead of running the script without the flag.
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Mapping, Sequence
from typing import Any

from leukopipe.workflow.preprocessing import Preprocessing
from leukopipe.workflow.rules import as_json

STEP_COMMANDS: dict[str, tuple[str, ...]] = {
    "merge": (
        "python scripts/merge.py",
        " --raw-json {input.raw}",
        " --raw-dir {params.raw_dir:q}",
        " --expected-size {params.expected_size}",
        " --workers {threads}",
        " --index-out {output.index}",
        " --summary-out {output.summary}",
    ),
    "split": (
        "python scripts/split.py",
        " --index {input.index}",
        " --mode {wildcards.split}",
        " --test-fraction {params.test_fraction}",
        " --val-fraction {params.val_fraction}",
        " --seed {params.seed}",
        " --near-duplicate-max-distance {params.near_duplicates}",
        " --out-dir {params.out_dir}",
    ),
    "augment": (
        "python scripts/augment.py",
        " --train-manifest {input.train}",
        " --raw-dir {params.raw_dir:q}",
        " --image-size {wildcards.size}",
        " {params.balancing}",
        " --workers {threads}",
        " --manifest-out {output.manifest}",
        " --pixels-out {output.pixels}",
        " --stats-out {output.stats}",
    ),
    "resize": (
        "python scripts/resize.py",
        " --manifest {input.manifest}",
        " --raw-dir {params.raw_dir:q}",
        " --image-size {wildcards.size}",
        " --workers {threads}",
        " --manifest-out {output.manifest}",
        " --pixels-out {output.pixels}",
    ),
}


class MissingValueError(KeyError):
    """A step's command names a value that its caller did not give (a bug of the caller)."""


def step_shell(step: str) -> str:
    """The rule's shell command of ``step``, with its log redirect."""
    return "".join(STEP_COMMANDS[step]) + " 2> {log}"


def step_settings(step: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``params`` of ``step``'s command that come from the config: the values the rules
    declare as params (their rerun triggers) under the same names."""
    if step == "merge":
        return {"expected_size": config["data"]["expected_image_size"]}
    if step == "split":
        split = config["split"]
        return {
            "test_fraction": split["test_fraction"],
            "val_fraction": split["val_fraction"],
            "seed": split["seed"],
            "near_duplicates": split["near_duplicate_max_distance"],
        }
    return {}


def balancing_flags(prep: Preprocessing) -> str:
    """augment's settings for one preprocessing: target, seed and transforms, or ``none``
    (the resized originals)."""
    if not prep.balanced:
        return "--target-per-class none"
    transforms = shlex.quote(as_json(prep.transforms))
    return (
        f"--target-per-class {prep.target_per_class} --seed {prep.seed}"
        f" --transforms-json {transforms}"
    )


class _Values:
    """Attribute access to a mapping, naming the missing key the way the template does."""

    def __init__(self, step: str, kind: str, values: Mapping[str, Any]) -> None:
        self._step, self._kind, self._values = step, kind, values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise MissingValueError(
                f"the {self._step} command needs {{{self._kind}.{name}}}, which was not given"
            ) from None


class _Formatter(string.Formatter):
    """str.format with Snakemake's ``:q`` (shell-quote the value)."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "q":
            return shlex.quote(str(value))
        return super().format_field(value, format_spec)


def step_argv(
    step: str,
    *,
    input: Mapping[str, Any],  # the template's own name
    output: Mapping[str, Any],
    params: Mapping[str, Any],
    wildcards: Mapping[str, Any] | None = None,
    threads: int = 1,
) -> list[str]:
    """``step``'s command as an argument list (``scripts/<step>.py`` first, without
    ``python``), filled from the given values exactly as the rule's shell command is."""
    named = {k: _Values(step, k, v) for k, v in
             (("input", input), ("output", output), ("params", params),
              ("wildcards", wildcards or {}))}
    line = _Formatter().format("".join(STEP_COMMANDS[step]), threads=threads, **named)
    argv: Sequence[str] = shlex.split(line)
    return list(argv[1:])
