"""The DAG, described once: each stage's command, inputs, outputs and the params it reads.

In:  nothing but this table (and, for the params keys,
     `lossbench.pipeline.params.STAGE_PARAMS`; for the code that decides a stage's results,
     its folder and the shared code it imports, `lossbench.pipeline.sources`).
Out: the two front ends' views of it:
     - `snakemake_inputs`, `snakemake_outputs` and `snakemake_shell`, which the rules in
       workflow/rules/*.smk call, so that a rule adds only what is Snakemake's own (its log,
       resources, conda environment and report captions);
     - `render_dvc_yaml`, the text of dvc.yaml and benchmarks/dvc.yaml, which
       `lossbench dvc-yaml` writes (a test checks that the committed files are current).

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

import io
import re
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from lossbench.pipeline.dvc_plots import FIGURES_COMMENT, PLOTS_COMMENT, plot_definitions
from lossbench.pipeline.params import STAGE_PARAMS
from lossbench.pipeline.params_gate import GATE_COMMENT, GATE_FILE, GATE_STAGE, gate_stage
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
    per_run: bool = False
    per_loss: bool = False
    each_run: tuple[str, ...] = ()
    each_loss: tuple[str, ...] = ()
    dvc_file: str = "dvc.yaml"

    @property
    def params(self) -> tuple[str, ...]:
        """The params.yaml keys the stage reads (`lossbench.pipeline.params.STAGE_PARAMS`)."""
        return STAGE_PARAMS.get(self.name, ())

    @property
    def code(self) -> list[str]:
        """The code that decides the stage's results, as DVC depends on it: the stage's folder
        and the shared files it uses (`lossbench.pipeline.sources.code_dependencies`)."""
        return code_dependencies(self.name)


STAGES: tuple[Stage, ...] = (
    Stage(
        "download",
        "lossbench download --output {output.archive}",
        outputs={"archive": Output("data/raw/archive")},
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
    ),
    Stage(
        "tune",
        # Like train's checkpoints, the tuning runs' state (data/tune/<loss>/) is not an
        # output, so that a rerun of an interrupted stage resumes.
        "lossbench tune --loss {loss} --data {input.data} --output {output.tuning}"
        " --work-dir data/tune/{loss}",
        inputs={"data": "data/prepared"},
        outputs={"tuning": Output("reports/tune/{loss}.json", cache=False)},
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
        each_loss=("tuning",),
    ),
    Stage(
        "bench",
        "lossbench bench --output reports/benchmarks --name local",
        outputs={"benchmark": Output("reports/benchmarks/local.json", cache=False)},
        dvc_file="benchmarks/dvc.yaml",
    ),
)


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


def _fill(pattern: str, run: str) -> str:
    return pattern.replace(RUN, run)


def _fill_dvc(pattern: str) -> str:
    """A path pattern with its run and loss in DVC's matrix items."""
    return _fill(pattern, DVC_RUN).replace(LOSS, DVC_ITEM["loss"])


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
            inputs[key] = [_fill(pattern, run) for run in runs]
        elif key in entry.each_loss:
            inputs[key] = [pattern.replace(LOSS, loss) for loss in losses]
        else:
            inputs[key] = _fill(pattern, RUN_PATTERN)
    return inputs


def snakemake_outputs(name: str) -> dict[str, Output]:
    """A rule's named outputs, with per-run paths in Snakemake's wildcards (the rule wraps
    directories in `directory()` and report entries in `report()`)."""
    return {key: replace(output, path=_fill(output.path, RUN_PATTERN))
            for key, output in stage(name).outputs.items()}


def snakemake_shell(name: str) -> str:
    """A rule's shell command: the stage's command, its output copied to the rule's log."""
    wildcards = {"loss": "{wildcards.loss}", "seed": "{wildcards.seed}"}
    wildcards["run"] = RUN_PATTERN.format(**wildcards)

    def fill_placeholder(match: re.Match) -> str:
        return match[0] if match["kind"] else wildcards[match["word"]]

    return f"{PLACEHOLDER.sub(fill_placeholder, stage(name).command)} 2>&1 | (trap '' INT TERM; exec tee {{log}})"


# --- DVC: dvc.yaml is generated from the table, through ruamel.yaml. ------------------------

DVC_ITEM = {"loss": "${item.loss}", "seed": "${item.seed}"}
DVC_RUN = RUN_PATTERN.format(**DVC_ITEM)
DVC_FILES = ("dvc.yaml", "benchmarks/dvc.yaml")

DVC_HEADER = """\
# lossbench: the same DAG as the Snakefile, run by `dvc repro`.
#
# GENERATED from workflow/lossbench/pipeline/stages.py by `lossbench dvc-yaml`; do not edit
# by hand: change the table there and run `lossbench dvc-yaml` (a test fails while this file
# is stale).
# Each stage calls `lossbench <stage> ...`, the command its Snakemake rule runs, depends on
# the code that decides its results (its folder of workflow/lossbench and the shared files it
# imports; never pipeline/, __init__.py or cli.py, which only describe and dispatch), and
# lists exactly the params.yaml keys it reads. Small files that reviewers diff are
# `cache: false`, so `dvc metrics diff` works across commits without the cache; the one
# `metrics:` file is the headline (each loss's mean test accuracy under its name), so that
# `dvc metrics show/diff` and `dvc exp show` fit a screen (each run's numbers:
# `dvc metrics diff --targets reports/metrics`).
# DVC cannot put a list from params.yaml into a command, so an aggregate stage (compare,
# figures) is given the directory of the per-run files; `lossbench` reads the runs of
# params.yaml from it, where Snakemake lists each run's file.
"""

