"""Keras callbacks of the train stage: what happens around each epoch of the one `fit` call.

In:  the augmentation to reseed, the run's seed, and functions that record a finished epoch.
Out: side effects only: the augmentation reseeded from (seed, epoch) before each epoch, one
     record per finished epoch handed to `on_epoch_done` (which writes the checkpoint and
     the logs), training stopped on a non-finite loss, and one warning when a CPU run is
     projected to take more than an hour.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import keras

from lossbench.augment import set_epoch_seed

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


class ProjectedTimeWarning(keras.callbacks.Callback):
    """Warn once, early, when a run on a CPU is projected to take longer than `limit_seconds`.

    The projection is measured, not guessed: the seconds per step between steps
    `first_step` and `last_step` of the first epoch run here, times the steps left, plus
    validation at a third of a training step's cost per image.
    """

    def __init__(self, steps_per_epoch: int, epochs_left: int, validation_steps: int,
                 limit_seconds: float = 3600.0, first_step: int = 5, last_step: int = 25):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.epochs_left = epochs_left
        self.validation_steps = validation_steps
        self.limit_seconds = limit_seconds
        self.first_step = min(first_step, max(steps_per_epoch - 2, 0))
        self.last_step = min(last_step, steps_per_epoch - 1)
        self._start = None
        self._done = False
        self.projected_seconds: float | None = None

    def on_train_batch_end(self, batch, logs=None):
        if self._done or self.last_step <= self.first_step:
            return
        if batch == self.first_step:
            self._start = time.perf_counter()
        elif batch >= self.last_step and self._start is not None:
            self._done = True
            per_step = (time.perf_counter() - self._start) / (batch - self.first_step)
            steps = self.epochs_left * (self.steps_per_epoch + self.validation_steps / 3)
            self.projected_seconds = per_step * steps
            if self.projected_seconds > self.limit_seconds:
                logger.warning(
                    "This run trains on the CPU and is projected to take %.1f hours (%.3f s "
                    "per step measured over steps %d-%d, %d epochs of %d steps left). For the "
                    "full study use a GPU (`pip install -e \".[gpu]\"`, then train.device: gpu), "
                    "or a CPU-sized configuration (README, \"A CPU-sized run\").",
                    self.projected_seconds / 3600, per_step, self.first_step, batch,
                    self.epochs_left, self.steps_per_epoch,
                )
