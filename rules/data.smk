# Raw data -> merged index -> train/val/test splits with a leakage audit.


rule download:
    output:
        raw=f"{RESULTS}/data/raw.json",
    log:
        f"{RESULTS}/logs/download.log",
    benchmark:
        f"{RESULTS}/benchmarks/download.tsv"
    conda:
        "../envs/data.yaml"
    # processes rendering the synthetic data set (source: synthetic)
    threads: 2
    params:
        identity=get_download_identity,
        source=config["data"]["source"],
        sha256=option("--sha256", config["data"]["sha256"]),
        synthetic=as_json(config["data"]["synthetic"]),
        raw_dir=get_raw_dir,
        locations=get_download_locations,
        kaggle=get_kaggle_source,
        code=get_code("download"),
    shell:
        "python scripts/download.py"
        " --source {params.source}"
        " --raw-dir {params.raw_dir:q}"
        " {params.locations}"
        " {params.kaggle}"
        " {params.sha256}"
        " --synthetic-json '{params.synthetic}'"
        " --workers {threads}"
        " --out {output.raw}"
        " 2> {log}"


rule merge:
    input:
        raw=rules.download.output.raw,
    output:
        index=f"{RESULTS}/data/index.parquet",
        summary=f"{RESULTS}/data/summary.json",
    log:
        f"{RESULTS}/logs/merge.log",
    benchmark:
        f"{RESULTS}/benchmarks/merge.tsv"
    conda:
        "../envs/data.yaml"
    # processes decoding and hashing images
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        identity=get_merge_identity,
        expected_size=config["data"]["expected_image_size"],
        raw_dir=get_raw_dir,
        code=get_code("merge"),
    shell:
        "python scripts/merge.py"
        " --raw-json {input.raw}"
        " --raw-dir {params.raw_dir:q}"
        " --expected-size {params.expected_size}"
        " --workers {threads}"
        " --index-out {output.index}"
        " --summary-out {output.summary}"
        " 2> {log}"


rule split:
    input:
        index=rules.merge.output.index,
    output:
        train=f"{RESULTS}/splits/{{split}}/train.parquet",
        val=f"{RESULTS}/splits/{{split}}/val.parquet",
        test=f"{RESULTS}/splits/{{split}}/test.parquet",
        audit=f"{RESULTS}/splits/{{split}}/audit.json",
    log:
        f"{RESULTS}/logs/split/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/split/{{split}}.tsv"
    wildcard_constraints:
        split=split_id_pattern(),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        test_fraction=config["split"]["test_fraction"],
        val_fraction=config["split"]["val_fraction"],
        seed=config["split"]["seed"],
        near_duplicates=config["split"]["near_duplicate_max_distance"],
        out_dir=get_split_dir,
        code=get_code("split"),
    shell:
        "python scripts/split.py"
        " --index {input.index}"
        " --mode {wildcards.split}"
        " --test-fraction {params.test_fraction}"
        " --val-fraction {params.val_fraction}"
        " --seed {params.seed}"
        " --near-duplicate-max-distance {params.near_duplicates}"
        " --out-dir {params.out_dir}"
        " 2> {log}"
