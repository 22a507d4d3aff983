# Class-balanced offline augmentation of the training part, and resize-only stores for
# validation and test: every image materialised once as uint8 for training to read.


rule augment:
    input:
        train=f"{R}/splits/{{split}}/train.parquet",
        code=step_code("augment"),
    output:
        manifest=f"{R}/augment/{{split}}/train_balanced.parquet",
        pixels=f"{R}/augment/{{split}}/train_pixels.npy",
        stats=f"{R}/augment/{{split}}/train_stats.json",
    log:
        f"{R}/logs/augment/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/augment/{{split}}.tsv"
    conda:
        "../envs/data.yaml"
    threads: config["augment"].get("workers", 1)
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        image_size=config["augment"]["image_size"],
        target=config["augment"]["target_per_class"],
        seed=config["augment"]["seed"],
        transforms=as_json(config["augment"].get("transforms", {})),
    shell:
        "python scripts/augment.py --train-manifest {input.train} --image-size {params.image_size} --target-per-class {params.target} --seed {params.seed} --transforms-json '{params.transforms}' --workers {threads} --manifest-out {output.manifest} --pixels-out {output.pixels} --stats-out {output.stats} 2> {log}"


rule resize:
    input:
        manifest=f"{R}/splits/{{split}}/{{part}}.parquet",
        code=step_code("resize"),
    output:
        manifest=f"{R}/augment/{{split}}/{{part}}.parquet",
        pixels=f"{R}/augment/{{split}}/{{part}}_pixels.npy",
    log:
        f"{R}/logs/resize/{{split}}_{{part}}.log",
    benchmark:
        f"{R}/benchmarks/resize/{{split}}_{{part}}.tsv"
    wildcard_constraints:
        part="val|test",
    conda:
        "../envs/data.yaml"
    threads: config["augment"].get("workers", 1)
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        image_size=config["augment"]["image_size"],
    shell:
        "python scripts/resize.py --manifest {input.manifest} --image-size {params.image_size} --workers {threads} --manifest-out {output.manifest} --pixels-out {output.pixels} 2> {log}"
