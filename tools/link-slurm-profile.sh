#!/bin/sh
# Make `snakemake --profile slurm` work from the checkout: link profiles/slurm into Snakemake's
# user profile folder. Snakemake looks a profile name up in the working directory, the user's
# config folder ($XDG_CONFIG_HOME/snakemake, default ~/.config/snakemake) and the site's, never
# in profiles/. Run once per checkout (`make slurm-profile`); it never replaces another profile.
#   usage: tools/link-slurm-profile.sh PYTHON   (an interpreter with snakemake installed)
set -eu
python=${1:-python3}
here=$(cd "$(dirname "$0")/.." && pwd -P)
source_dir="$here/profiles/slurm"
# ask Snakemake itself where it looks, so the answer follows its version and XDG_CONFIG_HOME
folder=$("$python" -c 'from snakemake.cli import get_appdirs; print(get_appdirs().user_config_dir)') || {
    echo "slurm-profile: $python cannot import snakemake; run make env first or pass PYTHON=..." >&2
    exit 1
}
target="$folder/slurm"
if [ -L "$target" ] && [ "$(cd "$target" && pwd -P)" = "$source_dir" ]; then
    echo "slurm-profile: $target already links to $source_dir"
    exit 0
fi
if [ -e "$target" ] || [ -L "$target" ]; then
    echo "slurm-profile: $target exists and is not a link to $source_dir; refusing to replace it (move it away, or use snakemake --profile $source_dir)" >&2
    exit 1
fi
mkdir -p "$folder"
ln -s "$source_dir" "$target"
echo "slurm-profile: linked $target -> $source_dir; now run: snakemake --profile slurm"
