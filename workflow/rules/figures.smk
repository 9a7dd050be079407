# The comparison figures and the per-epoch table, marked for Snakemake's HTML report
# (`snakemake --report report.html`) with a category and a caption from workflow/report/.
# Command, inputs and outputs: workflow/lossbench/pipeline/stages.py; the rule is given every run's
# evaluation and training log.


rule figures:
    input:
        **stage_inputs("figures"),
    output:
        **stage_outputs(
            "figures",
            figures=dict(
                # The comparison figures, then those of each loss (lossbench.figures); the
                # name without its folder picks the caption and the category.
                patterns=["{figure,[^/]+}.png", "per_loss/{figure,[^/]+}.png"],
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
    log:
        "reports/logs/figures.log",
    conda:
        ENVIRONMENT
    params:
        values=stage_values("figures"),
    shell:
        stage_command("figures")
