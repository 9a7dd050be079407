# Comparison across losses and seeds, the figures, and the report.


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
        package_source("figures", "losses"),
        summary="reports/summary.json",
        evaluations=expand("reports/evaluation/{run}.json", run=RUNS),
        log_dirs=expand("reports/training/{run}", run=RUNS),
    output:
        figures=directory("reports/figures"),
        epochs="reports/epochs.csv",
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
        "reports/report.md",
    params:
        values=stage_values("report"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/report.log",
    shell:
        "lossbench report --summary {input.summary} --figures {input.figures}"
        " --output {output} 2>&1 | tee {log}"
