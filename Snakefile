# lossbench: a reproducible study of loss functions for image classification.
#
# The DAG, one stage per rules file (workflow/rules/<stage>.smk), each rule calling
# `lossbench <stage> ...` from the one stage table, workflow/lossbench/pipeline/stages.py, from
# which dvc.yaml is generated:
#
#   download -> preprocess -> tune (one job per loss) -> train (one job per loss x seed)
#            -> evaluate (per job)
#            -> compare -> figures -> report
#
# Run everything, one GPU job at a time:   snakemake --cores 1 --resources gpu=1
# The same through a profile:              snakemake --workflow-profile workflow/profiles/local
# On a SLURM cluster, a job per (loss, seed): snakemake --workflow-profile workflow/profiles/slurm
# Parameters: params.yaml only (validated against workflow/schemas/params.schema.yaml). To try
# other values, edit params.yaml or run `dvc exp run -S key=value`; --configfile and --config
# are refused.

import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from lossbench.pipeline.params import (
    DAG_DIGEST_VARIABLE,
    ParamsError,
    load_params,
    params_digest,
)
from lossbench.pipeline.params_gate import write_gate

min_version("9.0")

# Every job reads params.yaml itself (`lossbench <stage>` does, under DVC too), so the DAG must
# be built from that file and nothing else: values from --configfile or --config would decide
# which jobs run but not what they compute. Snakemake fills `config` from those options before
# it reads this file, so here a non-empty `config` means that one was given.
if config:
    raise WorkflowError(
        "lossbench reads its parameters from params.yaml only, but this run was given other "
        f"values (--configfile or --config: {', '.join(sorted(map(str, config)))}), which its "
        "jobs would not see. Edit params.yaml instead, or try values in a DVC experiment with "
        "`dvc exp run -S key=value`, and run Snakemake without --configfile and --config."
    )
# The package's loader, not `configfile:`, so that a syntax error is reported with its line
# and column, exactly as `lossbench` reports it.
try:
    config.update(load_params("params.yaml"))
except ParamsError as error:
    raise WorkflowError(str(error)) from None
# The file of dvc.yaml's first stage, `validate` (lossbench.pipeline.params_gate), on which
# every DVC stage depends: written here when missing, so that `dvc commit` after this run
# finds every output of dvc.yaml. No rule reads it: Snakemake checked params.yaml above.
write_gate()
# Jobs inherit this and refuse to run if params.yaml is edited while Snakemake runs. The main
# process built the DAG and sets it; a job's own Snakemake process (a SLURM job) keeps the
# value it inherited from there.
if workflow.is_main_process or DAG_DIGEST_VARIABLE not in os.environ:
    os.environ[DAG_DIGEST_VARIABLE] = params_digest(config)


# Snakemake and DVC must not run at once in one project: each deletes the outputs it reruns.
# Just before the first job (never on a dry run) this run registers itself in DVC's lock file,
# which stops any DVC command at once while it runs, or stops here, naming DVC, if DVC is at
# work (workflow/lossbench/pipeline/orchestration.py).
onstart:
    from lossbench.pipeline.orchestration import ConcurrentRunError, hold_project

    # The benchmark alone (`snakemake --cores 1 bench`) writes no output of the study and
    # times `dvc status` itself, which the hold would refuse, so it runs without one.
    if {job.rule.name for job in workflow.dag.needrun_jobs()} - {"bench"}:
        try:
            hold_project(".")
        except ConcurrentRunError as error:
            raise WorkflowError(str(error)) from None


onsuccess:
    from lossbench.pipeline.orchestration import release_project

    release_project()


onerror:
    from lossbench.pipeline.orchestration import release_project

    release_project()


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/figures.smk"
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
