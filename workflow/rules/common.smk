# Shared definitions: config validation, the (loss, seed) runs and each stage's parameters.
#
# Only light modules are imported here (no TensorFlow), so `snakemake -n` stays fast.

from snakemake.utils import validate

from lossbench.params import stage_fingerprint, validate_params
from lossbench.runs import run_names
from lossbench.sources import source_paths

# Validate before anything runs, twice over on purpose: Snakemake's own validator (which also
# fills in the schema's defaults) and the package's, which adds the cross-key checks and
# explains each error with the key's name.
validate(config, schema="../schemas/params.schema.yaml")
config = validate_params(config, source="params.yaml")

# The software environment of all rules, for `snakemake --sdm conda`: environment.yml's pins
# in a file of its own, because environment.yml's `-e .` would resolve against
# .snakemake/conda/ once Snakemake copies it there (lossbench.post-deploy.sh installs the
# package from the project root instead).
ENVIRONMENT = "../envs/lossbench.yaml"

LOSSES = config["train"]["losses"]
SEEDS = config["train"]["seeds"]
RUNS = run_names(config["train"])


wildcard_constraints:
    loss="|".join(LOSSES),
    seed=r"\d+",


def stage_values(stage):
    """The stage's parameter values, as text: Snakemake reruns a rule when they change."""
    return stage_fingerprint(config, stage)


def package_source(stage):
    """The code a stage runs: its module and every lossbench module it imports, read from
    the imports (lossbench.sources), as inputs; dvc.yaml lists the same (a test checks)."""
    return source_paths(stage)


# Snakemake's HTML report groups the figures by kind (rules/report.smk).
def figure_category(wildcards):
    """The report category of a figure, from its file name (see lossbench.figures)."""
    for kind in ("curves", "confusion"):
        if wildcards.figure.startswith(f"{kind}_"):
            return kind
    return "comparison"


