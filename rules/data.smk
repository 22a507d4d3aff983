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
        expected_size=get_setting("merge", "expected_size"),
        raw_dir=get_raw_dir,
        code=get_code("merge"),
    # flags: leukopipe/workflow/step_commands.py (the benchmark runs the same command)
    shell:
        get_shell("merge")


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
        test_fraction=get_setting("split", "test_fraction"),
        val_fraction=get_setting("split", "val_fraction"),
        seed=get_setting("split", "seed"),
        near_duplicates=get_setting("split", "near_duplicates"),
        out_dir=get_split_dir,
        code=get_code("split"),
    # flags: leukopipe/workflow/step_commands.py (the benchmark runs the same command)
    shell:
        get_shell("split")
