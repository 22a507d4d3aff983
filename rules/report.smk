# Comparison tables and figures from stored results, then the self-contained HTML report.


rule compare:
    input:
        metrics=comparison_metrics(config),
        predictions=expand(
            f"{RESULTS}/eval/{{exp}}/predictions.parquet", exp=sorted(EXPERIMENTS)
        ),
        histories=expand(
            f"{RESULTS}/eval/{{exp}}/history.parquet", exp=sorted(EXPERIMENTS)
        ),
        audits=get_split_audits(),
        weights=get_weights_records(),
    output:
        md=report(
            f"{RESULTS}/tables/comparison.md",
            caption="../report/comparison.rst",
            category="Tables",
        ),
        csv=f"{RESULTS}/tables/comparison.csv",
        tex=f"{RESULTS}/tables/comparison.tex",
        rows=f"{RESULTS}/tables/rows.parquet",
        roc=report(
            f"{RESULTS}/figures/roc.png",
            caption="../report/roc.rst",
            category="Figures",
        ),
        confusion=report(
            f"{RESULTS}/figures/confusion.png",
            caption="../report/confusion.rst",
            category="Figures",
        ),
        curves=report(
            f"{RESULTS}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Figures",
        ),
        reliability=report(
            f"{RESULTS}/figures/reliability.png",
            caption="../report/reliability.rst",
            category="Figures",
        ),
        risk=report(
            f"{RESULTS}/figures/risk_coverage.png",
            caption="../report/risk_coverage.rst",
            category="Figures",
        ),
    log:
        f"{RESULTS}/logs/compare.log",
    conda:
        "../envs/train.yaml"
    params:
        tables=get_tables_dir,
        figures=get_figures_dir,
        code=get_code("compare"),
    shell:
        "python scripts/compare.py"
        " --metrics {input.metrics}"
        " --audits {input.audits}"
        " --weights-records {input.weights}"
        " --tables-dir {params.tables}"
        " --figures-dir {params.figures}"
        " 2> {log}"


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
        gradcam=gradcam_grids(config),
    output:
        html=f"{RESULTS}/report.html",
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        "../envs/train.yaml"
    params:
        code=get_code("report"),
    shell:
        "python scripts/report.py"
        " --tables {input.tables}"
        " --rows {input.rows}"
        " --figures {input.figures}"
        " --gradcam {input.gradcam}"
        " --out {output.html}"
        " 2> {log}"
