"""What the GPU check needs from torch before its parts run, in a child process of its own.

``python -m leukopipe_tools.gpu_env describe OUT.json`` records the environment (versions of
Python, torch, CUDA, cuDNN, the GPU, its driver, CPUs); ``python -m leukopipe_tools.gpu_env
weights DIR BACKBONE...`` writes stand-in weight files. A broken CUDA driver can hang the first
CUDA call, so the check runs these under a time limit instead of importing torch itself.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from leukopipe.plumbing.atomic import write_json

# distributions whose versions the summary reports (the package's own dependencies)
DISTRIBUTIONS = ("torch", "torchvision", "timm", "numpy", "pandas", "pyarrow", "scikit-learn",
                 "snakemake", "jsonschema", "matplotlib", "pillow", "safetensors", "pyyaml")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def driver_version() -> str | None:
    """The NVIDIA driver version (nvidia-smi, else /proc/driver/nvidia/version), or None."""
    smi = shutil.which("nvidia-smi")
    if smi:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True)
            first = out.stdout.strip().splitlines()
            if first:
                return first[0].strip()
    with contextlib.suppress(OSError):
        text = Path("/proc/driver/nvidia/version").read_text()
        for word in text.split():
            if word.count(".") >= 1 and word.replace(".", "").isdigit():
                return word
    return None


def describe() -> dict[str, Any]:
    """Machine, versions and CUDA details: everything a GPU number must be read with."""
    import torch

    from leukopipe_tools.benchmark import machine_info

    info = machine_info()
    info["versions"] = {d: _version(d) for d in DISTRIBUTIONS}
    info["executable"] = sys.executable
    info["cuda_available"] = torch.cuda.is_available()
    info["torch_cuda"] = torch.version.cuda
    info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    info["driver"] = driver_version()
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                         "capability": f"{p.major}.{p.minor}",
                         "multiprocessors": p.multi_processor_count})
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    info["gpus"] = gpus
    info["cpu_count"] = os.cpu_count()
    return info


def write_stand_in_weights(weights_dir: Path, backbones: list[str]) -> list[str]:
    """Randomly initialised ImageNet-shaped weights in the exact file format ``fetch`` writes,
    so that an offline node runs the pipeline's pretrained path (loading, head reset) with no
    network. They are marked as stand-ins in their sidecar JSON; numbers trained from them say
    nothing about ImageNet transfer."""
    import timm

    from leukopipe.train.weight_files import weights_path
    from leukopipe.train.weights import save_weights

    written = []
    for backbone in backbones:
        dest = weights_path(weights_dir, backbone)
        if dest.is_file():
            continue
        model = timm.create_model(backbone, pretrained=False)
        save_weights(model, dest, backbone,
                     extra={"source": "random initialisation: GPU-check stand-in, not ImageNet"})
        written.append(str(dest))
    return written


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "describe":
        write_json(argv[1], describe())
        return 0
    if len(argv) >= 3 and argv[0] == "weights":
        for path in write_stand_in_weights(Path(argv[1]), argv[2:]):
            print(f"wrote {path}", flush=True)
        return 0
    print("usage: python -m leukopipe_tools.gpu_env describe OUT.json | weights DIR BACKBONE...",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
