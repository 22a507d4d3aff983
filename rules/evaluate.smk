# Test-set evaluation per experiment, then comparison tables, figures and the HTML report.


rule evaluate:
    input:
        best=f"{R}/runs/{{exp}}/best.pt",
        history=f"{R}/runs/{{exp}}/history.parquet",
        test=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/test.parquet",
        test_pixels=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/test_pixels.npy",
        val=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/val.parquet",
        val_pixels=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/val_pixels.npy",
        code=pkg(
            "evaluate",
            "inference",
            "metrics",
            "referral",
            "models",
            "store",
            "provenance",
        ),
    output:
        predictions=f"{R}/eval/{{exp}}/predictions.parquet",
        metrics=f"{R}/eval/{{exp}}/metrics.json",
        history=f"{R}/eval/{{exp}}/history.parquet",
    log:
        f"{R}/logs/evaluate/{{exp}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{exp}}.tsv"
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
        batch_size=config["evaluate"]["batch_size"],
        experiment=lambda wc: as_json(experiment_meta(config, wc.exp)["experiment"]),
    shell:
        "python scripts/evaluate.py --checkpoint {input.best} --history {input.history} --test-manifest {input.test} --test-pixels {input.test_pixels} --val-manifest {input.val} --val-pixels {input.val_pixels} --threshold {params.threshold} --bootstrap {params.bootstrap} --referral-target {params.target} --referral-criterion {params.criterion} --batch-size {params.batch_size} --experiment-json '{params.experiment}' --predictions-out {output.predictions} --metrics-out {output.metrics} --history-out {output.history} 2> {log}"


rule compare:
    input:
        metrics=expand(f"{R}/eval/{{exp}}/metrics.json", exp=sorted(EXPERIMENTS)),
        predictions=expand(
            f"{R}/eval/{{exp}}/predictions.parquet", exp=sorted(EXPERIMENTS)
        ),
        histories=expand(f"{R}/eval/{{exp}}/history.parquet", exp=sorted(EXPERIMENTS)),
        code=pkg("compare", "figures", "metrics", "referral", "published"),
    output:
        md=report(
            f"{R}/tables/comparison.md",
            caption="../report/comparison.rst",
            category="Tables",
        ),
        csv=f"{R}/tables/comparison.csv",
        tex=f"{R}/tables/comparison.tex",
        rows=f"{R}/tables/rows.parquet",
        roc=report(
            f"{R}/figures/roc.png", caption="../report/roc.rst", category="Figures"
        ),
        confusion=report(
            f"{R}/figures/confusion.png",
            caption="../report/confusion.rst",
            category="Figures",
        ),
        curves=report(
            f"{R}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Figures",
        ),
        reliability=report(
            f"{R}/figures/reliability.png",
            caption="../report/reliability.rst",
            category="Figures",
        ),
        risk=report(
            f"{R}/figures/risk_coverage.png",
            caption="../report/risk_coverage.rst",
            category="Figures",
        ),
    log:
        f"{R}/logs/compare.log",
    conda:
        "../envs/train.yaml"
    params:
        tables=lambda wc, output: Path(output.md).parent,
        figures=lambda wc, output: Path(output.roc).parent,
    shell:
        "python scripts/compare.py --metrics {input.metrics} --tables-dir {params.tables} --figures-dir {params.figures} 2> {log}"


rule report:
    input:
        tables=rules.compare.output.md,
        rows=rules.compare.output.rows,
        figures=[
            rules.compare.output.roc,
            rules.compare.output.confusion,
            rules.compare.output.curves,
            rules.compare.output.reliability,
            rules.compare.output.risk,
        ],
        code=pkg("report"),
    output:
        html=f"{R}/report.html",
    log:
        f"{R}/logs/report.log",
    conda:
        "../envs/train.yaml"
    shell:
        "python scripts/report.py --tables {input.tables} --rows {input.rows} --figures {input.figures} --out {output.html} 2> {log}"
