# Evaluation: per-run results on the test set. The full evaluation goes to reports/evaluation/
# (read by compare, figures and report); a few flat numbers go to reports/metrics/, which
# `dvc metrics diff --targets reports/metrics` shows in review. Command, inputs and outputs:
# workflow/lossbench/pipeline/stages.py.


rule evaluate:
    input:
        **stage_inputs("evaluate"),
    output:
        **stage_outputs("evaluate"),
    log:
        f"reports/logs/evaluate/{RUN}.log",
    conda:
        ENVIRONMENT
    params:
        values=stage_values("evaluate"),
    shell:
        stage_command("evaluate")
