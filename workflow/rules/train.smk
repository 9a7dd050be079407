# Training: one job per (loss, seed), each holding the one GPU (`--resources gpu=1`).
# Command, inputs and outputs: workflow/lossbench/pipeline/stages.py (checkpoints live outside the
# outputs there, so that a rerun of an interrupted job resumes).


rule train:
    input:
        **stage_inputs("train"),
    output:
        **stage_outputs("train"),
    log:
        f"reports/logs/train/{RUN}.log",
    conda:
        ENVIRONMENT
    resources:
        gpu=1,
    params:
        values=stage_values("train"),
    shell:
        stage_command("train")
