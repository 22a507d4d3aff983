"""Real-SLURM tests: the test cluster itself, GPU requests, requeue, and the Snakemake SLURM
profile (profiles/slurm) driving real sbatch submissions.

Time limits (TIMEOUT 60-90 s after start) are tested once, with a real training job, in
tests/train/test_preemption.py. The harness tests at the end need the SLURM binaries but not the
session cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from slurm_cluster import SlurmCluster

# The fixture module is loaded as a plugin (not imported here) so pytest owns its import.
pytest_plugins = ["slurm_cluster"]
pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profiles" / "slurm"

# A job that announces each (re)start and then idles; SLURM_RESTART_COUNT counts requeues.
LOOP_SCRIPT = textwrap.dedent(
    """\
    #!/bin/bash
    echo "start ${SLURM_RESTART_COUNT:-0}"
    for i in $(seq 600); do sleep 1; done
    """
)
GPU_RE = r"gres[:/]gpu(:[\w.]+)?:{n}\b"


def _gpu_request(info: dict[str, str]) -> str:
    """Where this Slurm version reports a job's GPU request (22.05: TresPerJob=gres:gpu:1)."""
    return " ".join(info.get(k, "") for k in ("TresPerJob", "TresPerNode", "TresPerTask", "TRES"))


def _wait_for_text(path: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text()):
            return content
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never appeared in {path}: "
                         f"{path.read_text() if path.exists() else '(missing)'}")


def test_cluster_has_one_idle_node_with_two_gpus(slurm_cluster: SlurmCluster) -> None:
    res = slurm_cluster.run("scontrol", "show", "node", "-o", slurm_cluster.host)
    assert f"Gres=gpu:{slurm_cluster.gpu_type}:2" in res.stdout
    assert f"CPUTot={slurm_cluster.cpus} " in res.stdout
    assert f"RealMemory={slurm_cluster.real_memory_mb} " in res.stdout
    parts = slurm_cluster.run("sinfo", "-h", "-o", "%P %a").stdout.splitlines()
    assert f"{slurm_cluster.partition}* up" in parts  # the default partition
    assert os.environ["SLURM_CONF"] == str(slurm_cluster.conf)


