# Tuning: one job per loss, choosing its learning rate on a hold-out split of the training set
# (train reads the choice when train.learning_rate is `tuned`; the report shows the curve).
# Command, inputs and outputs: workflow/lossbench/pipeline/stages.py.


rule tune:
    input:
        **stage_inputs("tune"),
    output:
        **stage_outputs("tune"),
    log:
        "reports/logs/tune/{loss}.log",
    conda:
        ENVIRONMENT
    resources:
        gpu=1,
    params:
        values=stage_values("tune"),
    shell:
        stage_command("tune")
