# Comparison across losses and seeds, the figures, and the report.


rule compare:
    input:
        package_source("compare"),
        metrics=expand("reports/metrics/{run}.json", run=RUNS),
    output:
        "reports/summary.json",
    params:
        values=stage_values("compare"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/compare.log",
    shell:
        "lossbench compare --metrics-dir reports/metrics --output {output} 2>&1 | tee {log}"


rule figures:
    input:
        package_source("figures", "losses"),
        summary="reports/summary.json",
        metrics=expand("reports/metrics/{run}.json", run=RUNS),
        log_dirs=expand("reports/training/{run}", run=RUNS),
    output:
        directory("reports/figures"),
    params:
        values=stage_values("figures"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/figures.log",
    shell:
        "lossbench figures --summary {input.summary} --metrics-dir reports/metrics"
        " --training-dir reports/training --output {output} 2>&1 | tee {log}"


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
