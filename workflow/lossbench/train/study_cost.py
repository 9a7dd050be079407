"""The projected cost of a whole study on this machine, from one job's measured step time.

In:  the validated params (the study's size: `train.losses`, `train.seeds`, `train.epochs`,
     `train.batch_size`, `train.validation`, `train.holdout_fraction` and `tune.*`), the
     prepared training labels and the number of test images, and later the seconds per SGD
     step that the running job measured.
Out: `StudyCost`, whose `line()` is the one log line a training job writes early in its first
     epoch: the projected hours of every training the study runs (tuning runs and training
     runs, each count times the projection of one run), and the measurement it rests on.

Every run of a study trains the same model with the same batch size on the same data, so
one job's seconds per step project all of them: a run's steps are its epochs times its
training steps per epoch plus its validation steps, a validation step costing a third of a
training step (a forward pass against a forward and a backward pass). Evaluation, data
preparation and the figures are left out: beside the training they are minutes.

The size keys are read for this line only and are not among the train and tune stages'
params (their `params` in `lossbench.pipeline.stages`): they change no output, and declaring
them would retrain every run when a loss or a seed is added.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# The cost of a validation step relative to a training step (forward only, against forward
# and backward).
VALIDATION_STEP_COST = 1 / 3


@dataclasses.dataclass(frozen=True)
class RunGroup:
    """`count` runs of one kind ("tuning" or "training") that cost the same: `epochs` epochs
    of `fit_count` training images, validated on `validation_count` images each epoch."""

    kind: str
    count: int
    breakdown: str  # e.g. "6 losses x 1 seed"
    epochs: int
    fit_count: int
    validation_count: int

    def steps(self, batch_size: int) -> float:
        """Training-step equivalents of one run."""
        per_epoch = (math.ceil(self.fit_count / batch_size)
                     + math.ceil(self.validation_count / batch_size) * VALIDATION_STEP_COST)
        return self.epochs * per_epoch


def holdout_count(labels: np.ndarray, fraction: float) -> int:
    """Images a stratified hold-out of `fraction` takes: `lossbench.core.batches.split_validation`'s
    count, without drawing them."""
    from lossbench.core.batches import holdout_counts

    return sum(holdout_counts(labels, fraction))


def _counted(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}es" if noun.endswith("s") \
        else f"{number} {noun}s"


def study_runs(params: dict, train_labels: np.ndarray, test_count: int) -> list[RunGroup]:
    """The trainings of the study that `params` describes, on these prepared data."""
    train, tune = params["train"], params["tune"]
    losses, seeds = len(train["losses"]), len(train["seeds"])
    images = len(train_labels)
    groups = []
    if tune["learning_rates"]:
        rates, tune_seeds = len(tune["learning_rates"]), len(tune["seeds"])
        held_out = holdout_count(train_labels, tune["holdout_fraction"])
        groups.append(RunGroup(
            "tuning", losses * rates * tune_seeds,
            f"{_counted(losses, 'loss')} x {_counted(rates, 'rate')} x {_counted(tune_seeds, 'seed')}",
            int(tune["epochs"]), images - held_out, held_out))
    held_out = (holdout_count(train_labels, train["holdout_fraction"])
                if train["validation"] == "holdout" else 0)
    groups.append(RunGroup(
        "training", losses * seeds, f"{_counted(losses, 'loss')} x {_counted(seeds, 'seed')}",
        int(train["epochs"]), images - held_out, held_out or test_count))
    return groups


def format_duration(seconds: float) -> str:
    """`seconds` in the unit a reader takes in at once: s, min or h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class StudyCost:
    """The study's runs (`groups`, at `batch_size` images per step), priced by `line()`,
    which names them `subject`.

    `reported` becomes true once a job has written the line, so that a job training several
    runs (tune) writes it once.
    """

    def __init__(self, groups: list[RunGroup], batch_size: int, subject: str = "The whole study"):
        self.groups = groups
        self.batch_size = batch_size
        self.subject = subject
        self.reported = False

    def seconds(self, seconds_per_step: float) -> float:
        """The projected seconds of every run of the study."""
        return sum(group.count * group.steps(self.batch_size) * seconds_per_step
                   for group in self.groups)

    def line(self, seconds_per_step: float, where: str, measured: str) -> str:
        """One sentence: the study's projected training time on `where` (e.g. "CPU: AMD EPYC
        (2 cores)"), as runs x the projection per run, and the measurement (`measured`)."""
        parts = [f"{_counted(group.count, group.kind + ' run')} ({group.breakdown}, "
                 f"{_counted(group.epochs, 'epoch')}) x "
                 f"{format_duration(group.steps(self.batch_size) * seconds_per_step)}"
                 for group in self.groups if group.count]
        return (f"{self.subject} is projected to train for "
                f"{format_duration(self.seconds(seconds_per_step))} on this machine "
                f"({where}): {' + '.join(parts)}, at {seconds_per_step:.3f} s per step of "
                f"{self.batch_size} images ({measured}).")
