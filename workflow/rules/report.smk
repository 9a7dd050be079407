# The written report, reports/report.md, also marked for Snakemake's HTML report.
# Command, inputs and outputs: workflow/lossbench/pipeline/stages.py.


rule report:
    input:
        **stage_inputs("report"),
    output:
        **stage_outputs(
            "report",
            report=dict(
                caption="../report/report.rst",
                category="report",
                labels={"figure": "written report"},
            ),
        ),
    log:
        "reports/logs/report.log",
    conda:
        ENVIRONMENT
    params:
        values=stage_values("report"),
    shell:
        stage_command("report")
