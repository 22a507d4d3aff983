# Class-balanced offline augmentation of the training part, and resize-only stores for
# validation and test: every image materialised once as uint8 for training to read.


rule augment:
    input:
        train=f"{RESULTS}/splits/{{split}}/train.parquet",
    output:
        manifest=f"{RESULTS}/augment/{{split}}/train_balanced.parquet",
        pixels=f"{RESULTS}/augment/{{split}}/train_pixels.npy",
        stats=f"{RESULTS}/augment/{{split}}/train_stats.json",
    log:
        f"{RESULTS}/logs/augment/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/augment/{{split}}.tsv"
    conda:
        "../envs/data.yaml"
    # processes generating samples
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        image_size=config["augment"]["image_size"],
        target=config["augment"]["target_per_class"],
        seed=config["augment"]["seed"],
        transforms=as_json(config["augment"]["transforms"]),
        raw_dir=get_raw_dir,
        code=get_code("augment"),
    shell:
        "python scripts/augment.py"
        " --train-manifest {input.train}"
        " --raw-dir {params.raw_dir:q}"
        " --image-size {params.image_size}"
        " --target-per-class {params.target}"
        " --seed {params.seed}"
        " --transforms-json '{params.transforms}'"
        " --workers {threads}"
        " --manifest-out {output.manifest}"
        " --pixels-out {output.pixels}"
        " --stats-out {output.stats}"
        " 2> {log}"


rule resize:
    input:
        manifest=f"{RESULTS}/splits/{{split}}/{{part}}.parquet",
    output:
        manifest=f"{RESULTS}/augment/{{split}}/{{part}}.parquet",
        pixels=f"{RESULTS}/augment/{{split}}/{{part}}_pixels.npy",
    log:
        f"{RESULTS}/logs/resize/{{split}}_{{part}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/resize/{{split}}_{{part}}.tsv"
    wildcard_constraints:
        part="val|test",
    conda:
        "../envs/data.yaml"
    # processes decoding images
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        image_size=config["augment"]["image_size"],
        raw_dir=get_raw_dir,
        code=get_code("resize"),
    shell:
        "python scripts/resize.py"
        " --manifest {input.manifest}"
        " --raw-dir {params.raw_dir:q}"
        " --image-size {params.image_size}"
        " --workers {threads}"
        " --manifest-out {output.manifest}"
        " --pixels-out {output.pixels}"
        " 2> {log}"
