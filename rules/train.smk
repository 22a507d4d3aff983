# Pretrained weights (login node) and one training job per experiment (GPU on clusters).


rule fetch_weights:
    output:
        record=f"{RESULTS}/weights/{{backbone}}.json",
    log:
        f"{RESULTS}/logs/fetch_weights/{{backbone}}.log",
    conda:
        "../envs/train.yaml"
    params:
        weights=get_weights_file,
        code=get_code("fetch_weights"),
    shell:
        "python scripts/fetch_weights.py"
        " --backbone {wildcards.backbone}"
        " --out {params.weights:q}"
        " --record-out {output.record}"
        " 2> {log}"


rule train:
    input:
        train=get_train_manifest,
        train_pixels=get_train_pixels,
        val=get_val_manifest,
        val_pixels=get_val_pixels,
        weights=get_weights_record,
    output:
        best=f"{RESULTS}/runs/{{exp}}/best.pt",
        last=f"{RESULTS}/runs/{{exp}}/last.pt",
        history=f"{RESULTS}/runs/{{exp}}/history.parquet",
        provenance=f"{RESULTS}/runs/{{exp}}/provenance.json",
    log:
        f"{RESULTS}/runs/{{exp}}/train.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{exp}}.tsv"
    conda:
        "../envs/train.yaml"
    # data-loader workers follow the job's CPUs
    threads: 4
    resources:
        mem_mb=16000,
    params:
        backbone=get_backbone,
        strategy=get_strategy,
        stages=get_partial_stages,
        seed=get_seed,
        epochs=config["train"]["epochs"],
        patience=config["train"]["patience"],
        lr=config["train"]["lr"],
        batch_size=config["train"]["batch_size"],
        weight_decay=config["train"]["weight_decay"],
        layer_decay=get_layer_decay,
        flips=get_flips_flag,
        amp=config["train"]["amp"],
        pretrained=get_pretrained_flag,
        runtime=get_train_runtime_flags,
        provenance=get_train_provenance,
        out_dir=get_run_dir,
        resume_dir=get_resume_dir,
        code=get_code("train"),
    shell:
        "python scripts/train.py"
        " --backbone {params.backbone}"
        " --strategy {params.strategy}"
        " --partial-stages {params.stages}"
        " --seed {params.seed}"
        " --epochs {params.epochs}"
        " --patience {params.patience}"
        " --lr {params.lr}"
        " --batch-size {params.batch_size}"
        " --weight-decay {params.weight_decay}"
        " --layer-decay {params.layer_decay}"
        " {params.flips}"
        " --amp {params.amp}"
        " {params.pretrained}"
        " {params.runtime}"
        " --train-manifest {input.train}"
        " --train-pixels {input.train_pixels}"
        " --val-manifest {input.val}"
        " --val-pixels {input.val_pixels}"
        " --extra-meta-json <(echo '{params.provenance}')"
        " --out-dir {params.out_dir}"
        " --resume-dir {params.resume_dir}"
        " 2> {log}"
