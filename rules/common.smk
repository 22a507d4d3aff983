# Names shared by the rule files; the helpers themselves live in src/leukopipe/workflow/rules.py.
from leukopipe.workflow.rules import (
    as_json,
    comparison_metrics,
    ensemble_meta,
    evaluate_outputs,
    expand_ensembles,
    gradcam_grids,
    gradcam_options,
    output_flags,
    expand_experiments,
    experiment_meta,
    final_targets,
    option,
    step_code,
    results_dir,
    used_splits,
    weights_input,
    without_workers,
)
from leukopipe.workflow.split_modes import split_id_pattern

R = results_dir(config)
EXPERIMENTS = expand_experiments(config)
ENSEMBLES = expand_ensembles(config)
SPLIT_MODES = used_splits(config)
