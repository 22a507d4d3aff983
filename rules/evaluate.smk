# Test-set evaluation per experiment (optionally with TTA and Grad-CAM grids), soft-voting
# ensembles from stored predictions, then comparison tables, figures and the HTML report.


rule evaluate:
    input:
        best=f"{R}/runs/{{exp}}/best.pt",
        history=f"{R}/runs/{{exp}}/history.parquet",
        test=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/test.parquet",
        test_pixels=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/test_pixels.npy",
        val=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/val.parquet",
        val_pixels=lambda wc: f"{R}/augment/{EXPERIMENTS[wc.exp].split}/val_pixels.npy",
        code=step_code("evaluate"),
    output:
        **evaluate_outputs(config),
        predictions=f"{R}/eval/{{exp}}/predictions.parquet",
        val_predictions=f"{R}/eval/{{exp}}/val_predictions.parquet",
        metrics=f"{R}/eval/{{exp}}/metrics.json",
        history=f"{R}/eval/{{exp}}/history.parquet",
    log:
        f"{R}/logs/evaluate/{{exp}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{exp}}.tsv"
    wildcard_constraints:
        exp=r"[^/]+\.s\d+",
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
        gradcam=gradcam_options(config),
        extra=lambda wc, output: output_flags(output),
    shell:
        "python scripts/evaluate.py --checkpoint {input.best} --history {input.history} --test-manifest {input.test} --test-pixels {input.test_pixels} --val-manifest {input.val} --val-pixels {input.val_pixels} --threshold {params.threshold} --bootstrap {params.bootstrap} --referral-target {params.target} --referral-criterion {params.criterion} --batch-size {params.batch_size} --experiment-json '{params.experiment}' --predictions-out {output.predictions} --val-predictions-out {output.val_predictions} --metrics-out {output.metrics} --history-out {output.history} {params.extra} {params.gradcam} 2> {log}"


rule ensemble:
    input:
        predictions=lambda wc: [
            f"{R}/eval/{m}/predictions.parquet" for m in ENSEMBLES[wc.ens]["members"]
        ],
        val_predictions=lambda wc: [
            f"{R}/eval/{m}/val_predictions.parquet"
            for m in ENSEMBLES[wc.ens]["members"]
        ],
        code=step_code("ensemble"),
    output:
        predictions=f"{R}/eval/{{ens}}/predictions.parquet",
        val_predictions=f"{R}/eval/{{ens}}/val_predictions.parquet",
        metrics=f"{R}/eval/{{ens}}/metrics.json",
    log:
        f"{R}/logs/ensemble/{{ens}}.log",
    wildcard_constraints:
        ens=r"[^/]+\.ensemble-[A-Za-z0-9_-]+",
    conda:
        "../envs/train.yaml"
    params:
        members=lambda wc: " ".join(
            f"{R}/eval/{m}" for m in ENSEMBLES[wc.ens]["members"]
        ),
        threshold=config["evaluate"]["threshold"],
        bootstrap=config["evaluate"]["bootstrap"],
        target=config["evaluate"]["referral_target"],
        criterion=config["evaluate"]["referral_criterion"],
        experiment=lambda wc: as_json(ensemble_meta(config, wc.ens)),
    shell:
        "python scripts/ensemble.py --members {params.members} --threshold {params.threshold} --bootstrap {params.bootstrap} --referral-target {params.target} --referral-criterion {params.criterion} --experiment-json '{params.experiment}' --predictions-out {output.predictions} --val-predictions-out {output.val_predictions} --metrics-out {output.metrics} 2> {log}"


rule compare:
    input:
        metrics=comparison_metrics(config),
        predictions=expand(
            f"{R}/eval/{{exp}}/predictions.parquet", exp=sorted(EXPERIMENTS)
        ),
        histories=expand(f"{R}/eval/{{exp}}/history.parquet", exp=sorted(EXPERIMENTS)),
        audits=expand(f"{R}/splits/{{split}}/audit.json", split=SPLIT_MODES),
        code=step_code("compare"),
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
        threshold=config["evaluate"]["threshold"],
        bootstrap=config["evaluate"]["bootstrap"],
    shell:
        "python scripts/compare.py --metrics {input.metrics} --audits {input.audits} --threshold {params.threshold} --bootstrap {params.bootstrap} --tables-dir {params.tables} --figures-dir {params.figures} 2> {log}"


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
        code=step_code("report"),
    output:
        html=f"{R}/report.html",
    log:
        f"{R}/logs/report.log",
    conda:
        "../envs/train.yaml"
    shell:
        "python scripts/report.py --tables {input.tables} --rows {input.rows} --figures {input.figures} --gradcam {input.gradcam} --out {output.html} 2> {log}"
