"""The DAG, described once: each stage's command, inputs, outputs and the params it reads.

In:  nothing but this table (for the code that decides a stage's results, the files it runs,
     `lossbench.pipeline.sources`; for the keys that make a training's settings,
     `lossbench.pipeline.params.TRAIN_KEYS`).
Out: the two front ends' views of it:
     - `snakemake_inputs`, `snakemake_outputs` and `snakemake_shell`, which the rules in
       workflow/rules/*.smk call, so that a rule adds only what is Snakemake's own (its log,
       resources, conda environment and report captions);
     - `STAGE_PARAMS`, the params.yaml keys each stage reads, which jobs under both tools
       record beside their outputs and check;
     - `lossbench.pipeline.dvc_yaml.render_dvc_yaml`, the text of dvc.yaml and
       benchmarks/dvc.yaml, which `lossbench dvc-yaml` writes.

Why dvc.yaml is generated and the rules are not: a rule is Python and can read this table as
it is parsed, but dvc.yaml is plain YAML that DVC reads on its own. Generating it from here
leaves nothing to keep in step by hand; the Snakemake rules stay readable files that a
newcomer opens by the stage's name.

Paths are written once, as patterns: ``{run}`` stands for one training run (see
`lossbench.pipeline.runs`), and a command refers to its files as ``{input.NAME}`` and
``{output.NAME}`` and to the run as ``{loss}`` and ``{seed}``. Snakemake turns ``{run}`` into
the wildcards of `lossbench.pipeline.runs.RUN_PATTERN`, DVC into its ``matrix`` items. An aggregate
stage (compare, figures) reads one input per run: Snakemake lists every run's file in the
command; DVC cannot put a list from params.yaml into a command, so it passes the directory,
and the `lossbench` command reads the runs of params.yaml from it.

This module is light (no TensorFlow), because the Snakefile imports it while parsing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from lossbench.pipeline.params import TRAIN_KEYS
from lossbench.pipeline.runs import RUN_PATTERN
from lossbench.pipeline.sources import code_dependencies, code_files

RUN = "{run}"
LOSS = "{loss}"


@dataclass(frozen=True)
class Output:
    """One output of a stage.

    `directory`: a directory, not a file. `cache`: False for small files that reviewers
    read in git (DVC then keeps them out of its cache, so `dvc metrics diff` works across
    commits without a cache). `metric`: one of the small numbers-only files that
    `dvc metrics diff` shows.
    """

    path: str
    directory: bool = False
    cache: bool = True
    metric: bool = False


@dataclass(frozen=True)
class Stage:
    """One stage of the DAG: a `lossbench <name>` command with its files and params.

    `params`: exactly the params.yaml keys the stage reads, written into dvc.yaml's
    ``params:`` and passed through the Snakemake rule's ``params:``, so that editing a key
    reruns the same stages under both tools (a stage that reads none: `lossbench bench`).
    `per_run`: one job per (loss, seed) of params.yaml; `per_loss`: one job per loss.
    `each_run` / `each_loss`: the names of inputs that are one file (or directory) per run /
    per loss, read together by an aggregate stage.
    `dvc_file`: the dvc.yaml that holds the stage (the benchmark has its own, so that
    `dvc repro` does not run it).
    """

    name: str
    command: str
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Output] = field(default_factory=dict)
    params: tuple[str, ...] = ()
    per_run: bool = False
    per_loss: bool = False
    each_run: tuple[str, ...] = ()
    each_loss: tuple[str, ...] = ()
    dvc_file: str = "dvc.yaml"

    @property
    def code(self) -> list[str]:
        """The code that decides the stage's results, as DVC depends on it: the files Python
        runs for it (`lossbench.pipeline.sources.code_dependencies`)."""
        return code_dependencies(self.name)


STAGES: tuple[Stage, ...] = (
    Stage(
        "download",
        "lossbench download --output {output.archive}",
        outputs={"archive": Output("data/raw/archive")},
        params=("download.url", "download.md5", "download.sha256", "download.source",
                "download.max_archive_bytes"),
    ),
    Stage(
        "preprocess",
        "lossbench preprocess --input {input.archive} --output {output.data}"
        " --counts {output.counts}",
        inputs={"archive": "data/raw/archive"},
        outputs={
            "data": Output("data/prepared", directory=True),
            # Images per class: a plain output, not a metric, so that its 22 numbers do not
            # add columns to every `dvc exp show`.
            "counts": Output("reports/data/counts.json", cache=False),
        },
        # download.max_archive_bytes: preprocess decompresses the archive too, within that limit.
        params=("preprocess.dataset", "preprocess.train_size", "preprocess.test_size",
                "preprocess.subset_seed", "preprocess.label_noise", "preprocess.label_noise_mode",
                "download.max_archive_bytes"),
    ),
    Stage(
        "tune",
        # Like train's checkpoints, the tuning runs' state (data/tune/<loss>/) is not an
        # output, so that a rerun of an interrupted stage resumes.
        "lossbench tune --loss {loss} --data {input.data} --output {output.tuning}"
        " --work-dir data/tune/{loss}",
        inputs={"data": "data/prepared"},
        outputs={"tuning": Output("reports/tune/{loss}.json", cache=False)},
        # The study's training settings but those each tuning run sets itself; train.epochs
        # is the horizon the tuned runs train, which the tuning protocol checks.
        params=tuple(key for key in TRAIN_KEYS if key not in (
            "train.learning_rate", "train.validation", "train.holdout_fraction",
        )) + ("train.pack_size", "tune.learning_rates", "tune.seeds", "tune.epochs",
              "tune.holdout_fraction", "tune.preferred_rate", "tune.max_grid_extensions"),
        per_loss=True,
    ),
    Stage(
        "train",
        # Checkpoints are not an output: Snakemake deletes the outputs of an incomplete job
        # before rerunning it, and the checkpoint is what lets the rerun resume.
        "lossbench train --loss {loss} --seed {seed} --data {input.data}"
        " --tuning {input.tuning} --model {output.model} --log-dir {output.log_dir}"
        " --checkpoint-dir data/checkpoints/{run}",
        inputs={"data": "data/prepared", "tuning": "reports/tune/{loss}.json"},
        outputs={
            "model": Output("data/models/{run}.keras"),
            "log_dir": Output("reports/training/{run}", directory=True, cache=False),
        },
        # TRAIN_KEYS make the job's TrainConfig; train.pack_size is none of its fields: it
        # decides which runs share a compiled step, so a checkpoint resumes under another.
        params=TRAIN_KEYS + ("train.pack_size",),
        per_run=True,
    ),
    Stage(
        "evaluate",
        "lossbench evaluate --loss {loss} --seed {seed} --data {input.data}"
        " --model {input.model} --log-dir {input.log_dir} --output {output.evaluation}"
        " --metrics {output.metrics} --predictions {output.predictions}",
        inputs={
            "data": "data/prepared",
            "model": "data/models/{run}.keras",
            "log_dir": "reports/training/{run}",
        },
        outputs={
            # The full evaluation (read by compare, figures and report) and a few flat
            # numbers per run for `dvc metrics diff --targets reports/metrics`: not a DVC
            # metric, so that `dvc metrics show` and `dvc exp show` fit a screen.
            "evaluation": Output("reports/evaluation/{run}.json", cache=False),
            "metrics": Output("reports/metrics/{run}.json", cache=False),
            # The score rows the numbers come from (test and temperature images), so that
            # calibration can be recomputed without the model; in DVC's cache, like models.
            "predictions": Output("data/predictions/{run}.npz"),
        },
        params=("evaluate.batch_size", "evaluate.convergence_thresholds",
                "evaluate.collapse_share", "evaluate.dead_layer_share", "evaluate.train_sample",
                "evaluate.temperature_fraction"),
        per_run=True,
    ),
    Stage(
        "compare",
        "lossbench compare --evaluations {input.evaluations} --output {output.summary}"
        " --headline {output.headline}",
        inputs={"evaluations": "reports/evaluation/{run}.json"},
        outputs={
            "summary": Output("reports/summary.json", cache=False),
            "headline": Output("reports/headline.json", cache=False, metric=True),
        },
        params=("train.losses", "train.seeds", "compare.confidence_level",
                "compare.primary_pairs", "compare.equivalence_margin", "compare.power"),
        each_run=("evaluations",),
    ),
    Stage(
        "figures",
        "lossbench figures --summary {input.summary} --evaluations {input.evaluations}"
        " --training-logs {input.log_dirs} --tuning {input.tuning} --output {output.figures}"
        " --epochs {output.epochs}",
        inputs={
            "summary": "reports/summary.json",
            "evaluations": "reports/evaluation/{run}.json",
            "log_dirs": "reports/training/{run}",
            "tuning": "reports/tune/{loss}.json",
        },
        outputs={
            "figures": Output("reports/figures", directory=True, cache=False),
            "epochs": Output("reports/epochs.csv", cache=False),
        },
        params=("train.losses", "train.seeds"),
        each_run=("evaluations", "log_dirs"),
        each_loss=("tuning",),
    ),
    Stage(
        "report",
        "lossbench report --summary {input.summary} --figures {input.figures}"
        " --tuning {input.tuning} --output {output.report}",
        inputs={"summary": "reports/summary.json", "figures": "reports/figures",
                "tuning": "reports/tune/{loss}.json"},
        outputs={"report": Output("reports/report.md", cache=False)},
        params=("report.paper", "train.losses", "train.learning_rate", "preprocess.dataset",
                "download.url", "download.source", "download.sha256", "model.width",
                "model.final_convolution_activation", "train.batch_size",
                "evaluate.collapse_share", "evaluate.dead_layer_share",
                "preprocess.label_noise", "preprocess.label_noise_mode"),
        each_loss=("tuning",),
    ),
    Stage(
        "bench",
        "lossbench bench --output reports/benchmarks --name local",
        outputs={"benchmark": Output("reports/benchmarks/local.json", cache=False)},
        dvc_file="benchmarks/dvc.yaml",
    ),
)


# Every stage that reads params.yaml, with the keys it reads.
STAGE_PARAMS: dict[str, tuple[str, ...]] = {entry.name: entry.params for entry in STAGES if entry.params}


def stage(name: str) -> Stage:
    """The stage called `name`."""
    for candidate in STAGES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"no stage {name!r}; stages: {', '.join(s.name for s in STAGES)}.")


# ---------------------------------------------------------------------------------------
# Snakemake: the rules call these while the workflow is parsed.
# ---------------------------------------------------------------------------------------

# A command's placeholders: {input.NAME}, {output.NAME}, {loss}, {seed} and {run}.
PLACEHOLDER = re.compile(r"\{(?:(?P<kind>input|output)\.(?P<key>\w+)|(?P<word>loss|seed|run))\}")


def fill(pattern: str, run: str) -> str:
    """`pattern` with `run` for its ``{run}``."""
    return pattern.replace(RUN, run)


def snakemake_inputs(name: str, runs: list[str], losses: list[str]) -> dict[str, str | list[str]]:
    """A rule's named inputs: `code` (the files of the stage's code dependencies: Snakemake
    judges a folder by its own modification time, which editing a file inside leaves as it
    was), then the table's inputs.

    A per-run path keeps Snakemake's wildcards {loss} and {seed}; an `each_run` (`each_loss`)
    input lists the path of every run in `runs` (loss in `losses`).
    """
    entry = stage(name)
    inputs: dict[str, str | list[str]] = {"code": code_files(name)}
    for key, pattern in entry.inputs.items():
        if key in entry.each_run:
            inputs[key] = [fill(pattern, run) for run in runs]
        elif key in entry.each_loss:
            inputs[key] = [pattern.replace(LOSS, loss) for loss in losses]
        else:
            inputs[key] = fill(pattern, RUN_PATTERN)
    return inputs


def snakemake_outputs(name: str) -> dict[str, Output]:
    """A rule's named outputs, with per-run paths in Snakemake's wildcards (the rule wraps
    directories in `directory()` and report entries in `report()`)."""
    return {key: replace(output, path=fill(output.path, RUN_PATTERN))
            for key, output in stage(name).outputs.items()}


def snakemake_shell(name: str) -> str:
    """A rule's shell command: the stage's command, its output copied to the rule's log."""
    wildcards = {"loss": "{wildcards.loss}", "seed": "{wildcards.seed}"}
    wildcards["run"] = RUN_PATTERN.format(**wildcards)

    def fill_placeholder(match: re.Match) -> str:
        return match[0] if match["kind"] else wildcards[match["word"]]

    return f"{PLACEHOLDER.sub(fill_placeholder, stage(name).command)} 2>&1 | (trap '' INT TERM; exec tee {{log}})"
