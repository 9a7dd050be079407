# Download the data archive (or copy a local one) and verify its checksum.
# Command, input and output: workflow/lossbench/pipeline/stages.py.


rule download:
    input:
        **stage_inputs("download"),
    output:
        **stage_outputs("download"),
    log:
        "reports/logs/download.log",
    conda:
        ENVIRONMENT
    params:
        values=stage_values("download"),
    shell:
        stage_command("download")
