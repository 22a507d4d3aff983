"""Every command the docs print runs in the test suite, as printed or (where it needs a cluster,
a GPU, the network or root) in its dry-run, --help or parse-only form.

The commands are read from README.md, docs/*.md (fenced and indented code blocks, and inline
code that starts with a command) and the Makefile's targets. ``COVERED`` names, for each one,
the test that runs it; ``NOT_RUN`` the few that cannot run here and why. A command added to
the docs without an entry fails :func:`test_every_documented_command_is_covered`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_workspace import BIN, make_workspace

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")))
# the words a shell command in the docs starts with
COMMAND = r"(?:make|python3?|snakemake|sh|bash|sudo|source|pytest|\.venv/bin/\S+)"
# A ' #' starts a trailing shell comment (one inside quotes would not, but the docs have none)
COMMENT = re.compile(r"\s+#.*$")
T_BENCH = "tests/integration/test_documented_commands.py::test_benchmark_commands_run_at_tiny_size"
T_HELP = "tests/integration/test_documented_commands.py::test_every_script_answers_help"
T_MAKE = "tests/integration/test_documented_commands.py::test_make_targets_print_the_documented_commands"
T_DEMO = "tests/integration/test_documented_commands.py::test_demo_profile_plans_the_whole_dag"
T_SLURM = "tests/integration/test_documented_commands.py::test_slurm_profile_dry_runs"
T_SHELL = "tests/integration/test_documented_commands.py::test_shell_scripts_parse"
T_WS = "tests/integration/test_documented_commands.py::test_workspace_commands"
T_VENV = "tests/integration/test_documented_commands.py::test_venv_activates"
T_SMOKE = "tests/tools/test_gpu_check.py::test_smoke_config_dry_run_with_the_slurm_profile"
T_GPU_TINY = "tests/tools/test_gpu_check.py::test_tiny_cpu_check_runs_every_part"
T_TABLES = "tests/integration/test_pipeline.py::test_tables_regenerate_from_stored_results_without_training"
T_RERUN = "tests/integration/test_pipeline.py::test_a_rule_reruns_explicitly_and_only_what_follows"
T_STALE = "tests/integration/test_pipeline.py::test_stale_lists_outputs_of_changed_code_and_the_file"
T_PREDICT = "tests/evaluate/test_evaluate.py::test_predict_cli"
T_SWEEP = "tests/workflow/test_sweep.py::test_cli_runs_a_sweep_and_exits_by_outcome"
T_SLURM_RUN = "tests/integration/test_slurm_pipeline.py::test_synthetic_pipeline_end_to_end_on_slurm"
T_CLUSTER = "tests/integration/test_slurm_cluster.py::test_cluster_has_one_idle_node_with_two_gpus"
T_LITERAL = "tests/integration/test_slurm_profile.py::test_setup_then_the_literal_command_plans_the_real_run"
T_MAKE_TABLES = "tests/integration/test_pipeline.py::test_make_tables_rebuilds_everything_from_a_reviewers_copy"
T_SM_REPORT = "tests/integration/test_pipeline.py::test_snakemake_report_packs_the_finished_run"

# command as printed -> the tests that run it (as printed, at tiny size, or its dry-run/--help)
COVERED: dict[str, tuple[str, ...]] = {
    "make demo": (T_MAKE, T_DEMO),
    "make test": (T_MAKE,),  # the suite itself; `make -n test` checks the line it runs
    "make test-benchmarks": (T_MAKE,),  # the speed assertions: machine-dependent, outside CI
    "make env": (T_MAKE,),
    "make env PYTHON=/path/to/python3.12": (T_MAKE,),  # .venv exists here: nothing to do
    "make env && source .venv/bin/activate": (T_MAKE, T_VENV),
    "source .venv/bin/activate": (T_VENV,),
    "make lint": (T_MAKE, "tests/integration/test_lint.py::test_clean"),
    "make benchmark": (T_MAKE, T_BENCH),
    "make stale": (T_MAKE, T_STALE),
    "make gpu-check": (T_MAKE, T_GPU_TINY),
    "make clean-demo": (T_MAKE,),
    "sudo bash .ci/install-system.sh": (T_SHELL,),
    "sudo .ci/install-system.sh": (T_SHELL,),
    "python scripts/benchmark.py --help": (T_HELP,),
    "python scripts/sweep.py --help": (T_HELP,),
    "python scripts/<step>.py --help": (T_HELP,),
    "python scripts/fetch_weights.py --backbone <name>": (T_HELP,),  # needs the network
    "python scripts/fetch_weights.py --backbone resnet50": (T_HELP,),
    "python3 scripts/gpu_check.py --out DIR": (T_HELP, T_GPU_TINY),  # needs a GPU
    "python3 scripts/gpu_check.py --device cpu --tiny": (T_GPU_TINY,),
    "python scripts/predict.py --checkpoint results/<run>/runs/<exp>/best.pt --images <folder or"
    " CSV> --metrics results/<run>/eval/<exp>/metrics.json --out predictions.csv": (T_PREDICT,),
    "python scripts/benchmark.py --fraction 0.05 --train-size 64 --append docs/benchmarks.md":
        (T_BENCH,),
    "python scripts/benchmark.py --stages data --raw-dir /path/to/C-NMC --workers 1 2": (T_BENCH,),
    # needs a GPU: its flags parse (--help), the same stages run on the CPU in T_BENCH
    "python scripts/benchmark.py --device cuda --stages loader,train,eval --image-size 224"
    " --batch-size 256 --train-images 8192 --steps 30 --loader-workers 4 8 --compile both"
    " --eval-batch-sizes 256 1024 --amp bf16 --backbones resnet18 resnet50 resnet101"
    " efficientnet_b0 efficientnet_b1 efficientnet_b3 --append docs/benchmarks.md":
        (T_HELP, T_BENCH),
    # the commands of recorded measurements (docs/benchmarks.md): the same flags run in T_BENCH
    "python scripts/benchmark.py --stages data --raw-dir /tmp/bench12k/raw --workers 2"
    " --work-dir /tmp/bench12k/run2": (T_BENCH,),
    "python scripts/benchmark.py --stages data --fraction 0.1 --workers 1 2"
    " --work-dir /tmp/lpb-f01": (T_BENCH,),
    "python scripts/benchmark.py --stages loader,train,eval --train-size 64 --train-images 512"
    " --batch-size 64 --loader-workers 0 1 --eval-batch-sizes 64 512 --steps 8"
    " --work-dir /tmp/lpb-train": (T_BENCH,),
    "python scripts/benchmark.py --stages train --train-size 64 --loader-workers 0": (T_BENCH,),
    "python scripts/benchmark.py --stages percore --raw-dir /tmp/bench12k/raw": (T_BENCH,),
    "python scripts/benchmark.py --stages data,percore --raw-dir /tmp/h24bench/raw --workers 2"
    " --work-dir /tmp/h24bench/run --json-out /tmp/h24bench/run.json"
    " --title 'C-NMC-size data stage after the command-line fix (shared machine)'"
    " --append docs/benchmarks.md": (T_BENCH,),
    "python scripts/benchmark.py --stages percore --raw-dir /tmp/h24bench/raw"
    " --work-dir /tmp/h24bench/run --title 'Per-core parts of the data stage (shared machine)'"
    " --append docs/benchmarks.md": (T_BENCH,),
    "python scripts/benchmark.py --stages data --raw-dir /tmp/bench12k/raw --workers 2"
    " --work-dir /tmp/bench12k/run3 --json-out /tmp/bench12k/run3.json"
    " --title 'C-NMC-size data stage, quiet machine' --append docs/benchmarks.md": (T_BENCH,),
    "python scripts/benchmark.py --stages train --train-size 224 --train-images 128"
    " --batch-size 32 --loader-workers 1 --steps 4 --work-dir /tmp/lpb-train": (T_BENCH,),
    # needs the network (the registry) / a GPU node: parse-only
    "sh tools/fetch-gpu-wheels.sh": (T_SHELL,),
    "sh tools/gpu-session.sh $OUT/gpu-check 560": (T_SHELL,),
    # needs a SLURM cluster: dry runs here, the real runs on the test cluster
    # `--profile slurm` once `make slurm-profile` linked it (T_LITERAL runs both as typed);
    # the profile itself is dry-run in a workspace and runs for real on the test cluster
    "make slurm-profile": (T_MAKE, T_LITERAL),
    "snakemake --profile slurm --configfile config.yaml profiles/slurm/smoke-config.yaml":
        (T_LITERAL, T_SMOKE),
    "snakemake --profile slurm": (T_LITERAL, T_SLURM, T_SLURM_RUN),
    "snakemake --profile profiles/slurm": (T_SLURM, T_SLURM_RUN),  # the path, without the link
    "snakemake --profile slurm -n": (T_LITERAL, T_SLURM),
    "snakemake --profile slurm --until fetch_weights": (T_LITERAL, T_SLURM),
    "python scripts/sweep.py --augment-dir results/cnmc-studies/augment/official/224px/none"
    " --out-dir results/cnmc-studies/sweeps/resnet50 --backbone resnet50 --strategy partial"
    " --lrs 1e-4 3e-4 1e-3 --partial-stages 1 2 3 --seeds 0 1 2"
    " --pretrained-weights resources/weights/resnet50.safetensors --partition gpu --gpus 1"
    " --cpus-per-task 8 --mem-gb 32 --timeout-min 240": (T_HELP, T_SWEEP),
    "python tests/slurm_cluster.py": (T_CLUSTER,),  # the same start_cluster() as every SLURM test
    "pytest -m slurm": (T_CLUSTER,),
    # on finished results: the tiny pipeline's
    "snakemake --cores 1 results/<run>/report.html --allowed-rules compare report": (T_TABLES,),
    "snakemake --profile profiles/demo results/<run>/report.html": (T_DEMO,),
    "make tables RUN=<run>": (T_MAKE, T_MAKE_TABLES),
    "make tables": (T_MAKE, T_MAKE_TABLES),
    "snakemake --profile profiles/demo --report results/demo/snakemake-report.zip": (
        T_DEMO, T_SM_REPORT),
    "snakemake --list-changes params": (T_WS,),
    "snakemake --cores all -R <rule>": (T_WS, T_RERUN),
    "snakemake --unlock": (T_WS,),
    "snakemake --cores 1 results/<run>/weights/<name>.json": (T_WS,),  # needs the network: dry run
}

# printed, but not a command one runs as printed (or not one that can run on the test machines)
NOT_RUN: dict[str, str] = {
    "snakemake ... -n": "a fragment: the smoke command above with -n (T_SMOKE runs that)",
    "python -m snakemake": "how a SLURM job starts Snakemake, not a user command",
    "python3 -m venv --system-site-packages": "a line inside tools/gpu-session.sh",
    "snakemake --profile slurm --sdm conda": "needs conda, which the test machines do not"
    " have; tests/integration/test_envs.py checks the environments it builds",
}


def _commands_in(text: str) -> list[str]:
    """Shell commands printed in markdown ``text``: lines of code blocks (fenced or indented)
    and inline code spans that start with a command word."""
    found: list[str] = []
    in_fence, pending = False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        stripped = line.strip()
        if pending:  # a continued line (trailing backslash)
            stripped, pending = pending + " " + stripped, ""
        elif not ((in_fence or line.startswith("    ")) and re.match(COMMAND + r"(\s|$)", stripped)):
            continue
        if stripped.endswith("\\"):
            pending = stripped[:-1].strip()
            continue
        found.append(" ".join(COMMENT.sub("", stripped).split()))
    # inline code may wrap over lines within a paragraph
    for span in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
        span = " ".join(span.split())
        if re.match(COMMAND + r" ", span):
            found.append(span)
    return found


def makefile_targets() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", text, re.M)
    assert phony, "Makefile has no .PHONY line"
    return phony.group(1).split()


def documented_commands() -> dict[str, set[str]]:
    """Command -> the files that print it (Makefile targets as ``make <target>``)."""
    where: dict[str, set[str]] = {}
    for rel in DOCS:
        for cmd in _commands_in((ROOT / rel).read_text()):
            where.setdefault(cmd, set()).add(rel)
    for target in makefile_targets():
        where.setdefault(f"make {target}", set()).add("Makefile")
    return where


def test_extraction_finds_blocks_inline_code_and_continuations() -> None:
    text = ("Run `make demo` or\n`python scripts/x.py --a\n1`.\n\n```bash\nmake test   # all\n"
            "ls -l\n```\n\n    snakemake --profile p \\\n        --cores 2\n    layout/ tree\n")
    assert sorted(_commands_in(text)) == ["make demo", "make test",
                                          "python scripts/x.py --a 1",
                                          "snakemake --profile p --cores 2"]


def test_every_documented_command_is_covered() -> None:
    where = documented_commands()
    missing = {c: sorted(f) for c, f in where.items() if c not in COVERED and c not in NOT_RUN}
    assert not missing, (
        "commands printed in the docs without a test; add each to COVERED (the test that runs "
        f"it, or its dry-run/--help form) or NOT_RUN (why it cannot run): {missing}")
    gone = sorted((set(COVERED) | set(NOT_RUN)) - set(where))
    assert not gone, f"listed but no longer printed anywhere (remove them): {gone}"
    assert not set(COVERED) & set(NOT_RUN)


def test_the_covering_tests_exist() -> None:
    for cmd, tests in COVERED.items():
        for ref in tests:
            rel, name = ref.split("::")
            assert re.search(rf"^def {name}\(", (ROOT / rel).read_text(), re.M), (cmd, ref)


# ------------------------------------------------------------------------------ the runs


def _env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    return env


def _run(argv: list[str] | str, cwd: Path = ROOT, timeout: int = 600,
         **kw: object) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=_env(), **kw)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _make_n(target: str) -> str:
    """The recipe ``make <target>`` runs (``make -n``: printed, not run)."""
    return _run(["make", "-n", target]).stdout


def test_make_targets_print_the_documented_commands() -> None:
    expected = {
        "demo": "bin/snakemake --profile profiles/demo",
        "test": ".venv/bin/pytest -ra -n 2",
        "lint": ".venv/bin/ruff check .",
        "benchmark": "python scripts/benchmark.py --fraction 0.05 --train-size 64",
        "stale": "python scripts/stale.py",
        "gpu-check": "scripts/gpu_check.py --out gpu-check",
        "clean-demo": "rm -rf results/demo",
        "slurm-profile": "tools/link-slurm-profile.sh",
        "test-benchmarks": "pytest -ra -n 0 -m benchmark",
        "tables": "scripts/compare.py",
        "env": "",  # up to date here: nothing to do, and no error
    }
    assert set(expected) == set(makefile_targets())
    for target, line in expected.items():
        assert line in _make_n(target), target


def _recipe(target: str) -> list[str]:
    """The benchmark line of ``make <target>`` as an argument list, ``python`` first."""
    line = next(ln for ln in _make_n(target).splitlines() if "scripts/benchmark.py" in ln)
    return shlex.split(line)


# appended to a documented benchmark command: the same code at tiny size (argparse: last wins)
TINY = ["--fraction", "0.002", "--target-per-class", "100", "--image-size", "64", "--train-size", "32",
        "--train-images", "16", "--batch-size", "8", "--steps", "1", "--eval-batch-sizes", "8",
        "--loader-workers", "0"]


def test_benchmark_commands_run_at_tiny_size(tmp_path: Path) -> None:
    # `make benchmark` (= docs/benchmarks.md's quick CPU run): every stage, as make runs it
    out = tmp_path / "bench.md"
    argv = _recipe("benchmark")
    assert argv[argv.index("--append") + 1] == "docs/benchmarks.md"
    _run([*argv, *TINY, "--workers", "1", "--work-dir", str(tmp_path / "w"),
          "--append", str(out)], timeout=900)
    text = out.read_text()
    for stage in ("merge (decode + sha256)", "| split |", "augment (materialise)",
                  "resize (val)", "resize (test)", "per core", "loader", "train loop (real)",
                  "train step (pure)", "evaluate (batched inference)"):
        assert stage in text, stage
    # docs/benchmarks.md's real-data command, on the copy the first run generated
    raw = tmp_path / "w" / "raw-0.002"
    doc = shlex.split("python scripts/benchmark.py --stages data --raw-dir /path/to/C-NMC "
                      "--workers 1 2")
    doc[doc.index("/path/to/C-NMC")] = str(raw)
    proc = _run([sys.executable, *doc[1:], "--target-per-class", "100", "--image-size", "64",
                 "--work-dir", str(tmp_path / "w2")], timeout=900)
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and "---" not in ln]
    settings = [ln.split("|")[1:3] for ln in rows[1:]]
    assert [s[0].strip() for s in settings] == [
        "merge (decode + sha256)", "merge (decode + sha256)", "split",
        "augment (materialise)", "augment (materialise)", "resize (val)", "resize (test)"]
    assert "1 worker(s)" in settings[0][1] and "2 worker(s)" in settings[1][1]


def test_every_script_answers_help() -> None:
    """`python scripts/<step>.py --help` for every script, in one interpreter (imports shared),
    and every flag a documented command gives a script is one that script takes."""
    scripts = sorted(p.name for p in (ROOT / "scripts").glob("*.py"))
    code = (
        "import runpy, sys\n"
        "for name in sys.argv[1:]:\n"
        "    print('HELP-OF', name, flush=True)\n"
        "    sys.argv = [name, '--help']\n"
        "    try:\n"
        "        runpy.run_path('scripts/' + name, run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), (name, e.code)\n"
        "    else:\n"
        "        raise AssertionError(name + ' --help did not exit')\n"
        "    sys.stdout.flush()\n"
    )
    out = _run([sys.executable, "-c", code, *scripts]).stdout
    helps = dict(re.findall(r"^HELP-OF (\S+)\n(.*?)(?=^HELP-OF |\Z)", out, re.M | re.S))
    assert sorted(helps) == scripts and all("usage:" in h for h in helps.values())
    for cmd in COVERED:
        m = re.match(r"python3? scripts/(\w+\.py)(.*)$", cmd)
        if m:
            for flag in re.findall(r"(?<!\S)--[a-z][\w-]*", m.group(2)):
                assert re.search(rf"{flag}\b", helps[m.group(1)]), (cmd, flag)


def test_shell_scripts_parse() -> None:
    for shell, script in (("bash", ".ci/install-system.sh"), ("sh", "tools/fetch-gpu-wheels.sh"),
                          ("sh", "tools/gpu-session.sh")):
        _run([shell, "-n", script])
    assert os.access(ROOT / ".ci/install-system.sh", os.X_OK)  # `sudo .ci/install-system.sh`


def test_venv_activates() -> None:
    out = _run(["bash", "-c", "source .venv/bin/activate && command -v snakemake"]).stdout
    assert Path(out.strip()).resolve().parent == (ROOT / ".venv/bin").resolve()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("docs") / "ws")


def _dry(ws: Path, *args: str, timeout: int = 600) -> str:
    proc = _run([str(BIN / "snakemake"), *args, "--dry-run"], cwd=ws, timeout=timeout)
    return proc.stdout + proc.stderr


def test_demo_profile_plans_the_whole_dag(workspace: Path) -> None:
    out = _dry(workspace, "--profile", "profiles/demo")
    for rule in ("download", "merge", "split", "augment", "resize", "train", "evaluate",
                 "compare", "report"):
        assert re.search(rf"^{rule}\s+\d+$", out, re.M), rule
    out = _dry(workspace, "--profile", "profiles/demo", "results/demo/report.html")
    assert re.search(r"^report\s+1$", out, re.M)


def test_slurm_profile_dry_runs(workspace: Path) -> None:
    out = _dry(workspace, "--profile", "profiles/slurm")
    assert re.search(r"^train\s+\d+$", out, re.M)
    out = _dry(workspace, "--profile", "profiles/slurm", "--until", "fetch_weights")
    assert re.search(r"^fetch_weights\s+\d+$", out, re.M)
    assert not re.search(r"^train\s+\d+$", out, re.M)


def test_workspace_commands(workspace: Path) -> None:
    sm = str(BIN / "snakemake")
    config = ["--configfile", "config.yaml", "test-config.yaml"]
    _run([sm, *config, "--unlock"], cwd=workspace)
    _run([sm, *config, "--list-changes", "params"], cwd=workspace)
    out = _dry(workspace, *config, "--cores", "all", "-R", "compare")
    assert re.search(r"^compare\s+1$", out, re.M)
    # fetch_weights needs the network: its plan for one backbone
    (workspace / "weights.yaml").write_text("weights: {pretrained: true}\n")
    out = _dry(workspace, *config, "weights.yaml", "--cores", "1",
               "results/tiny/weights/resnet18.json")
    assert re.search(r"^fetch_weights\s+1$", out, re.M)