def test_gpu_batch_job_gets_gpu_cpus_and_memory(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    out = tmp_path / "gpu-job.out"
    job_id = slurm_cluster.sbatch(
        "--gpus=1", "--cpus-per-task=1", "--mem=500", "--time=5", f"--output={out}",
        script="#!/bin/bash\n"
        'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset}"\n'
        'echo "SLURM_JOB_GPUS=${SLURM_JOB_GPUS:-unset}"\n',
    )
    info = slurm_cluster.wait_for_job(job_id, "COMPLETED", timeout=60)
    assert re.search(GPU_RE.format(n=1), _gpu_request(info)), info
    assert info["NumCPUs"] == "1" and info["CPUs/Task"] == "1"
    assert info["MinMemoryNode"] == "500M"
    assert "mem=500M" in info["TRES"]
    assert info["TimeLimit"] == "00:05:00"
    assert info["ExitCode"] == "0:0"
    lines = out.read_text().splitlines()
    assert "CUDA_VISIBLE_DEVICES=0" in lines or "CUDA_VISIBLE_DEVICES=1" in lines, lines
    assert "SLURM_JOB_GPUS=0" in lines or "SLURM_JOB_GPUS=1" in lines, lines


def test_more_gpus_than_the_node_has_is_rejected(slurm_cluster: SlurmCluster) -> None:
    # Proves the GPU count is enforced, not just passed through.
    with pytest.raises(RuntimeError, match="Requested node configuration is not available"):
        slurm_cluster.sbatch(f"--gpus={slurm_cluster.gpus + 1}", "--mem=100", "--wrap=true")


def test_requeue_sends_running_job_back_to_pending_and_runs_it_again(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    out = tmp_path / "requeue.out"
    # --open-mode=append keeps the first run's output across the restart.
    job_id = slurm_cluster.sbatch(
        "--cpus-per-task=1", "--mem=100", "--time=10", "--open-mode=append", f"--output={out}",
        script=LOOP_SCRIPT,
    )
    try:
        slurm_cluster.wait_for_job(job_id, "RUNNING", timeout=60)
        _wait_for_text(out, "start 0", timeout=30)
        slurm_cluster.run("scontrol", "requeue", job_id)
        pending = slurm_cluster.wait_for_job(job_id, "PENDING", timeout=30, poll=0.1)
        assert pending["Restarts"] == "1"
        # Requeued jobs are held for AuthInfo cred_expire seconds (10 s on this cluster).
        slurm_cluster.wait_for_job(job_id, "RUNNING", timeout=60)
        content = _wait_for_text(out, "start 1", timeout=30)
        assert content.splitlines()[:1] == ["start 0"], content
    finally:
        slurm_cluster.run("scancel", job_id, check=False)
    slurm_cluster.wait_for_job(job_id, "CANCELLED", timeout=30)


SNAKEFILE = textwrap.dedent(
    """\
    localrules: prepare

    ENV = (
        'echo "SLURM_JOB_ID=${{SLURM_JOB_ID:-none}}"; '
        'echo "SLURM_JOB_PARTITION=${{SLURM_JOB_PARTITION:-none}}"; '
        'echo "CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES:-unset}}"'
    )

    rule all:
        input: "gpu_step.txt", "train.txt"

    rule prepare:
        output: "prepare.txt"
        shell: "(" + ENV + ") > {output}"

    # Resources from the rule itself (not named in the profile's set-resources).
    rule gpu_step:
        input: "prepare.txt"
        output: "gpu_step.txt"
        resources: gpu=1, cpus_per_gpu=1, mem_mb=300, runtime=4
        shell: "(" + ENV + ") > {output}"

    # Named like the pipeline's rule: the profile's set-resources apply.
    rule train:
        input: "prepare.txt"
        output: "train.txt"
        shell: "(" + ENV + ") > {output}"
    """
)


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_snakemake_profile_runs_gpu_rules_on_slurm(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEUKOPIPE_SLURM_")}
    env.update(
        LEUKOPIPE_SLURM_GPU_PARTITION=slurm_cluster.gpu_partition,
        LEUKOPIPE_SLURM_GPU_MODEL=slurm_cluster.gpu_type,
        LEUKOPIPE_SLURM_CPUS_PER_GPU="1",
        LEUKOPIPE_SLURM_TRAIN_MEM_MB="400",
        LEUKOPIPE_SLURM_TRAIN_RUNTIME="7",
    )
    env.update(SLURM_CONF=slurm_cluster.env["SLURM_CONF"], PATH=slurm_cluster.env["PATH"])
    cmd = [
        sys.executable, "-m", "snakemake", "--profile", str(PROFILE), "--snakefile", "Snakefile",
        # Scalar keys override the profile one by one; short first status check for speed.
        "--slurm-init-seconds-before-status-checks", "2",
    ]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=240, check=False)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-6000:]

    local = _read_env(tmp_path / "prepare.txt")
    assert local["SLURM_JOB_ID"] == "none", "local rule must not be submitted"

    step = _read_env(tmp_path / "gpu_step.txt")
    assert step["SLURM_JOB_ID"] != "none"
    assert step["CUDA_VISIBLE_DEVICES"] in {"0", "1"}, step  # the srun step got the GPU
    step_info = slurm_cluster.job_info(step["SLURM_JOB_ID"])
    assert step_info["JobState"] == "COMPLETED"
    assert step_info["Partition"] == slurm_cluster.partition  # cluster default partition
    assert re.search(GPU_RE.format(n=1), _gpu_request(step_info)), step_info
    assert step_info["MinMemoryNode"] == "300M"
    assert step_info["TimeLimit"] == "00:04:00"
    assert step_info["NumCPUs"] == "1"
    assert re.search(r"gres[:/]gpu:1\b", step_info.get("CpusPerTres", "")), step_info

    train = _read_env(tmp_path / "train.txt")
    assert train["CUDA_VISIBLE_DEVICES"] in {"0", "1"}, train
    train_info = slurm_cluster.job_info(train["SLURM_JOB_ID"])
    # Every value below comes from the profile's set-resources for `train`, via env vars.
    assert train_info["Partition"] == slurm_cluster.gpu_partition
    assert train_info["JobState"] == "COMPLETED"
    assert re.search(rf"gres[:/]gpu:{slurm_cluster.gpu_type}:1\b", _gpu_request(train_info))
    assert train_info["MinMemoryNode"] == "400M"
    assert train_info["TimeLimit"] == "00:07:00"
    assert train_info["NumCPUs"] == "1"
    # --cpus-per-gpu, not --cpus-per-task (a cpus_per_task default would win over it).
    assert re.search(r"gres[:/]gpu:1\b", train_info.get("CpusPerTres", "")), train_info
    assert train_info["Comment"] == "rule_train"
    assert train_info["Requeue"] == "1"
    # The plugin's per-job log lands in the profile's slurm-logdir and is kept on success.
    assert (tmp_path / "logs" / "slurm" / "rule_train" / f"{train['SLURM_JOB_ID']}.log").exists()
    # Status came from squeue: the plugin logs this line when it silently switches to sacct.
    assert "Falling back to 'sacct'" not in log


# ----------------------------------------------------------------------------- harness


def test_scontrol_line_parser_keeps_values_with_equals_commas_and_blanks() -> None:
    import slurm_cluster as harness

    line = (
        "JobId=7 JobName=a b JobState=RUNNING TRES=cpu=1,mem=500M,node=1 Power= "
        "AllocNode:Sid=localhost:42 TresPerJob=gres:gpu:1"
    )
    assert harness.parse_scontrol_line(line) == {
        "JobId": "7", "JobName": "a b", "JobState": "RUNNING",
        "TRES": "cpu=1,mem=500M,node=1", "Power": "", "AllocNode:Sid": "localhost:42",
        "TresPerJob": "gres:gpu:1",
    }


def test_unavailable_cluster_skips_locally_but_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import slurm_cluster as harness

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no slurmd"):
        harness.skip_or_fail("no slurmd")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        harness.skip_or_fail("no slurmd")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="in CI: no slurmd"):
        harness.skip_or_fail("no slurmd")


