"""The GPU check's one summary: a compact markdown page (< 200 KB) of everything it measured.

Rendered from the GPU check's state (anything shaped like :class:`SummarySource`, in practice
``gpu_check.Check``) after every part, so that a run stopped half-way still leaves what it
finished. It knows the check only through that shape, so the two modules import in one direction.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol

import yaml

MAX_BYTES = 200_000
RATIO_TARGET = 0.9
STUDY_A_TARGET_H = 0.75  # 45 minutes on one H200
VAL_SHARE_TARGET = 0.10


def _f(x: Any, digits: int = 1) -> str:
    if x is None or x == "":
        return ""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in r) + " |"
            for r in rows]
    return [*out, ""]


def _environment(env: dict[str, Any]) -> list[str]:
    if not env:
        return ["(not recorded: see the env part)", ""]
    v = env.get("versions", {})
    gpus = env.get("gpus") or []
    gpu = "; ".join(f"{g['name']} ({g['memory_gib']} GiB, sm {g['capability']})" for g in gpus)
    rows = [
        ["GPU", gpu or "none"],
        ["driver", env.get("driver") or ""],
        ["CUDA (torch build)", env.get("torch_cuda") or "none"],
        ["cuDNN", env.get("cudnn") or ""],
        ["bf16 supported", env.get("bf16_supported", "")],
        ["CPUs (usable / online)", f"{env.get('cores')} / {env.get('cpu_count')}"],
        ["CPU", env.get("cpu", "")],
        ["memory (GB)", env.get("memory_gb", "")],
        ["Python", f"{env.get('python')} ({env.get('executable')})"],
        *[[name, version or "not installed"] for name, version in v.items()],
        ["host, load average", f"{env.get('host')}, {env.get('load_average')}"],
    ]
    return _table(["item", "value"], rows)


def _pipeline(part: Any) -> list[str]:
    d = part.data
    if not d.get("experiments"):
        return ["(no pipeline results)", ""]
    out = ["Config: `config.yaml` + `profiles/slurm/smoke-config.yaml` + these overrides:", "",
           "```yaml", yaml.safe_dump(d.get("overrides", {}), sort_keys=False).strip(), "```", ""]
    res = d.get("results", {})
    mem = d.get("gpu_memory") or {}
    rows = []
    for name, meta in d["experiments"].items():
        r = res.get("experiments", {}).get(name, {})
        val, test, tta = r.get("val") or {}, r.get("test") or {}, r.get("tta_test") or {}
        gpu = " / ".join(_f(mem.get(f"{step} {name}"), 0) or "-" for step in ("train", "evaluate"))
        rows.append([f"`{name}`", meta["group"], r.get("epochs"), r.get("images_per_s"),
                     r.get("train_seconds"), r.get("evaluate_seconds"),
                     gpu if mem and "note" not in mem else "n/a",
                     _f(r.get("train_max_rss_mb"), 0), _f(r.get("best_val_macro_f1"), 3),
                     _f(val.get("accuracy"), 3), _f(test.get("accuracy"), 3),
                     _f(test.get("macro_f1"), 3), _f(test.get("roc_auc"), 3),
                     _f(tta.get("accuracy"), 3), r.get("gradcam", "")])
    out += _table(["experiment", "group", "epochs",
                   "train img/s (median of epochs 2+, else epoch 1)", "train job s",
                   "evaluate job s", "peak GPU MiB (train / evaluate)",
                   "train max RSS MB", "best val macro-F1 (history)", "val acc (best ckpt)",
                   "test acc", "test macro-F1", "test AUC", "TTA test acc", "Grad-CAM"], rows)
    ens = res.get("ensembles", {})
    if ens:
        out += _table(["ensemble", "test acc", "test macro-F1", "test AUC"],
                      [[f"`{n}`", _f((m or {}).get("accuracy"), 3),
                        _f((m or {}).get("macro_f1"), 3), _f((m or {}).get("roc_auc"), 3)]
                       for n, m in ens.items()])
    out.append(f"comparison.md: {_f(res.get('comparison', False))}; report.html: "
               f"{_f(res.get('report', False))}")
    if mem:
        if "note" in mem:
            out.append(f"GPU memory: {mem['note']}")
        else:
            out.append(f"GPU memory (nvidia-smi, per process, MiB; sampled each second; jobs "
                       f"share the GPU): device total peak {_f(mem.get('device total'), 0)}, "
                       f"unattributed processes peak {_f(mem.get('unattributed'), 0) or '-'}")
    out.append("")
    out.append("The pipeline's jobs share the node (up to cores / 4 training jobs at once on "
               "one GPU), so their img/s are under contention; the benchmark below measures "
               "each backbone alone.")
    return [*out, ""]


def _resume(part: Any) -> list[str]:
    d = part.data
    if not d:
        return ["(no resume results)", ""]
    s = d.get("settings", {})
    out = [f"{s.get('backbone')}, {s.get('image_size')} px, {s.get('train_images')} training / "
           f"{s.get('val_images')} validation images, batch {s.get('batch_size')}, "
           f"{s.get('epochs')} epochs, {s.get('workers')} loader workers, amp {s.get('amp')}, "
           f"device {s.get('device')}; signals go to the run's whole process group "
           f"{d.get('kill_at_fraction_of_epoch')} epoch after a save.", ""]
    und = d.get("undisturbed", {})
    out.append(f"Undisturbed run: exit {und.get('returncode')}, {_f(und.get('seconds'))} s.")
    out.append("")
    out += _table(["attempt", "signal", "epochs saved when sent", "epochs saved after",
                   "mid-epoch", "exit code", "epoch s", "leftover processes"],
                  [[k["attempt"], k["signal"], k["epochs_seen_when_sent"],
                    k["epochs_saved_after"], k["mid_epoch"], k["returncode"],
                    _f(k.get("epoch_seconds"), 2), k["leftover_processes"]]
                   for k in d.get("kills", [])])
    if "final" in d:
        out.append(f"Final rerun: exit {d['final'].get('returncode')}.")
    c = d.get("comparison")
    if c:
        diffs = ", ".join(f"{k} {v:.2g}" for k, v in c.get("max_abs_diff", {}).items())
        out.append(f"Against the undisturbed run ({c['criterion']}): epochs {c['epochs']}, "
                   f"epochs match {_f(c['epochs_match'])}, passed {_f(c['passed'])}.")
        if "same_weights" in c:
            out.append(f"Same weights: {_f(c['same_weights'])}; same history: "
                       f"{_f(c['same_history'])}.")
        out.append(f"Largest per-epoch differences: {diffs}.")
        if "tolerance" in c:
            out.append("Tolerance: " + ", ".join(f"{k} {v}" for k, v in c["tolerance"].items())
                       + ".")
    return [*out, ""]


def _bench(part: Any, device: str) -> list[str]:
    d = part.data
    if not d.get("runs"):
        return ["(no benchmark results)", ""]
    s = d.get("settings", {})
    out = [f"{s.get('image_size')} px, batch {s.get('batch_size')}, {s.get('train_images')} "
           f"training images x {s.get('epochs')} epochs (the first dropped), "
           f"{s.get('val_images')} validation images, {s.get('workers')} loader workers, "
           f"amp {s.get('amp')}; random pixels (speed does not depend on them).", ""]
    share = d.get("study_a", {}).get("val_share", {})
    rows = []
    for run in d["runs"]:
        rows_ = run.get("result", {}).get("rows", {})
        real, pure = rows_.get("real", {}), rows_.get("pure", {})
        ex = real.get("extra", {})
        ratio = real["rate"] / pure["rate"] if real and pure else None
        save = ex.get("save_seconds") or rows_.get("save", {}).get("seconds")
        brk = rows_.get("breakdown", {}).get("extra", {})
        peak = " / ".join(_f(x.get("extra", {}).get("peak_gpu_mb"), 0) or "-" for x in (real, pure))
        val_share = share.get(run["backbone"]) if not run["compile"] else None
        rows.append([run["backbone"], "on" if run["compile"] else "off", run["status"],
                     real.get("rate"), pure.get("rate"), _f(ratio, 2),
                     _f(ex.get("train_seconds"), 2), _f(ex.get("val_seconds"), 2),
                     _f(save, 2), f"{val_share:.1%}" if val_share is not None else "",
                     rows_.get("inference", {}).get("rate"), peak,
                     f"{brk['wait_ms']:.1f} / {brk['compute_ms']:.1f}" if brk else "",
                     run.get("seconds")])
    out += _table(["backbone", "compile", "status", "real loop img/s", "pure step img/s",
                   f"ratio (target >= {RATIO_TARGET})", "train pass s", "val pass s",
                   "checkpoint save s", "val share of a Study A epoch", "inference img/s",
                   "peak GPU MiB (loop / pure)", "loader wait / compute ms per step",
                   "run s"], rows)
    est = d.get("study_a", {})
    if est.get("study_a_hours") is not None:
        n = len(est["study_a_backbones_measured"])
        per = ", ".join(f"{b} {h * 60:.1f} min" for b, h in est["hours"].items())
        out.append(f"Estimated Study A wall time ({n}/5 backbones measured): "
                   f"**{est['study_a_hours'] * 60:.1f} min** (target <= "
                   f"{STUDY_A_TARGET_H * 60:.0f} min on one H200). Per backbone: {per}.")
        out.append("How: 50 epochs x (20,000 training images / real-loop img/s + 1,250 "
                   "validation images / the loop's validation img/s + one checkpoint save), "
                   "eager, one job at a time; an upper bound, early stopping only shortens it.")
    ratios = [r[5] for r in rows if r[1] == "off" and r[5]]
    if device == "cpu":
        out.append("CPU run: these numbers test the code path, not the GPU targets.")
    elif ratios:
        ok = all(float(x) >= RATIO_TARGET for x in ratios) and len(ratios) == 6
        out.append(f"Ratio >= {RATIO_TARGET} for all six backbones: {_f(ok)}.")
    return [*out, ""]


class SummarySource(Protocol):
    """What the summary reads of a running check."""

    start: float
    device: str
    scale: Any  # has .name
    env_info: dict[str, Any]
    budgets: dict[str, float]
    parts: Mapping[str, Any]  # name -> PartResult (name, status, seconds, detail, data)


def render(check: SummarySource) -> str:
    """The summary page of ``check`` as it stands now."""
    env = check.env_info
    elapsed = time.monotonic() - check.start
    lines = [f"# GPU check: {check.scale.name} on {check.device}", "",
             f"- written {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}, "
             f"{elapsed:.0f} s after the start",
             f"- command: `{' '.join(sys.argv)}`",
             "- outcome: " + ", ".join(f"{p.name} {p.status}" for p in check.parts.values()),
             "", "## Environment", ""]
    lines += _environment(env)
    lines += ["## Parts", ""]
    lines += _table(["part", "status", "wall s", "budget s", "detail"],
                    [[p.name, p.status, p.seconds, _f(check.budgets.get(p.name), 0),
                      p.detail.splitlines()[0][:200] if p.detail else ""]
                     for p in check.parts.values()])
    lines += ["## Pipeline (Snakemake)", "", *_pipeline(check.parts["pipeline"])]
    lines += ["## Resume after SIGTERM and SIGKILL", "", *_resume(check.parts["resume"])]
    lines += ["## Benchmark: training loop versus pure step", ""]
    lines += _bench(check.parts["bench"], check.device)
    failed = [p for p in check.parts.values() if p.status not in ("ok", "not selected")
              and p.detail]
    if failed:
        lines += ["## Failures", ""]
        for p in failed:
            lines += [f"### {p.name}", "", "```", p.detail[-6000:], "```", ""]
    text = "\n".join(lines) + "\n"
    if len(text.encode()) > MAX_BYTES:  # cannot happen with bounded tails; never exceed it
        text = text.encode()[: MAX_BYTES - 100].decode(errors="ignore") + "\n\n(truncated)\n"
    return text
