# Training: one job per (loss, seed), each holding the one GPU (`--resources gpu=1`).
#
# Checkpoints live outside the rule's outputs on purpose: Snakemake deletes the outputs of an
# incomplete job before rerunning it, and the checkpoint is what lets the rerun resume.


rule train:
    input:
        package_source("train"),
        data="data/prepared",
    output:
        model="data/models/{loss}-seed{seed}.keras",
        log_dir=directory("reports/training/{loss}-seed{seed}"),
    params:
        values=stage_values("train"),
        checkpoint_dir="data/checkpoints/{loss}-seed{seed}",
    resources:
        gpu=1,
    conda:
        ENVIRONMENT
    log:
        "reports/logs/train/{loss}-seed{seed}.log",
    shell:
        "lossbench train --loss {wildcards.loss} --seed {wildcards.seed} --data {input.data}"
        " --model {output.model} --log-dir {output.log_dir}"
        " --checkpoint-dir {params.checkpoint_dir} 2>&1 | tee {log}"
