# Every decision the rule files need, as named functions; the rules themselves only declare.
#
# Params that Snakemake compares between runs (plain values and functions of wildcards) are
# what a step's outputs depend on: settings, the data's identity and the code's fingerprint.
# Locations and speed settings (where the raw copy or the weights are, batch sizes for
# inference, compile) change no result, so they come from functions that take ``output`` or
# ``threads``: Snakemake treats such params as derived and never reruns a job because of them.
import shlex
from pathlib import Path

from leukopipe.data.download import archive_stem, raw_folder
from leukopipe.data.raw_identity import CACHE_NAME, download_identity, merge_identity
from leukopipe.train.weight_files import weights_path
from leukopipe.workflow.code_fingerprint import code_fingerprint
from leukopipe.workflow.config import used_splits
from leukopipe.workflow.preprocessing import AUGMENTATION_PATTERN
from leukopipe.workflow.rules import (
    as_json,
    comparison_metrics,
    ensemble_meta,
    eval_store_dir,
    evaluate_outputs,
    expand_ensembles,
    expand_experiments,
    expand_pooled,
    experiment_record,
    final_targets,
    gradcam_grids,
    gradcam_options,
    knn_experiments,
    one_line_errors,
    option,
    output_flags,
    preprocessings,
    results_dir,
    train_provenance,
    train_store_dir,
    weights_record,
)
from leukopipe.data.split_modes import split_id_pattern
from leukopipe.workflow.step_commands import balancing_flags, step_settings, step_shell

RESULTS = results_dir(config)
EXPERIMENTS = expand_experiments(config)
# every preprocessing some group uses, by id (e.g. 224px-bal10000, 224px-none)
PREPROCESSINGS = preprocessings(config)
ENSEMBLES = expand_ensembles(config)
POOLED = expand_pooled(config)
# frozen experiments whose pretrained backbone gets a k-NN probe (eval/<name>.knn/)
KNN_EXPERIMENTS = knn_experiments(config)
# file hashes of the raw copy, keyed by size and mtime (never written under the raw folder)
RAW_HASH_CACHE = Path(RESULTS) / "data" / CACHE_NAME


# ------------------------------------------------------------------------------ code


def get_code(step):
    """Substance fingerprint of scripts/<step>.py and every package module it imports."""
    return code_fingerprint(Path(workflow.basedir) / "scripts" / f"{step}.py")


# ------------------------------------------------------------------------------ data


def get_shell(step):
    """The step's command line: one template, shared with everything else that runs the step."""
    return step_shell(step)


def get_setting(step, name):
    """A config value the step's command takes (its rerun trigger), by the command's name."""
    return step_settings(step, config)[name]


def get_download_identity(wildcards):
    """The raw data's source, and an existing copy's content: download's rerun trigger."""
    with one_line_errors():
        return download_identity(config["data"], RAW_HASH_CACHE)


def get_merge_identity(wildcards):
    """The raw data's content: merge (and all after it) reruns exactly when it changes."""
    with one_line_errors():
        return merge_identity(
            config["data"], Path(RESULTS) / "data" / "raw.json", RAW_HASH_CACHE
        )


def get_raw_dir(wildcards, output):
    """Where the raw copy is now (a location: derived param, never a rerun trigger); for an
    archive file, the folder it is extracted into."""
    return str(raw_folder(config["data"]))


def get_download_locations(wildcards, output):
    """Archive URL and folder of source: url, the archive file raw_dir may name and the
    Kaggle cache folder (locations: never rerun triggers)."""
    data = config["data"]
    archive = data["raw_dir"] if archive_stem(data["raw_dir"]) else None
    kaggle_cache = data["kaggle"]["cache_dir"] if data["source"] == "kaggle" else None
    return " ".join(
        [
            option("--url", data["url"]),
            option("--archive-dir", data["archive_dir"]),
            option("--raw-archive", archive),
            option("--kaggle-cache-dir", kaggle_cache),
        ]
    )


def get_kaggle_source(wildcards):
    """The Kaggle dataset and version to fetch (source: kaggle; what the data are: a rerun
    trigger)."""
    kaggle = config["data"]["kaggle"]
    if config["data"]["source"] != "kaggle":
        return ""
    return " ".join(
        [
            option("--kaggle-handle", kaggle["handle"]),
            option("--kaggle-version", kaggle["version"]),
        ]
    )


def get_split_dir(wildcards, output):
    return str(Path(output.audit).parent)


# ------------------------------------------------------------------------------ preprocessing


def get_augmentation_pattern():
    return AUGMENTATION_PATTERN


def _preprocessing_of(wildcards):
    """The preprocessing whose training store lives at <size>px/<augmentation>."""
    key = f"{wildcards.size}px-{wildcards.augmentation}"
    if key not in PREPROCESSINGS:
        raise ValueError(
            f"no experiment group preprocesses as {key}; the groups use:"
            f" {', '.join(sorted(PREPROCESSINGS))}"
        )
    return PREPROCESSINGS[key]


def get_balancing_flags(wildcards):
    """augment's settings: target, seed and transforms, or 'none' (the resized originals)."""
    return balancing_flags(_preprocessing_of(wildcards))


# ------------------------------------------------------------------------------ per experiment


def _experiment(wildcards):
    return EXPERIMENTS[wildcards.exp]


def get_train_manifest(wildcards):
    return f"{train_store_dir(config, _experiment(wildcards))}/train_balanced.parquet"


