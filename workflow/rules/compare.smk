# Comparison across losses and seeds: mean and spread per loss, paired tests between losses.
# Command, inputs and outputs: workflow/lossbench/pipeline/stages.py; the rule is given every run's
# evaluation.


rule compare:
    input:
        **stage_inputs("compare"),
    output:
        **stage_outputs("compare"),
    log:
        "reports/logs/compare.log",
    conda:
        ENVIRONMENT
    params:
        values=stage_values("compare"),
    shell:
        stage_command("compare")
