# Offline augmentation of the training part (class-balanced, or none: the resized originals),
# and resize-only stores for validation and test: every image materialised once as uint8 for
# training to read. Stores are keyed by what determines them: the training store by the split
# and the group's preprocessing (<size>px/<augmentation>), validation and test by the size.


rule augment:
    input:
        train=f"{RESULTS}/splits/{{split}}/train.parquet",
    output:
        manifest=f"{RESULTS}/augment/{{split}}/{{size}}px/{{augmentation}}/train_balanced.parquet",
        pixels=f"{RESULTS}/augment/{{split}}/{{size}}px/{{augmentation}}/train_pixels.npy",
        stats=f"{RESULTS}/augment/{{split}}/{{size}}px/{{augmentation}}/train_stats.json",
    log:
        f"{RESULTS}/logs/augment/{{split}}/{{size}}px/{{augmentation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/augment/{{split}}/{{size}}px/{{augmentation}}.tsv"
    wildcard_constraints:
        split=split_id_pattern(),
        size=r"\d+",
        augmentation=get_augmentation_pattern(),
    conda:
        "../envs/data.yaml"
    # processes generating samples
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        balancing=get_balancing_flags,
        raw_dir=get_raw_dir,
        code=get_code("augment"),
    # flags: leukopipe/workflow/step_commands.py (the benchmark runs the same command)
    shell:
        get_shell("augment")


rule resize:
    input:
        manifest=f"{RESULTS}/splits/{{split}}/{{part}}.parquet",
    output:
        manifest=f"{RESULTS}/augment/{{split}}/{{size}}px/{{part}}.parquet",
        pixels=f"{RESULTS}/augment/{{split}}/{{size}}px/{{part}}_pixels.npy",
    log:
        f"{RESULTS}/logs/resize/{{split}}/{{size}}px/{{part}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/resize/{{split}}/{{size}}px/{{part}}.tsv"
    wildcard_constraints:
        split=split_id_pattern(),
        size=r"\d+",
        part="val|test",
    conda:
        "../envs/data.yaml"
    # processes decoding images
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        raw_dir=get_raw_dir,
        code=get_code("resize"),
    # flags: leukopipe/workflow/step_commands.py (the benchmark runs the same command)
    shell:
        get_shell("resize")
