# Comparison across losses and seeds, the figures, and the report.
#
# The figures, the per-epoch table and the written report are marked for Snakemake's HTML
# report (`snakemake --report report.html`), each with a category and a caption from
# workflow/report/.


rule compare:
    input:
        package_source("compare"),
        evaluations=expand("reports/evaluation/{run}.json", run=RUNS),
    output:
        summary="reports/summary.json",
        headline="reports/headline.json",
    params:
        values=stage_values("compare"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/compare.log",
    shell:
        "lossbench compare --evaluation-dir reports/evaluation --output {output.summary}"
        " --headline {output.headline} 2>&1 | tee {log}"


rule figures:
    input:
        package_source("figures"),
        summary="reports/summary.json",
        evaluations=expand("reports/evaluation/{run}.json", run=RUNS),
        log_dirs=expand("reports/training/{run}", run=RUNS),
    output:
        figures=report(
            directory("reports/figures"),
            patterns=["{figure}.png"],
            caption="../report/figures.rst",
            category=figure_category,
            labels={"figure": "{figure}"},
        ),
        epochs=report(
            "reports/epochs.csv",
            caption="../report/epochs.rst",
            category="curves",
            labels={"figure": "per-epoch table"},
        ),
    params:
        values=stage_values("figures"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/figures.log",
    shell:
        "lossbench figures --summary {input.summary} --evaluation-dir reports/evaluation"
        " --training-dir reports/training --output {output.figures} --epochs {output.epochs}"
        " 2>&1 | tee {log}"


rule report:
    input:
        package_source("report"),
        summary="reports/summary.json",
        figures="reports/figures",
    output:
        report(
            "reports/report.md",
            caption="../report/report.rst",
            category="report",
            labels={"figure": "written report"},
        ),
    params:
        values=stage_values("report"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/report.log",
    shell:
        "lossbench report --summary {input.summary} --figures {input.figures}"
        " --output {output} 2>&1 | tee {log}"
