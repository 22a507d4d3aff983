# Test-set evaluation per experiment (optionally with TTA and Grad-CAM grids), the k-NN probe of
# each frozen experiment's pretrained backbone, and soft-voting ensembles from stored predictions.


rule evaluate:
    input:
        best=f"{RESULTS}/runs/{{exp}}/best.pt",
        history=f"{RESULTS}/runs/{{exp}}/history.parquet",
        run_record=f"{RESULTS}/runs/{{exp}}/provenance.json",
        test=get_test_manifest,
        test_pixels=get_test_pixels,
        val=get_val_manifest,
        val_pixels=get_val_pixels,
    output:
        **evaluate_outputs(config),
        predictions=f"{RESULTS}/eval/{{exp}}/predictions.parquet",
        val_predictions=f"{RESULTS}/eval/{{exp}}/val_predictions.parquet",
        metrics=f"{RESULTS}/eval/{{exp}}/metrics.json",
        history=f"{RESULTS}/eval/{{exp}}/history.parquet",
    log:
        f"{RESULTS}/logs/evaluate/{{exp}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{exp}}.tsv"
    wildcard_constraints:
        exp=r"[^/]+\.s\d+",
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
    params:
        threshold=config["evaluate"]["threshold"],
        bootstrap=config["evaluate"]["bootstrap"],
        target=config["evaluate"]["referral_target"],
        criterion=config["evaluate"]["referral_criterion"],
        experiment=get_experiment_json,
        gradcam=get_gradcam_flags,
        optional_outputs=get_evaluate_output_flags,
        runtime=get_evaluate_runtime_flags,
        code=get_code("evaluate"),
    shell:
        "python scripts/evaluate.py"
        " --checkpoint {input.best}"
        " --history {input.history}"
        " --run-record {input.run_record}"
        " --test-manifest {input.test}"
        " --test-pixels {input.test_pixels}"
        " --val-manifest {input.val}"
        " --val-pixels {input.val_pixels}"
        " --threshold {params.threshold}"
        " --bootstrap {params.bootstrap}"
        " --referral-target {params.target}"
        " --referral-criterion {params.criterion}"
        " {params.runtime}"
        " --experiment-json '{params.experiment}'"
        " --predictions-out {output.predictions}"
        " --val-predictions-out {output.val_predictions}"
        " --metrics-out {output.metrics}"
        " --history-out {output.history}"
        " {params.optional_outputs}"
        " {params.gradcam}"
        " 2> {log}"


rule knn_probe:
    input:
        weights=get_weights_record,
        train=get_train_manifest,
        train_pixels=get_train_pixels,
        test=get_test_manifest,
        test_pixels=get_test_pixels,
        val=get_val_manifest,
        val_pixels=get_val_pixels,
    output:
        predictions=f"{RESULTS}/eval/{{exp}}.knn/predictions.parquet",
        val_predictions=f"{RESULTS}/eval/{{exp}}.knn/val_predictions.parquet",
        metrics=f"{RESULTS}/eval/{{exp}}.knn/metrics.json",
    log:
        f"{RESULTS}/logs/knn_probe/{{exp}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/knn_probe/{{exp}}.tsv"
    wildcard_constraints:
        exp=r"[^/]+\.s\d+",
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
    params:
        threshold=config["evaluate"]["threshold"],
        bootstrap=config["evaluate"]["bootstrap"],
        target=config["evaluate"]["referral_target"],
        criterion=config["evaluate"]["referral_criterion"],
        experiment=get_knn_experiment,
        image_size=get_image_size,
        pretrained=get_pretrained_flag,
        runtime=get_evaluate_runtime_flags,
        code=get_code("knn_probe"),
    shell:
        "python scripts/knn_probe.py"
        " --experiment-json '{params.experiment}'"
        " --image-size {params.image_size}"
        " {params.pretrained}"
        " --train-manifest {input.train}"
        " --train-pixels {input.train_pixels}"
        " --val-manifest {input.val}"
        " --val-pixels {input.val_pixels}"
        " --test-manifest {input.test}"
        " --test-pixels {input.test_pixels}"
        " --threshold {params.threshold}"
        " --bootstrap {params.bootstrap}"
        " --referral-target {params.target}"
        " --referral-criterion {params.criterion}"
        " {params.runtime}"
        " --predictions-out {output.predictions}"
        " --val-predictions-out {output.val_predictions}"
        " --metrics-out {output.metrics}"
        " 2> {log}"


rule ensemble:
    input:
        predictions=get_member_predictions,
        val_predictions=get_member_val_predictions,
    output:
        predictions=f"{RESULTS}/eval/{{ens}}/predictions.parquet",
        val_predictions=f"{RESULTS}/eval/{{ens}}/val_predictions.parquet",
        metrics=f"{RESULTS}/eval/{{ens}}/metrics.json",
    log:
        f"{RESULTS}/logs/ensemble/{{ens}}.log",
    wildcard_constraints:
        ens=r"[^/]+\.ensemble-[A-Za-z0-9_-]+",
    conda:
        "../envs/train.yaml"
    params:
        members=get_member_dirs,
        threshold=config["evaluate"]["threshold"],
        bootstrap=config["evaluate"]["bootstrap"],
        target=config["evaluate"]["referral_target"],
        criterion=config["evaluate"]["referral_criterion"],
        experiment=get_ensemble_json,
        code=get_code("ensemble"),
    shell:
        "python scripts/ensemble.py"
        " --members {params.members}"
        " --threshold {params.threshold}"
        " --bootstrap {params.bootstrap}"
        " --referral-target {params.target}"
        " --referral-criterion {params.criterion}"
        " --experiment-json '{params.experiment}'"
        " --predictions-out {output.predictions}"
        " --val-predictions-out {output.val_predictions}"
        " --metrics-out {output.metrics}"
        " 2> {log}"


rule pool_folds:
    input:
        predictions=get_pooled_predictions,
        metrics=get_pooled_metrics,
    output:
        predictions=f"{RESULTS}/eval/{{pooled}}/predictions.parquet",
        metrics=f"{RESULTS}/eval/{{pooled}}/metrics.json",
    log:
        f"{RESULTS}/logs/pool_folds/{{pooled}}.log",
    wildcard_constraints:
        pooled=r"[^/]+\.pooled",
    conda:
        "../envs/train.yaml"
    params:
        threshold=config["evaluate"]["threshold"],
        bootstrap=config["evaluate"]["bootstrap"],
        code=get_code("pool_folds"),
    shell:
        "python scripts/pool_folds.py"
        " --member-predictions {input.predictions}"
        " --member-metrics {input.metrics}"
        " --threshold {params.threshold}"
        " --bootstrap {params.bootstrap}"
        " --predictions-out {output.predictions}"
        " --metrics-out {output.metrics}"
        " 2> {log}"
