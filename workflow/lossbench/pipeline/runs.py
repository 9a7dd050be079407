"""Training runs: their names, and what a run's metrics say about it.

In:  a loss name and a seed, a run name, params.yaml's `train` section, or one run's metrics.
Out: the run's name `<loss>-seed<seed>` (the stem of its model, log directory and metrics
     files), the (loss, seed) parsed back from a name, every run of a study in params order,
     and `final_layer_dead`.

The one place where runs are named and parsed: the Snakemake rules, the CLI and the stages
all call these functions, and dvc.yaml's `matrix` templates are generated from RUN_PATTERN.
"""

from __future__ import annotations

import re

# The name as a pattern: filled with a loss and a seed it names a run; filled with
# placeholders it is the run part of a path template (Snakemake's wildcards, DVC's matrix
# items; see lossbench.stages).
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


def final_layer_dead(metrics: dict) -> bool:
    """Whether a run's metrics say that its final conv layer (conv_9) is dead.

    `lossbench evaluate` writes `final_layer_dead`: at least `evaluate.dead_layer_share` of
    conv_9's activations on the test set are zero. Metrics written before that key existed
    (or holding null there) fall back to the older, stricter rule: every channel was zero on
    every test image. A run whose layer was not measured counts as alive.
    """
    if metrics.get("final_layer_dead") is not None:
        return bool(metrics["final_layer_dead"])
    channels = metrics.get("final_conv_channels")
    dead = metrics.get("final_conv_dead_channels")
    return channels is not None and dead is not None and channels > 0 and dead == channels


def tuning_run_name(learning_rate: float, seed: int) -> str:
    """The name of one tuning run of a loss (lossbench.tune): "lr0.01-seed100"."""
    return RUN_PATTERN.format(loss=f"lr{float(learning_rate):g}", seed=int(seed))
