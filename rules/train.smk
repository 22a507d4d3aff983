# Pretrained weights (login node) and one training job per experiment (GPU on clusters).


rule fetch_weights:
    input:
        code=step_code("fetch_weights"),
    output:
        weights=f"{config['weights']['dir']}/{{backbone}}.safetensors",
    log:
        f"logs/fetch_weights/{{backbone}}.log",
    conda:
        "../envs/train.yaml"
    shell:
        "python scripts/fetch_weights.py --backbone {wildcards.backbone} --out {output.weights} 2> {log}"


rule train:
    input:
        train=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/train_balanced.parquet",
        train_pixels=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/train_pixels.npy",
        val=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/val.parquet",
        val_pixels=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/val_pixels.npy",
        weights=lambda wc: weights_input(config, EXPERIMENTS[wc.exp].backbone),
        code=step_code("train"),
    output:
        best=f"{R}/runs/{{exp}}/best.pt",
        last=f"{R}/runs/{{exp}}/last.pt",
        history=f"{R}/runs/{{exp}}/history.parquet",
    log:
        f"{R}/runs/{{exp}}/train.log",
    benchmark:
        f"{R}/benchmarks/train/{{exp}}.tsv"
    conda:
        "../envs/train.yaml"
    # DataLoader workers follow the job's CPUs (threads), so they are not a rerun-triggering param
    threads: 4
    resources:
        mem_mb=16000,
    params:
        backbone=lambda wc: EXPERIMENTS[wc.exp].backbone,
        strategy=lambda wc: EXPERIMENTS[wc.exp].strategy,
        stages=lambda wc: EXPERIMENTS[wc.exp].partial_stages,
        seed=lambda wc: EXPERIMENTS[wc.exp].seed,
        weights=lambda wc, input: input.weights[0] if input.weights else "none",
        epochs=config["train"]["epochs"],
        patience=config["train"]["patience"],
        lr=config["train"]["lr"],
        batch_size=config["train"]["batch_size"],
        eval_batch_size=config["train"]["eval_batch_size"],
        weight_decay=config["train"]["weight_decay"],
        flips="--flips" if config["train"]["flips"] else "--no-flips",
        compile="--compile" if config["train"]["compile"] else "--no-compile",
        amp=config["train"]["amp"],
        meta=lambda wc: as_json(experiment_meta(config, wc.exp)),
        # resume state lives outside the declared outputs: Snakemake deletes those on retry
        resume_dir=lambda wc: f"{R}/resume/{wc.exp}",
        out_dir=lambda wc: f"{R}/runs/{wc.exp}",
    shell:
        "python scripts/train.py --backbone {params.backbone} --strategy {params.strategy} --partial-stages {params.stages} --seed {params.seed} --pretrained-weights {params.weights} --epochs {params.epochs} --patience {params.patience} --lr {params.lr} --batch-size {params.batch_size} --eval-batch-size {params.eval_batch_size} --weight-decay {params.weight_decay} {params.flips} --workers auto {params.compile} --amp {params.amp} --train-manifest {input.train} --train-pixels {input.train_pixels} --val-manifest {input.val} --val-pixels {input.val_pixels} --extra-meta-json <(echo '{params.meta}') --out-dir {params.out_dir} --resume-dir {params.resume_dir} 2> {log}"
