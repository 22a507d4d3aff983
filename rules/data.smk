# Raw data -> merged index -> train/val/test splits with a leakage audit.


rule download:
    input:
        code=step_code("download", "data.synthetic"),
    output:
        raw=f"{R}/data/raw.json",
    log:
        f"{R}/logs/download.log",
    benchmark:
        f"{R}/benchmarks/download.tsv"
    conda:
        "../envs/data.yaml"
    threads: config["data"].get("synthetic", {}).get("workers", 1)
    params:
        source=config["data"]["source"],
        raw_dir=config["data"]["raw_dir"],
        url=option("--url", config["data"].get("url")),
        sha256=option("--sha256", config["data"].get("sha256")),
        archive_dir=config["data"].get("archive_dir", "data/archives"),
        synthetic=as_json(without_workers(config["data"].get("synthetic", {}))),
    shell:
        "python scripts/download.py --source {params.source} --raw-dir {params.raw_dir:q} {params.url} {params.sha256} --archive-dir {params.archive_dir:q} --synthetic-json '{params.synthetic}' --workers {threads} --out {output.raw} 2> {log}"


rule merge:
    input:
        raw=rules.download.output.raw,
        code=step_code("merge"),
    output:
        index=f"{R}/data/index.parquet",
        summary=f"{R}/data/summary.json",
    log:
        f"{R}/logs/merge.log",
    benchmark:
        f"{R}/benchmarks/merge.tsv"
    conda:
        "../envs/data.yaml"
    threads: config["merge"].get("workers", 1)
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        expected_size=config["data"].get("expected_image_size", 450),
    shell:
        "python scripts/merge.py --raw-json {input.raw} --expected-size {params.expected_size} --workers {threads} --index-out {output.index} --summary-out {output.summary} 2> {log}"


rule split:
    input:
        index=rules.merge.output.index,
        code=step_code("split"),
    output:
        train=f"{R}/splits/{{split}}/train.parquet",
        val=f"{R}/splits/{{split}}/val.parquet",
        test=f"{R}/splits/{{split}}/test.parquet",
        audit=f"{R}/splits/{{split}}/audit.json",
    log:
        f"{R}/logs/split/{{split}}.log",
    benchmark:
        f"{R}/benchmarks/split/{{split}}.tsv"
    wildcard_constraints:
        split=r"image|patient|official|cv\d+-f\d+",
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
        out_dir=lambda wc: f"{R}/splits/{wc.split}",
    shell:
        "python scripts/split.py --index {input.index} --mode {wildcards.split} --test-fraction {params.test_fraction} --val-fraction {params.val_fraction} --seed {params.seed} --near-duplicate-max-distance {params.near_duplicates} --out-dir {params.out_dir} 2> {log}"
