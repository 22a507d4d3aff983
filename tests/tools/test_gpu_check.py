"""The one-command GPU check: bounded runs that end everything they started, the smoke config,
the tiny CPU run of the whole check, the summary, and the interpreter choice of `make env`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from leukopipe_tools import gpu_check as gc
from leukopipe_tools.gpu_summary import MAX_BYTES, render
from leukopipe_tools.process_group import run_bounded
from leukopipe_tools.resume_check import CUDA_TOLERANCE, compare

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed process waits as a zombie until its parent reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# A child that ignores SIGTERM, with a grandchild in its process group and one that left the
# group (setsid), both sleeping: the hard timeout must end all three.
STUBBORN = r"""
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
g = subprocess.Popen(["sleep", "300"])
e = subprocess.Popen(["setsid", "sleep", "301"])
print("pids", g.pid, e.pid, flush=True)
time.sleep(300)
"""


def test_timeout_ends_the_child_and_every_grandchild(tmp_path):
    lines: list[str] = []
    start = time.monotonic()
    out = run_bounded([sys.executable, "-c", STUBBORN], timeout=3, log_path=tmp_path / "log",
                      grace=1, on_line=lines.append)
    assert out.status == "timed out" and out.returncode == -signal.SIGKILL
    assert time.monotonic() - start < 3 + 1 + 6  # timeout + grace + reaping slack
    pids = [int(x) for x in lines[0].split()[1:]]
    time.sleep(0.3)
    assert not any(_running(p) for p in pids), pids
    assert "pids" in (tmp_path / "log").read_text()


def test_graceful_child_ends_within_the_grace_period(tmp_path):
    # a shell starts at once (a Python child might not have its handler yet after 2 s)
    script = 'trap "exit 7" TERM; while :; do sleep 0.1; done'
    out = run_bounded(["sh", "-c", script], timeout=2, log_path=tmp_path / "log", grace=20)
    assert out.status == "timed out" and out.returncode == 7 and out.seconds < 15


def test_processes_left_behind_by_a_finished_command_are_ended(tmp_path):
    # the shell exits at once; the background sleep (like an orphaned DataLoader worker) stays
    lines: list[str] = []
    out = run_bounded(["sh", "-c", "sleep 300 & echo $!"], timeout=60,
                      log_path=tmp_path / "log", grace=2, on_line=lines.append)
    assert out.status == "ok" and out.leftovers_killed == 1
    time.sleep(0.3)
    assert not _running(int(lines[0]))


def test_failure_is_reported_with_its_exit_code_and_output(tmp_path):
    out = run_bounded([sys.executable, "-c", "print('broken input'); raise SystemExit(3)"],
                      timeout=60, log_path=tmp_path / "log")
    assert (out.status, out.returncode, out.leftovers_killed) == ("failed", 3, 0)
    assert "broken input" in (tmp_path / "log").read_text()


def test_an_interrupted_caller_ends_the_command_too(tmp_path):
    def interrupt(*_):
        raise KeyboardInterrupt

    lines: list[str] = []
    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_bounded([sys.executable, "-c", STUBBORN], timeout=60,
                        log_path=tmp_path / "log", grace=1, on_line=lines.append)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    pids = [int(x) for x in lines[0].split()[1:]]
    time.sleep(0.5)
    assert not any(_running(p) for p in pids)


# ----------------------------------------------------------------------- interpreter on PATH


def test_python_wrapper_when_python_is_missing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = gc.child_environment(tmp_path / "bin", {"PATH": f"{empty}:/usr/bin:/bin"})
    wrapper = tmp_path / "bin" / "python"
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "bin")
    assert wrapper.is_file() and not wrapper.is_symlink()
    assert "PYTHONPATH" not in env  # children import the installed package, as this one does
    assert env["PYTHONUNBUFFERED"] == "1"
    # `python` now is this interpreter, with its environment (a symlink would lose the venv)
    out = subprocess.run(["python", "-c", "import sys, yaml; print(sys.prefix)"], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == sys.prefix


def test_no_wrapper_when_python_on_path_is_this_interpreter(tmp_path):
    if not (BIN / "python").exists():
        pytest.skip("this interpreter's folder has no `python`")
    env = gc.child_environment(tmp_path / "bin", {"PATH": f"{BIN}:/usr/bin:/bin"})
    assert not (tmp_path / "bin").exists() and env["PATH"].startswith(str(BIN))
    # a `python` that is another interpreter or environment is not us
    other = tmp_path / "other"
    other.mkdir()
    (other / "python").write_text("#!/bin/sh\necho /somewhere-else 3.0\n")
    (other / "python").chmod(0o755)
    assert gc.needs_python_wrapper(str(other))


# ------------------------------------------------------------------------------ smoke config


def _smoke_config() -> dict:
    return gc.deep_merge(gc.load_yaml(ROOT / "config.yaml"), gc.load_yaml(ROOT / gc.SMOKE_CONFIG))


def test_smoke_config_is_valid_and_shaped_like_the_studies():
    from leukopipe.workflow.config import expand_ensembles, expand_experiments, validate

    config = validate(_smoke_config())
    smoke = gc.load_yaml(ROOT / gc.SMOKE_CONFIG)
    assert set(smoke) <= {"run", "data", "split", "augment", "train", "experiments", "ensembles"}
    syn = config["data"]["synthetic"]
    assert syn["layout"] == "B" and syn["nested"] and config["augment"]["image_size"] == 224
    donors = sum(syn[k] for k in ("train_all_subjects", "train_hem_subjects",
                                  "prelim_all_subjects", "prelim_hem_subjects"))
    assert donors == 101 and sum(syn["cells_per_subject"]) / 2 == 40
    # the largest training class of any split fits under target_per_class (no undersampling)
    largest_class = 60 * syn["cells_per_subject"][1] * 0.9 * 0.9
    assert config["augment"]["target_per_class"] >= largest_class
    exps = expand_experiments(config)
    shapes = {(e.group, e.split, e.backbone, e.strategy) for e in exps.values()}
    assert ("study_a_smoke", "image", "resnet50", "full") in shapes
    assert ("study_a_smoke", "image", "efficientnet_b0", "full") in shapes
    assert {("study_b_smoke", "official", "resnet18", s) for s in ("frozen", "partial")} <= shapes
    assert sorted(e.split for e in exps.values() if e.group == "cv_smoke") == ["cv2-f0", "cv2-f1"]
    assert list(expand_ensembles(config)) == ["image.ensemble-study_a_smoke"]
    assert config["weights"]["pretrained"]  # the smoke run proves the weights too


def test_smoke_config_dry_run_with_the_slurm_profile(tmp_path):
    ws = gc.copy_workflow(ROOT, tmp_path / "ws")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--profile", "profiles/slurm", "--configfile", "config.yaml",
         gc.SMOKE_CONFIG, "--dry-run"], cwd=ws, capture_output=True, text=True, env=env,
        timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:", 1)[1], re.M))
    assert jobs["train"] == "6" and jobs["evaluate"] == "6" and jobs["ensemble"] == "1"
    assert jobs["fetch_weights"] == "3" and jobs["report"] == "1"


def test_check_uses_the_smoke_groups():
    full = gc.pipeline_overrides(gc.FULL)
    assert "experiments" not in full and "ensembles" not in full  # the smoke groups, as they are
    tiny = gc.pipeline_overrides(gc.TINY)
    smoke = gc.load_yaml(ROOT / gc.SMOKE_CONFIG)["experiments"]
    kept = [g for g in smoke if g["name"] in gc.TINY.tiny_groups]
    assert [g["name"] for g in tiny["experiments"]] == list(gc.TINY.tiny_groups)
    for g, s in zip(tiny["experiments"], kept, strict=True):
        assert set(g["backbones"]) <= set(gc.TINY.tiny_backbones)
        assert {k: v for k, v in g.items() if k != "backbones"} == \
            {k: v for k, v in s.items() if k != "backbones"}
    assert tiny["experiments"][0]["backbones"] == ["resnet18"] and tiny["ensembles"] == []
    from leukopipe.workflow.config import validate

    validate(gc.deep_merge(_smoke_config(), tiny))


def test_thread_settings_share_the_cores():
    assert gc.thread_settings(16, gc.FULL, 4) == ["download=16", "merge=16", "augment=4",
                                                   "resize=4"]
    assert gc.thread_settings(2, gc.TINY, 4)[2:] == ["augment=1", "resize=1"]


# ----------------------------------------------------------------------------- orchestration


def test_a_failing_part_does_not_stop_the_next(tmp_path, monkeypatch):
    calls = []

    def broken(self, part, deadline):
        calls.append("pipeline")
        raise RuntimeError("boom")

    def fine(self, part, deadline):
        calls.append("resume")
        part.status = "ok"

    monkeypatch.setattr(gc.Check, "part_pipeline", broken)
    monkeypatch.setattr(gc.Check, "part_resume", fine)
    check = gc.Check(tmp_path / "out", tmp_path / "work", "cpu", gc.TINY, dict(gc.TINY.budgets),
                     ["pipeline", "resume"], say=lambda msg: None)
    assert check.run() == 1
    assert calls == ["pipeline", "resume"]
    text = (tmp_path / "out" / gc.SUMMARY_NAME).read_text()
    assert "| pipeline | failed |" in text and "RuntimeError: boom" in text
    assert "| resume | ok |" in text and "| bench | not selected |" in text


def test_deadline_cuts_the_last_parts(tmp_path, monkeypatch):
    def slow(self, part, deadline):
        time.sleep(max(0.0, deadline - time.monotonic()))
        part.status = "ok"

    monkeypatch.setattr(gc.Check, "part_resume", slow)
    monkeypatch.setattr(gc.Check, "part_bench", slow)
    check = gc.Check(tmp_path / "out", tmp_path / "work", "cpu", gc.TINY,
                     {**gc.TINY.budgets, "resume": 1.5, "bench": 100}, ["resume", "bench"],
                     say=lambda msg: None, deadline=gc.FINISH_S + 3)
    start = time.monotonic()
    check.run()
    assert time.monotonic() - start < 6
    assert check.parts["resume"].seconds == pytest.approx(1.5, abs=0.5)
    assert check.parts["bench"].seconds < 2.5  # only what was left before the deadline


def test_snakemake_timeout_is_recorded_and_its_jobs_end(tmp_path):
    """A real pipeline run cut after a few seconds: marked timed out, nothing left running."""
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(out),
         "--device", "cpu", "--tiny", "--work-dir", str(work), "--parts", "pipeline",
         "--budget", "pipeline=20"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (out / gc.SUMMARY_NAME).read_text()
    m = re.search(r"\| pipeline \| timed out \| (\d+\.\d) \| 20 \|", text)
    assert m and 15 <= float(m.group(1)) <= 30, text[:3000]
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True).stdout
    assert not left.strip(), left


# ----------------------------------------------------------------------------------- summary


def test_summary_stays_small_and_study_a_estimate(tmp_path):
    check = gc.Check(tmp_path / "out", tmp_path / "work", "cuda", gc.FULL, dict(gc.BUDGETS),
                     list(gc.PARTS), say=lambda msg: None)
    runs = []
    for b, rate in (("resnet50", 1000.0), ("efficientnet_b0", 2000.0)):
        runs.append({"backbone": b, "compile": False, "status": "ok", "seconds": 20.0,
                     "result": {"rows": {
                         "real": {"rate": rate, "extra": {"val_seconds": 0.5,
                                                          "val_images": 1250,
                                                          "train_seconds": 2.0,
                                                          "peak_gpu_mb": 9000.0}},
                         "pure": {"rate": rate / 0.95, "extra": {"peak_gpu_mb": 8000.0}},
                         "save": {"seconds": 1.0}}}})
    est = gc.study_a_estimate(runs)
    # 50 x (20,000 / rate + 1,250 / 2,500 + 1 s save)
    assert est["hours"]["resnet50"] == pytest.approx(50 * (20 + 0.5 + 1) / 3600)
    assert est["study_a_hours"] == pytest.approx(50 * (21.5 + 11.5) / 3600)
    assert est["val_share"]["efficientnet_b0"] == pytest.approx(0.5 / 11.5)
    check.parts["bench"].data = {"settings": {}, "runs": runs, "study_a": est}
    check.parts["pipeline"].status = "failed"
    check.parts["pipeline"].detail = "x" * 10_000_000  # a huge log tail is cut, not copied
    text = render(check)
    assert len(text.encode()) < MAX_BYTES
    assert "| resnet50 | off | ok | 1000.0 | 1052.6 | 0.95 |" in text
    assert "**27.5 min**" in text  # 50 x 33 s


def test_resume_comparison_on_cuda_uses_the_tolerance(tmp_path):
    base = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.7, 0.4, 0.2],
                         "train_accuracy": [0.5, 0.8, 0.9], "val_loss": [0.6, 0.3, 0.2],
                         "val_accuracy": [0.6, 0.9, 0.95], "val_macro_f1": [0.6, 0.9, 0.95],
                         "val_auc": [0.7, 0.95, 0.99], "improved": [True, True, True]})
    ref, got = tmp_path / "ref", tmp_path / "got"
    for d in (ref, got):
        d.mkdir()
    base.to_parquet(ref / "history.parquet")
    near = base.copy()
    near["train_loss"] += CUDA_TOLERANCE["train_loss"] / 2
    near.to_parquet(got / "history.parquet")
    assert compare(ref, got, exact=False)["passed"]
    far = base.copy()
    far.loc[2, "val_accuracy"] += 2 * CUDA_TOLERANCE["val_accuracy"]
    far.to_parquet(got / "history.parquet")
    assert not compare(ref, got, exact=False)["passed"]
    base.iloc[[0, 2]].to_parquet(got / "history.parquet")  # an epoch missing
    result = compare(ref, got, exact=False)
    assert not result["passed"] and not result["epochs_match"]


# ------------------------------------------------------------------------ the whole check


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_tiny_cpu_check_runs_every_part(tmp_path):
    """`--device cpu --tiny`: the same code as on a GPU, so it cannot rot between GPU runs."""
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(out),
         "--device", "cpu", "--tiny", "--work-dir", str(work)],
        capture_output=True, text=True, timeout=3500,
        env={**os.environ, "PATH": "/usr/bin:/bin"})  # no `python` on PATH: the wrapper serves
    summary = out / gc.SUMMARY_NAME
    text = summary.read_text()
    assert proc.returncode == 0, proc.stdout[-3000:] + text[:6000]
    assert summary.stat().st_size < MAX_BYTES
    assert "[gpu-check" in proc.stdout and "pipeline: " in proc.stdout  # progress lines
    for part in gc.PARTS:
        assert re.search(rf"^\| {part} \| ok \| \d+\.\d \|", text, re.M), part
    assert "| Python |" in text and "| torch |" in text
    # every experiment trained its epoch and was scored on test (numbers parse)
    exp_rows = [line for line in text.splitlines() if line.startswith("| `")
                and ".s0`" in line]
    assert len(exp_rows) == 3, exp_rows  # image full, official frozen + partial
    for line in exp_rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] == "1" and float(cells[3]) > 0 and 0 <= float(cells[10]) <= 1
        assert cells[-1] == "yes"  # Grad-CAM grid
    assert "comparison.md: yes; report.html: yes" in text
    assert (out / gc.SNAKEMAKE_LOG).stat().st_size > 0
    # resume: SIGTERM and SIGKILL mid-epoch, then bit-identical to the undisturbed run
    assert "bit-exact (CPU)" in text and "passed yes" in text
    assert re.search(r"\| sigterm-\d \| SIGTERM \| \d \| \d \| yes \| 143 \|", text)
    assert re.search(r"\| sigkill-\d \| SIGKILL \| \d \| \d \| yes \| -9 \|", text)
    # the ratio table: one eager and one compiled row, every number parses
    bench = [line for line in text.split("## Benchmark", 1)[1].splitlines()
             if line.startswith("| resnet18 |")]
    assert len(bench) == 2
    for line in bench:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] == "ok" and float(cells[3]) > 0 and float(cells[4]) > 0
        # a measured ratio of wall times: it parses and is positive; its size depends on the
        # machine and its load (12.01 on a loaded CI run), so no upper bound
        assert float(cells[5]) > 0
    eager = [c.strip() for c in bench[0].strip("|").split("|")]
    assert float(eager[6]) > 0 and float(eager[8]) > 0 and float(eager[10]) > 0
    assert "/" in eager[12]  # loader wait / compute
    assert not work.exists() or not subprocess.run(
        ["pgrep", "-f", str(work)], capture_output=True, text=True).stdout.strip()


# ----------------------------------------------------------------------- interpreter choice


def _fake_python(path: Path, version: str | None, wheels: bool) -> Path:
    """A stand-in interpreter: answers the version check and pip's index query."""
    torch = re.search(r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    vision = re.search(r"^torchvision==(\S+)", (ROOT / "requirements.txt").read_text(),
                       re.M).group(1)
    available = (torch, vision) if wheels else ("1.0", "0.1")
    path.write_text(
        "#!/bin/sh\n"
        + ("exit 1\n" if version is None else "")
        + 'case "$*" in\n'
        f'  *"-c"*) echo "{version}" ;;\n'
        '  *"pip --version"*) echo "pip 25.0" ;;\n'
        f'  *"index versions torch "*) echo "Available versions: {available[0]}, 2.0.0" ;;\n'
        f'  *"index versions torchvision "*) echo "Available versions: {available[1]}" ;;\n'
        "esac\n")
    path.chmod(0o755)
    return path


def test_make_picks_the_first_suitable_interpreter(tmp_path):
    broken = _fake_python(tmp_path / "python3.13", None, True)  # a shim that does not run
    no_wheels = _fake_python(tmp_path / "python3.12", "3.12", False)
    good = _fake_python(tmp_path / "python3.11", "3.11", True)

    def pick(*candidates: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", str(ROOT / "tools" / "pick-python.sh")], text=True,
                              capture_output=True, env={**os.environ, "CANDIDATES": " ".join(
                                  str(c) for c in candidates)})

    proc = pick(broken, no_wheels, good)
    assert proc.returncode == 0 and proc.stdout.strip() == str(good), proc.stderr
    assert "skipping" in proc.stderr and "python3.12" in proc.stderr
    proc = pick(broken, no_wheels)
    assert proc.returncode == 1 and proc.stdout == ""
    # the real version check: a Python older than 3.11 never qualifies
    old = tmp_path / "python3.10"
    old.write_text('#!/bin/sh\nexec python3 -c "import sys; assert (3, 10) >= (3, 11)"\n')
    old.chmod(0o755)
    assert pick(old).returncode == 1
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^PYTHON \?=\s*$", makefile, re.M)  # no hard-coded interpreter
    assert "py=$$(sh tools/pick-python.sh)" in makefile


def test_session_script_bounds_the_check():
    text = (ROOT / "tools" / "gpu-session.sh").read_text()
    assert "--system-site-packages" in text and "--no-index --find-links .whl" in text
    assert re.search(r"timeout -k \d+ .*scripts/gpu_check.py .*--deadline", text)
    assert re.search(r"pip install .*--no-deps .*\\\n\s*-e \. ", text)  # the checkout, installed
    budgets = sum(gc.BUDGETS.values()) + gc.FINISH_S
    assert budgets < 9 * 60  # the check's own bound
    default_limit = int(re.search(r"LIMIT=\$\{2:-(\d+)\}", text).group(1))
    assert budgets < default_limit < 600  # inside one 10-minute device command
    json.dumps(gc.FULL.bench)  # plain data: it goes into the summary
    assert yaml.safe_dump(gc.pipeline_overrides(gc.FULL))