BENCH_HEADER = """\
# The benchmark as a DVC stage, apart from the study's dvc.yaml so that `dvc repro` does not
# run it: `dvc repro benchmarks/dvc.yaml`. Same command as the Snakemake rule `bench`.
#
# GENERATED from workflow/lossbench/pipeline/stages.py by `lossbench dvc-yaml`; do not edit by hand.
"""

def _dvc_input(entry: Stage, key: str) -> str:
    pattern = entry.inputs[key]
    if key in entry.each_run or key in entry.each_loss:
        parent = str(PurePosixPath(pattern).parent)
        if RUN in parent or LOSS in parent:
            raise ValueError(f"stage {entry.name}: the per-run input {pattern} must sit in one directory.")
        return parent
    return _fill_dvc(pattern)


def dvc_command(entry: Stage) -> str:
    """The stage's command with its placeholders filled for DVC."""

    def fill_placeholder(match: re.Match) -> str:
        if match["kind"] == "input":
            return _dvc_input(entry, match["key"])
        if match["kind"] == "output":
            return _fill_dvc(entry.outputs[match["key"]].path)
        return DVC_RUN if match["word"] == "run" else DVC_ITEM[match["word"]]

    return PLACEHOLDER.sub(fill_placeholder, entry.command)


def _command_scalar(command: str, width: int = 88):
    """A command of more than `width` - 2 characters as a folded (`>-`) scalar in lines of at
    most `width`, folded only before an option so that each option stays beside its value."""
    from ruamel.yaml.scalarstring import FoldedScalarString

    if len(command) <= width - 2:
        return command
    lines: list[str] = []
    for group in re.split(r" (?=--)", command):
        if lines and len(lines[-1]) + 1 + len(group) <= width:
            lines[-1] += " " + group
        else:
            lines.append(group)
    folded = FoldedScalarString(command)  # folded at the space after each line but the last
    folded.fold_pos = [sum(len(line) + 1 for line in lines[:end]) - 1 for end in range(1, len(lines))]
    return folded


def _dvc_stage(entry: Stage) -> dict:
    """One stage of dvc.yaml, as DVC reads it: wdir, matrix, cmd, deps, params, outs, metrics."""
    body: dict = {"wdir": ".."} if entry.dvc_file != "dvc.yaml" else {}
    if entry.per_run or entry.per_loss:
        body["matrix"] = {"loss": "${train.losses}", **({"seed": "${train.seeds}"} if entry.per_run else {})}
    body["cmd"] = _command_scalar(dvc_command(entry))
    body["deps"] = entry.code + [_dvc_input(entry, key) for key in entry.inputs]
    if entry.params:
        body["params"] = list(entry.params)
    for section, metric in (("outs", False), ("metrics", True)):
        paths = [(_fill_dvc(output.path), output.cache) for output in entry.outputs.values()
                 if output.metric == metric]
        if paths:
            body[section] = [path if cache else {path: {"cache": False}} for path, cache in paths]
    return body


def dvc_document(dvc_file: str = "dvc.yaml"):
    """`dvc_file` (dvc.yaml or benchmarks/dvc.yaml) as a YAML document of the stages it holds,
    with its comments (a ruamel.yaml CommentedMap)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    entries = [entry for entry in STAGES if entry.dvc_file == dvc_file]
    if not entries:
        raise ValueError(f"no stage belongs in {dvc_file}; files: dvc.yaml, benchmarks/dvc.yaml.")
    stages = CommentedMap((entry.name, _dvc_stage(entry)) for entry in entries)
    for entry in entries[1:]:
        stages.yaml_set_comment_before_after_key(entry.name, before="\n", indent=2)
    if dvc_file == "dvc.yaml":  # DVC's own first stage (lossbench.pipeline.params_gate)
        for body in stages.values():
            body["deps"].append(GATE_FILE)
        stages.insert(0, GATE_STAGE, gate_stage())
        stages.yaml_set_comment_before_after_key(GATE_STAGE, before=GATE_COMMENT.strip("\n"), indent=2)
        stages.yaml_set_comment_before_after_key(entries[0].name, before="\n", indent=2)
    document = CommentedMap(stages=stages)
    document.yaml_set_start_comment((DVC_HEADER if dvc_file == "dvc.yaml" else BENCH_HEADER).rstrip())
    document.yaml_set_comment_before_after_key("stages", before="\n")
    if dvc_file == "dvc.yaml":
        plots = CommentedSeq(plot_definitions())
        plots.yaml_set_comment_before_after_key(len(plots) - 1, before=FIGURES_COMMENT, indent=2)
        document["plots"] = plots
        document.yaml_set_comment_before_after_key("plots", before=PLOTS_COMMENT)
    return document


def render_dvc_yaml(dvc_file: str = "dvc.yaml") -> str:
    """The text of `dvc_file`: `dvc_document` in block style, lists indented under their key."""
    from ruamel.yaml import YAML

    writer, stream = YAML(), io.StringIO()
    writer.indent(mapping=2, sequence=4, offset=2)
    writer.width = 4096
    writer.dump(dvc_document(dvc_file), stream)
    return stream.getvalue()

