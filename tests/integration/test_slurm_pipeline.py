"""The whole synthetic pipeline on the real SLURM test cluster through profiles/slurm.

Every non-local rule becomes a real sbatch job; the test reads what each job asked for from
SLURM itself (``scontrol show job``, polled in a thread during the run so that nothing is lost
to MinJobAge) and checks that the tables come out.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pipeline_workspace import TINY_CONFIG, make_workspace, snakemake

if TYPE_CHECKING:
    from slurm_cluster import SlurmCluster

pytest_plugins = ["slurm_cluster"]
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

RUN = "results/tiny"
LOCAL_RULES = {"download", "fetch_weights", "compare", "report", "all"}
# One experiment (official split, frozen resnet18): every stage of the DAG, the fewest jobs.
# Each SLURM job costs ~15-35 s here (nested Snakemake start-up plus the plugin's status
# polling, whose interval grows by 10 s per poll without a finished job).
EXPERIMENT = "official.resnet18.frozen.s0"
OVERRIDES = {"experiments": [TINY_CONFIG["experiments"][1]]}


class JobRecorder(threading.Thread):
    """Polls ``scontrol show job -o`` and keeps the last record of every job it saw."""

    def __init__(self, cluster: SlurmCluster, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.cluster, self.interval = cluster, interval
        self.jobs: dict[str, dict[str, str]] = {}
        self._halt = threading.Event()

    def poll(self) -> None:
        import slurm_cluster as harness

        res = self.cluster.run("scontrol", "show", "job", "-o", check=False)
        for line in res.stdout.splitlines():
            if line.startswith("JobId="):
                info = harness.parse_scontrol_line(line)
                self.jobs[info["JobId"]] = info

    def run(self) -> None:
        while not self._halt.is_set():
            self.poll()
            self._halt.wait(self.interval)

    def stop(self) -> dict[str, dict[str, str]]:
        self._halt.set()
        self.join(timeout=10)
        self.poll()  # final states
        return self.jobs


def _rule(info: dict[str, str]) -> str:
    m = re.match(r"rule_([a-z_]+?)(?:_wildcards_.*)?$", info.get("Comment", ""))
    return m.group(1) if m else ""


def test_synthetic_pipeline_end_to_end_on_slurm(
    slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace(tmp_path / "ws", OVERRIDES)
    for key in [k for k in os.environ if k.startswith("LEUKOPIPE_SLURM_")]:
        monkeypatch.delenv(key)
    # The site settings of profiles/slurm, scaled down to the test node (2 CPUs).
    monkeypatch.setenv("LEUKOPIPE_SLURM_GPU_PARTITION", slurm_cluster.gpu_partition)
    monkeypatch.setenv("LEUKOPIPE_SLURM_GPU_MODEL", slurm_cluster.gpu_type)
    monkeypatch.setenv("LEUKOPIPE_SLURM_CPUS_PER_GPU", "1")
    monkeypatch.setenv("LEUKOPIPE_SLURM_CPUS", "2")
    monkeypatch.setenv("LEUKOPIPE_SLURM_TRAIN_MEM_MB", "1800")
    monkeypatch.setenv("LEUKOPIPE_SLURM_TRAIN_RUNTIME", "9")
    monkeypatch.setenv("LEUKOPIPE_SLURM_EVAL_MEM_MB", "1700")
    monkeypatch.setenv("LEUKOPIPE_SLURM_EVAL_RUNTIME", "8")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # 2 shared cores: avoid oversubscription
    recorder = JobRecorder(slurm_cluster)
    recorder.start()
    try:
        proc = snakemake(ws, "--profile", "profiles/slurm",
                         "--slurm-init-seconds-before-status-checks", "2", timeout=600)
    finally:
        jobs = recorder.stop()
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-8000:]
    assert "Falling back to 'sacct'" not in log

    # this run's jobs: the plugin submits them with -D <workflow dir>; the session cluster
    # also remembers jobs of other tests (MinJobAge)
    jobs = {k: i for k, i in jobs.items() if i.get("WorkDir") == str(ws)}
    by_rule: dict[str, list[dict[str, str]]] = {}
    for info in jobs.values():
        by_rule.setdefault(_rule(info), []).append(info)
    # every non-local rule ran as a SLURM job, no local rule did, and all completed
    assert set(by_rule) == {"merge", "split", "augment", "resize", "train", "evaluate"}, by_rule
    assert not set(by_rule) & LOCAL_RULES
    assert {len(v) for k, v in by_rule.items() if k in ("split", "train", "evaluate")} == {1}
    assert len(by_rule["resize"]) == 2  # val and test
    assert all(i["JobState"] == "COMPLETED" for i in jobs.values()), {
        k: (i["JobState"], i.get("Comment")) for k, i in jobs.items()}

    gpu = re.compile(rf"gres[:/]gpu:{slurm_cluster.gpu_type}:1\b")
    for info in by_rule["train"] + by_rule["evaluate"]:
        train = _rule(info) == "train"
        assert info["Partition"] == slurm_cluster.gpu_partition, info
        request = " ".join(info.get(k, "") for k in ("TresPerJob", "TresPerNode", "TRES"))
        assert gpu.search(request), info  # one GPU of the configured model
        assert re.search(r"gres[:/]gpu:1\b", info.get("CpusPerTres", "")), info  # 1 CPU/GPU
        assert info["NumCPUs"] == "1"
        assert info["MinMemoryNode"] == ("1800M" if train else "1700M")
        assert info["TimeLimit"] == ("00:09:00" if train else "00:08:00")
        assert info["Requeue"] == "1"  # slurm-requeue in the profile
    for info in by_rule["merge"] + by_rule["split"] + by_rule["augment"] + by_rule["resize"]:
        assert info["Partition"] == slurm_cluster.partition  # cluster default
        assert not re.search(r"gpu", " ".join(info.get(k, "") for k in
                                               ("TresPerJob", "TresPerNode"))), info
        # the data steps take LEUKOPIPE_SLURM_CPUS (set-threads); split is single-threaded
        assert info["NumCPUs"] == ("1" if _rule(info) == "split" else "2"), info

    # the tables, figures and report came out (compare/report ran locally)
    run = ws / RUN
    table = (run / "tables" / "comparison.md").read_text()
    assert "resnet18 (frozen)" in table
    for rel in ("tables/comparison.csv", "tables/comparison.tex", "figures/roc.png",
                "report.html"):
        assert (run / rel).is_file(), rel
    # per-job SLURM logs are kept (profile: slurm-keep-successful-logs)
    kept = list((ws / "logs" / "slurm" / "rule_train").rglob("*.log"))
    assert len(kept) == 1, kept
    assert "epoch 2/2" in (run / "runs" / EXPERIMENT / "train.log").read_text()
    assert not (run / "resume" / EXPERIMENT / "state.pt").exists()
