# Evaluation: per-run results on the test set. The full evaluation goes to reports/evaluation/
# (read by compare, figures and report); a few flat numbers go to reports/metrics/, which
# `dvc metrics diff` shows in review.


rule evaluate:
    input:
        package_source("evaluate"),
        data="data/prepared",
        model="data/models/{loss}-seed{seed}.keras",
        log_dir="reports/training/{loss}-seed{seed}",
    output:
        evaluation="reports/evaluation/{loss}-seed{seed}.json",
        metrics="reports/metrics/{loss}-seed{seed}.json",
    params:
        values=stage_values("evaluate"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/evaluate/{loss}-seed{seed}.log",
    shell:
        "lossbench evaluate --loss {wildcards.loss} --seed {wildcards.seed} --data {input.data}"
        " --model {input.model} --log-dir {input.log_dir} --output {output.evaluation}"
        " --metrics {output.metrics} 2>&1 | tee {log}"
