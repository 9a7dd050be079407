"""dvc.yaml and benchmarks/dvc.yaml, rendered from the stage table.

In:  `lossbench.pipeline.stages.STAGES` (commands, inputs, outputs, params, code), the
     params gate (`lossbench.pipeline.params_gate`) and the plot definitions
     (`lossbench.pipeline.dvc_plots`).
Out: `render_dvc_yaml`, the text `lossbench dvc-yaml` writes (a test checks that the committed
     files are current), and `dvc_command`, a stage's command as dvc.yaml runs it.
"""

from __future__ import annotations

import io
import re
from pathlib import PurePosixPath

from lossbench.pipeline.dvc_plots import FIGURES_COMMENT, PLOTS_COMMENT, plot_definitions
from lossbench.pipeline.params_gate import GATE_COMMENT, GATE_FILE, GATE_STAGE, gate_stage
from lossbench.pipeline.runs import RUN_PATTERN
from lossbench.pipeline.stages import LOSS, PLACEHOLDER, RUN, STAGES, Stage, fill

DVC_ITEM = {"loss": "${item.loss}", "seed": "${item.seed}"}
DVC_RUN = RUN_PATTERN.format(**DVC_ITEM)
DVC_FILES = ("dvc.yaml", "benchmarks/dvc.yaml")


def _fill_dvc(pattern: str) -> str:
    """A path pattern with its run and loss in DVC's matrix items."""
    return fill(pattern, DVC_RUN).replace(LOSS, DVC_ITEM["loss"])

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

