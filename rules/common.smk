# Names shared by the rule files; the helpers themselves live in src/leukopipe/workflow.py.
from leukopipe.workflow import (
    as_json,
    expand_experiments,
    final_targets,
    pkg,
    results_dir,
    used_splits,
)

R = results_dir(config)
EXPERIMENTS = expand_experiments(config)
SPLIT_MODES = used_splits(config)
