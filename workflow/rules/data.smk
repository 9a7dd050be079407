# Data: download the archive (checksummed), then decode it into uint8 arrays.
# Commands, inputs and outputs: workflow/lossbench/stages.py.


rule download:
    input:
        **stage_inputs("download"),
    output:
        **stage_outputs("download"),
    params:
        values=stage_values("download"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/download.log",
    shell:
        stage_command("download")


rule preprocess:
    input:
        **stage_inputs("preprocess"),
    output:
        **stage_outputs("preprocess"),
    params:
        values=stage_values("preprocess"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/preprocess.log",
    shell:
        stage_command("preprocess")
