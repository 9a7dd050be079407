# Decode the verified archive into uint8 arrays (and count the images per class).
# Command, inputs and outputs: workflow/lossbench/pipeline/stages.py.


rule preprocess:
    input:
        **stage_inputs("preprocess"),
    output:
        **stage_outputs("preprocess"),
    log:
        "reports/logs/preprocess.log",
    conda:
        ENVIRONMENT
    params:
        values=stage_values("preprocess"),
    shell:
        stage_command("preprocess")
