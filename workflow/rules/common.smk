# Shared definitions: the (loss, seed) runs, and the stage table's view for the rules.
#
# Each rule takes its command, inputs and outputs from the one stage table,
# workflow/lossbench/pipeline/stages.py (dvc.yaml is generated from the same table), and adds
# only what is Snakemake's own: its log, resources, conda environment and report entries. Only
# light modules are imported here (no TensorFlow), so `snakemake -n` stays fast.

from lossbench.pipeline.made import job_files, params_stamp
from lossbench.pipeline.params import stage_fingerprint
from lossbench.pipeline.runs import RUN_PATTERN, run_names
from lossbench.pipeline.stages import (
    snakemake_inputs,
    snakemake_outputs,
    snakemake_shell,
)

# The software environment of all rules, for `snakemake --sdm conda`: pyproject.toml's
# dependencies only (what the rules run; no test tools), in a file without environment.yml's
# `-e .`, which would resolve against .snakemake/conda/ once Snakemake copies it there
# (lossbench.post-deploy.sh installs the package from the project root instead).
ENVIRONMENT = "../envs/lossbench.yaml"

LOSSES = config["train"]["losses"]
RUNS = run_names(config["train"])
# A run's name in a path, in Snakemake's wildcards: "{loss}-seed{seed}".
RUN = RUN_PATTERN


wildcard_constraints:
    loss="|".join(LOSSES),
    seed=r"\d+",


def stage_inputs(stage):
    """The stage's inputs from the table: `code` (its module and every lossbench module it
    imports, so that a code change reruns it), then its files, every run's for an aggregate,
    and `made_with`, the job's stamp (lossbench.pipeline.made): dated now when the job's
    output was made, by DVC or anyone, with other values than params.yaml's, or when an input
    it was made from is missing, so that Snakemake makes it again as DVC would.
    """
    return {**snakemake_inputs(stage, RUNS, LOSSES), "made_with": made_with(stage)}


def made_with(stage):
    def stamp(wildcards):
        outputs, inputs = job_files(stage, RUNS, LOSSES, dict(wildcards))
        return params_stamp(stage, config, outputs, inputs)

    return stamp


def stage_outputs(stage, **reports):
    """The stage's outputs from the table; those named in `reports` go into Snakemake's HTML
    report (`snakemake --report`) with the given report() options."""
    outputs = {}
    for name, output in snakemake_outputs(stage).items():
        path = directory(output.path) if output.directory else output.path
        outputs[name] = report(path, **reports[name]) if name in reports else path
    return outputs


# The stage's `lossbench <stage> ...` command, its output copied to the rule's log by `tee`.
# `tee` ignores Ctrl-C and SIGTERM sent to the whole process group (a terminal's Ctrl-C,
# `kill -TERM -- -PGID`): else it would end first, and the stage's last line ("lossbench train:
# terminated (SIGTERM) ...") would find no reader. It ends when the stage's output does.
stage_command = snakemake_shell


def stage_values(stage):
    """The stage's parameter values, as text: Snakemake reruns a rule when they change."""
    return stage_fingerprint(config, stage)


# Snakemake's HTML report groups the figures by kind (rules/figures.smk).
def figure_category(wildcards):
    """The report category of a figure, from its file name (see lossbench.figures)."""
    for kind in ("curves", "confusion"):
        if wildcards.figure.startswith(f"{kind}_"):
            return kind
    if wildcards.figure.startswith("reliability_"):
        return "calibration"
    return "comparison"
