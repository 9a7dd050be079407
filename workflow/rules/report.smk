# Comparison across losses and seeds, the figures, and the report. Commands, inputs and
# outputs: workflow/lossbench/stages.py; compare and figures are given every run's file.
#
# The figures, the per-epoch table and the written report are marked for Snakemake's HTML
# report (`snakemake --report report.html`), each with a category and a caption from
# workflow/report/.


rule compare:
    input:
        **stage_inputs("compare"),
    output:
        **stage_outputs("compare"),
    params:
        values=stage_values("compare"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/compare.log",
    shell:
        stage_command("compare")


rule figures:
    input:
        **stage_inputs("figures"),
    output:
        **stage_outputs(
            "figures",
            figures=dict(
                patterns=["{figure}.png"],
                caption="../report/figures.rst",
                category=figure_category,
                labels={"figure": "{figure}"},
            ),
            epochs=dict(
                caption="../report/epochs.rst",
                category="curves",
                labels={"figure": "per-epoch table"},
            ),
        ),
    params:
        values=stage_values("figures"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/figures.log",
    shell:
        stage_command("figures")


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
    params:
        values=stage_values("report"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/report.log",
    shell:
        stage_command("report")
