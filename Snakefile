# leukopipe: ALL vs Hem transfer learning on C-NMC 2019.
# Stages live in rules/*.smk; the logic they call lives in src/leukopipe (scripts/ are thin CLIs).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from leukopipe.plumbing.errors import UserError
from leukopipe.workflow.config import typed_overrides, validate


configfile: "config.yaml"


try:
    # --config train='{epochs: 3}' means the number 3, as in a config file
    typed_overrides(config, workflow.config_settings.overwrite_config or {})
    # fills every optional key with its schema default: rules read plain keys
    validate(config)
except UserError as exc:
    sys.exit(str(exc))


# Jobs import the package from this checkout, installed or not (cluster jobs run here too).
shell.prefix("export PYTHONPATH=src${{PYTHONPATH:+:$PYTHONPATH}}; ")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/augment.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


localrules:
    all,
    download,
    fetch_weights,
    compare,
    ensemble,
    pool_folds,
    report,


rule all:
    default_target: True
    input:
        final_targets(config),
