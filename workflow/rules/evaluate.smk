# Evaluation: per-run metrics on the test set (small JSON files, diffed by `dvc metrics diff`).


rule evaluate:
    input:
        package_source("evaluate", "losses"),
        data="data/prepared",
        model="data/models/{loss}-seed{seed}.keras",
        log_dir="reports/training/{loss}-seed{seed}",
    output:
        "reports/metrics/{loss}-seed{seed}.json",
    params:
        values=stage_values("evaluate"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/evaluate/{loss}-seed{seed}.log",
    shell:
        "lossbench evaluate --loss {wildcards.loss} --seed {wildcards.seed} --data {input.data}"
        " --model {input.model} --log-dir {input.log_dir} --output {output} 2>&1 | tee {log}"
