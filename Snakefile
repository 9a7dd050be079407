# lossbench: a reproducible study of loss functions for image classification.
#
# The DAG, one stage per rules file, each rule calling `lossbench <stage> ...` (the same
# command dvc.yaml runs):
#
#   download -> preprocess -> train (one job per loss x seed) -> evaluate (per job)
#            -> compare -> figures -> report
#
# Run everything, one GPU job at a time:   snakemake --cores 1 --resources gpu=1
# The same through a profile:              snakemake --workflow-profile workflow/profiles/local
# On a SLURM cluster, a job per (loss, seed): snakemake --workflow-profile workflow/profiles/slurm
# Parameters: params.yaml (validated against workflow/schemas/params.schema.yaml).

from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/bench.smk"


# The front page of the HTML report (`snakemake --report report.html`, after a run).
report: "workflow/report/workflow.rst"


# Light rules run in the main Snakemake process (the login node under the SLURM profile):
# download needs the internet, which compute nodes often lack; the others take seconds.
localrules:
    all,
    download,
    compare,
    figures,
    report,


rule all:
    default_target: True
    input:
        "reports/report.md",
