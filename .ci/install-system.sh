#!/usr/bin/env bash
# Install the system packages behind the real-SLURM tests (tests/slurm_cluster.py):
# slurm-wlm (slurmctld + slurmd + client tools) and munge.
# Idempotent: exits at once when every binary is present; otherwise installs as root,
# non-interactively, with a single `apt-get update`.
set -euo pipefail

packages=(slurm-wlm slurm-client munge)
binaries=(slurmctld slurmd sbatch srun squeue scontrol sinfo scancel munged)
# The daemons live in sbin, which a non-root PATH often lacks.
export PATH="$PATH:/usr/sbin:/usr/local/sbin:/sbin"

missing_binaries() {
    local b out=()
    for b in "${binaries[@]}"; do
        command -v "$b" >/dev/null 2>&1 || out+=("$b")
    done
    echo "${out[*]}"
}

missing="$(missing_binaries)"
if [ -z "$missing" ]; then
    echo "install-system: slurm and munge already installed"
    exit 0
fi
echo "install-system: missing: $missing; installing ${packages[*]}"

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system: must run as root (try: sudo $0)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# confold/confdef: never stop at a dpkg config-file prompt. The services the packages enable
# find no /etc/slurm/slurm.conf and stay down; the tests start their own daemons.
apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${packages[@]}"

missing="$(missing_binaries)"
if [ -n "$missing" ]; then
    echo "install-system: still missing after install: $missing" >&2
    exit 1
fi
echo "install-system: done (slurm $(dpkg-query -W -f='${Version}' slurm-client))"
