"""Training runs: their names.

In:  a loss name and a seed, a run name, or params.yaml's `train` section.
Out: the run's name `<loss>-seed<seed>` (the stem of its model, log directory and metrics
     files), the (loss, seed) parsed back from a name, and every run of a study in params
     order. (What a run's metrics say about it, `final_layer_dead`, decides results, so it
     lives in lossbench.io.evaluation rather than in the pipeline's description.)

The one place where runs are named and parsed: the Snakemake rules, the CLI and the stages
all call these functions, and dvc.yaml's `matrix` templates are generated from RUN_PATTERN.
"""

from __future__ import annotations

import re

# The name as a pattern: filled with a loss and a seed it names a run; filled with
# placeholders it is the run part of a path template (Snakemake's wildcards, DVC's matrix
# items; see lossbench.pipeline.stages).
RUN_PATTERN = "{loss}-seed{seed}"
RUN_NAME = re.compile(r"^(?P<loss>[A-Za-z0-9_]+)-seed(?P<seed>\d+)$")


def run_name(loss: str, seed: int) -> str:
    """The name of the run of `loss` with `seed`: "hinge-seed0"."""
    return RUN_PATTERN.format(loss=loss, seed=int(seed))


def parse_run_name(name: str) -> tuple[str, int] | None:
    """(loss, seed) of a run name or file stem ("hinge-seed0" -> ("hinge", 0)), else None."""
    match = RUN_NAME.match(name)
    return None if match is None else (match["loss"], int(match["seed"]))


def run_names(train_params: dict) -> list[str]:
    """Every run of a study (params.yaml's `train` section), losses outer, seeds inner."""
    return [run_name(loss, seed) for loss in train_params["losses"] for seed in train_params["seeds"]]


def tuning_run_name(learning_rate: float, seed: int) -> str:
    """The name of one tuning run of a loss (lossbench.train.tune): "lr0.01-seed100"."""
    return RUN_PATTERN.format(loss=f"lr{float(learning_rate):g}", seed=int(seed))
