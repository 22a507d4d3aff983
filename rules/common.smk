# Names shared by the rule files; the helpers themselves live in src/leukopipe/workflow.py.
from leukopipe.workflow import (
    as_json,
    expand_experiments,
    experiment_meta,
    final_targets,
    option,
    pkg,
    results_dir,
    used_splits,
    weights_input,
    without_workers,
)

R = results_dir(config)
EXPERIMENTS = expand_experiments(config)
SPLIT_MODES = used_splits(config)
