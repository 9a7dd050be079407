"""Keras callbacks of the train stage: what happens around each epoch of the one `fit` call.

In:  the augmentation to reseed, the run's seed, and functions that record a finished epoch.
Out: side effects only: the augmentation reseeded from (seed, epoch) before each epoch, one
     record per finished epoch handed to `on_epoch_done` (which writes the checkpoint and
     the logs), training stopped on a non-finite loss, and one line early in the first epoch
     with the projected training time of the whole study (a warning where a CPU is projected
     to take more than an hour).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import keras

from lossbench.core.augment import set_epoch_seed

logger = logging.getLogger(__name__)


def _finite_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class EpochSeed(keras.callbacks.Callback):
    """Reseed the augmentation from (seed, epoch) before each epoch, so a resumed run
    augments its remaining epochs exactly as an uninterrupted run would."""

    def __init__(self, augmentation, seed: int):
        super().__init__()
        self.augmentation = augmentation
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        set_epoch_seed(self.augmentation, self.seed, epoch)


class EpochRecorder(keras.callbacks.Callback):
    """Turn each finished epoch into a record and hand it to `on_epoch_done`.

    A record holds the epoch (1-based), training and validation loss and accuracy (null
    where not finite, so the logs stay strict JSON), the learning rate and the epoch's wall
    seconds (training and validation). A non-finite training or validation loss stops
    training: the run is then recorded as diverged, and the job still succeeds.
    """

    def __init__(self, on_epoch_done: Callable[[dict, bool], None]):
        super().__init__()
        self.on_epoch_done = on_epoch_done
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        # Stop at the first non-finite loss, as keras.callbacks.TerminateOnNaN does; the
        # epoch still ends through on_epoch_end, which records the divergence.
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        record = {
            "epoch": epoch + 1,
            "loss": _finite_or_none(logs.get("loss")),
            "accuracy": _finite_or_none(logs.get("accuracy")),
            "val_loss": _finite_or_none(logs.get("val_loss")),
            "val_accuracy": _finite_or_none(logs.get("val_accuracy")),
            "learning_rate": learning_rate,
            "seconds": time.perf_counter() - self._started,
        }
        diverged = record["loss"] is None or record["val_loss"] is None
        if diverged:
            self.model.stop_training = True
        self.on_epoch_done(record, diverged)


GPU_ADVICE = (
    "For the full study use a GPU (`pip install -e \".[gpu]\"` and KERAS_BACKEND=jax, then "
    "train.device: gpu), or a CPU-sized configuration (README, \"A CPU-sized run\")."
)


class ProjectedTime(keras.callbacks.Callback):
    """Measure the seconds per step early in the first epoch, then write one line: the
    projected training time of the whole study on this machine (`study`, a
    `lossbench.train.study_cost.StudyCost`), its runs times the time of one run.

    The projection is measured, not guessed: the seconds per step between the first ends of
    a call at or after step `first_step` and at or after `last_step` of the first epoch run
    here (with several steps per call, Keras reports only each call's last step; both are
    moved forward in an epoch of fewer than `last_step` + 1 steps). The line is
    a warning, with what to do instead, where `advise` (a CPU that `train.device: auto` fell
    back to) and the study passes `limit_seconds`. With `always` false the line is written
    only then. A study already `reported` by an earlier run of this job is not written again.
    """

    def __init__(self, study, steps_per_epoch: int, where: str, advise: bool,
                 always: bool = True, limit_seconds: float = 3600.0, first_step: int = 5,
                 last_step: int = 25):
        super().__init__()
        self.study, self.where, self.advise, self.always = study, where, advise, always
        self.limit_seconds = limit_seconds
        self.last_step = min(last_step, steps_per_epoch - 1)
        self.first_step = min(first_step, max(self.last_step - 1, 0))
        self._start: tuple[float, int] | None = None
        self._done = False
        self.projected_seconds: float | None = None

    def on_epoch_end(self, epoch, logs=None):
        self._done = True  # measured within one epoch only: validation would blur it

    def on_train_batch_end(self, batch, logs=None):
        if self._done or self.study.reported:
            return
        if self._start is None:
            if batch >= self.first_step:
                self._start = (time.perf_counter(), batch)
            return
        if batch < self.last_step:
            return
        self._done = True
        started, first = self._start
        per_step = (time.perf_counter() - started) / (batch - first)
        self.projected_seconds = self.study.seconds(per_step)
        warn = self.advise and self.projected_seconds > self.limit_seconds
        if warn or self.always:
            line = self.study.line(per_step, self.where,
                                   f"measured over steps {first + 2}-{batch + 1} of this run")
            logger.log(logging.WARNING if warn else logging.INFO,
                       "%s%s", line, f" {GPU_ADVICE}" if warn else "")
            self.study.reported = True