def get_train_pixels(wildcards):
    return f"{train_store_dir(config, _experiment(wildcards))}/train_pixels.npy"


def get_val_manifest(wildcards):
    return f"{eval_store_dir(config, _experiment(wildcards))}/val.parquet"


def get_val_pixels(wildcards):
    return f"{eval_store_dir(config, _experiment(wildcards))}/val_pixels.npy"


def get_test_manifest(wildcards):
    return f"{eval_store_dir(config, _experiment(wildcards))}/test.parquet"


def get_test_pixels(wildcards):
    return f"{eval_store_dir(config, _experiment(wildcards))}/test_pixels.npy"


def get_backbone(wildcards):
    return EXPERIMENTS[wildcards.exp].backbone


def get_strategy(wildcards):
    return EXPERIMENTS[wildcards.exp].strategy


def get_partial_stages(wildcards):
    return EXPERIMENTS[wildcards.exp].partial_stages


def get_seed(wildcards):
    return EXPERIMENTS[wildcards.exp].seed


def get_layer_decay(wildcards):
    """The group's layer-wise lr decay for full fine-tuning; None (off) for the others."""
    return EXPERIMENTS[wildcards.exp].layer_decay


def get_weights_record(wildcards):
    """The record of the pretrained weights (none when training from scratch)."""
    return weights_record(config, EXPERIMENTS[wildcards.exp].backbone)


def get_weights_file(wildcards, output):
    """The weight file in weights.dir (a location: never a rerun trigger)."""
    return str(weights_path(config["weights"]["dir"], wildcards.backbone))


def get_pretrained_flag(wildcards, input):
    """--pretrained-weights for train: the file in weights.dir that the record describes."""
    if not input.weights:
        return "--pretrained-weights none"
    path = weights_path(config["weights"]["dir"], EXPERIMENTS[wildcards.exp].backbone)
    return f"--pretrained-weights {shlex.quote(str(path))} --weights-record {input.weights[0]}"


def get_train_runtime_flags(wildcards, threads):
    """Speed settings of training (validation batch size, compile, loader workers)."""
    train = config["train"]
    compile_flag = "--compile" if train["compile"] else "--no-compile"
    # the job's CPUs: the main process plus threads - 1 data-loader workers
    workers = max(threads - 1, 0)
    return f"--eval-batch-size {train['eval_batch_size']} {compile_flag} --workers {workers}"


def get_train_provenance(wildcards, input):
    """Settings of every earlier step, stored in the checkpoint (provenance, not a trigger)."""
    return as_json(train_provenance(config, wildcards.exp))


def get_run_dir(wildcards, output):
    return str(Path(output.best).parent)


def get_resume_dir(wildcards, output):
    # resume state lives outside the declared outputs: Snakemake deletes those on retry
    return f"{RESULTS}/resume/{wildcards.exp}"


def get_flips_flag(wildcards):
    return "--flips" if config["train"]["flips"] else "--no-flips"


def get_experiment_json(wildcards):
    return as_json(experiment_record(config, wildcards.exp))


def get_image_size(wildcards):
    """Side of the images in the experiment's stores (its group's preprocessing)."""
    return EXPERIMENTS[wildcards.exp].preprocessing.image_size


def get_knn_experiment(wildcards):
    """The frozen experiment a k-NN probe reads its backbone, stores and seed from; only
    those the config probes (evaluate.knn on, strategy frozen)."""
    if wildcards.exp not in KNN_EXPERIMENTS:
        raise ValueError(
            f"no k-NN probe for {wildcards.exp}: not a frozen experiment, or evaluate.knn is off"
        )
    return as_json(experiment_record(config, wildcards.exp))


def get_evaluate_runtime_flags(wildcards, threads):
    """Speed settings of evaluation (inference batch size)."""
    return f"--batch-size {config['evaluate']['batch_size']}"


def get_evaluate_output_flags(wildcards, output):
    """Flags naming the optional outputs (TTA, Grad-CAM) this config switches on."""
    return output_flags(output)


def get_gradcam_flags(wildcards):
    return gradcam_options(config)


# ------------------------------------------------------------------------------ ensembles


def get_member_predictions(wildcards):
    return [
        f"{RESULTS}/eval/{m}/predictions.parquet"
        for m in ENSEMBLES[wildcards.ens]["members"]
    ]


def get_member_val_predictions(wildcards):
    members = ENSEMBLES[wildcards.ens]["members"]
    return [f"{RESULTS}/eval/{m}/val_predictions.parquet" for m in members]


def get_member_dirs(wildcards):
    return " ".join(f"{RESULTS}/eval/{m}" for m in ENSEMBLES[wildcards.ens]["members"])


def get_ensemble_json(wildcards):
    return as_json(ensemble_meta(config, wildcards.ens))


# ------------------------------------------------------------------------------ pooled folds


def get_pooled_predictions(wildcards):
    return POOLED[wildcards.pooled]["predictions"]


def get_pooled_metrics(wildcards):
    return POOLED[wildcards.pooled]["metrics"]


# ------------------------------------------------------------------------------ tables


def get_split_audits():
    """The leakage audit of every split in use: each table row states its protocol from it."""
    return [f"{RESULTS}/splits/{split}/audit.json" for split in used_splits(config)]


def get_tables_dir(wildcards, output):
    return str(Path(output.md).parent)


def get_figures_dir(wildcards, output):
    return str(Path(output.roc).parent)