def test_missing_binaries_name_the_install_script(monkeypatch: pytest.MonkeyPatch) -> None:
    import slurm_cluster as harness

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(harness, "_SBIN_DIRS", ())
    with pytest.raises(harness.ClusterStartError, match=r"slurmctld.*install-system\.sh"):
        harness.start_cluster()


def test_broken_config_fails_fast_with_daemon_log_and_no_leftovers(
    slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import slurm_cluster as harness

    templates = tmp_path / "templates"
    shutil.copytree(harness.TEMPLATE_DIR, templates)
    conf = templates / "slurm.conf.in"
    conf.write_text(conf.read_text() + "NoSuchOption=1\n")
    monkeypatch.setattr(harness, "TEMPLATE_DIR", templates)
    started = time.monotonic()
    with pytest.raises(harness.ClusterStartError, match="slurmctld exited") as err:
        harness.start_cluster(timeout=20)
    root = err.value.root
    assert root is not None
    try:
        assert time.monotonic() - started < 15
        assert "NoSuchOption" in str(err.value)  # the log tail says why
        assert harness.cluster_processes(root / "slurm.conf") == []  # munged stopped too
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # The session cluster is untouched.
    states = set(slurm_cluster.run("sinfo", "-h", "-o", "%T").stdout.split())
    assert states and states <= {"idle", "mixed", "allocated"}, states
