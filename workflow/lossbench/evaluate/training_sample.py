"""Which training images evaluate measures training accuracy on, without augmentation.

In:  the prepared training labels, the run's run.json (`validation`, `train_size`,
     `validation_size`, and `holdout_fraction` where train records it), its seed and
     `evaluate.train_sample` (a number of images, or None for all).
Out: `training_sample`, sorted indices into the prepared training images: a fixed sample of
     the images the run actually trained on (the hold-out, if any, left out), or None when
     those cannot be told; and `temperature_split`, the training images that fit the run's
     temperature (`lossbench.evaluate.calibration`): the hold-out training left out where it
     held one out, else a stratified `evaluate.temperature_fraction` of the training images, which
     the run has seen (so the fitted temperature is optimistic). Never a test image.

Why a sample of the training images: Keras's logged "accuracy" is a running mean over an
epoch's augmented batches while the weights change, so it is not the final model's accuracy
on its training data; evaluate predicts this sample with the final model instead.
"""

from __future__ import annotations

import logging

import numpy as np

from lossbench.core.batches import split_validation

logger = logging.getLogger(__name__)


# The sample of training images is drawn with this fixed seed, not the run's: every run that
# trained on the same images is then measured on the same sample, so runs compare fairly.
TRAIN_SAMPLE_SEED = 0


def _holdout_split(train_labels: np.ndarray, run_info: dict, seed: int):
    """(kept, held out) indices of a run trained with `train.validation: holdout`, as
    `split_validation` made them, or None when the recorded sizes do not reproduce."""
    held, trained = run_info.get("validation_size"), run_info.get("train_size")
    fraction = run_info.get("holdout_fraction")
    if fraction is None and held and trained:
        fraction = held / (held + trained)
    if fraction is None or not 0.0 < float(fraction) < 1.0:
        return None
    try:
        keep, held_out = split_validation(train_labels, "holdout", float(fraction), seed)
    except ValueError:
        return None
    return (keep, held_out) if held is None or len(held_out) == held else None


def trained_indices(train_labels: np.ndarray, run_info: dict, seed: int) -> np.ndarray | None:
    """Indices of the prepared training images the run was trained on, or None if unknown.

    With `train.validation: test` (the paper's), every prepared training image. With a
    hold-out, the images `lossbench.core.batches.split_validation` kept for the run's seed; the
    hold-out fraction is run.json's `holdout_fraction` where recorded, else the recorded
    validation size over all images, accepted only if it reproduces that size.
    """
    validation = run_info.get("validation") or "test"
    if validation == "test":
        return np.arange(len(train_labels))
    split = _holdout_split(train_labels, run_info, seed) if validation == "holdout" else None
    if split is not None:
        return split[0]
    logger.warning("Cannot tell which training images seed %d trained on (validation %r): "
                   "train_accuracy is null.", seed, validation)
    return None


def training_sample(train_labels: np.ndarray, run_info: dict, seed: int,
                    sample_size: int | None) -> np.ndarray | None:
    """Sorted indices of the training images to measure training accuracy on.

    `sample_size` images (`evaluate.train_sample`) drawn without replacement, with
    `TRAIN_SAMPLE_SEED`, from the images the run trained on; all of them when
    `sample_size` is None or not smaller. None when those images are unknown.
    """
    trained = trained_indices(train_labels, run_info, seed)
    if trained is None or sample_size is None or sample_size >= len(trained):
        return trained
    rng = np.random.default_rng(TRAIN_SAMPLE_SEED)
    return np.sort(rng.choice(trained, size=int(sample_size), replace=False))


def temperature_split(train_labels: np.ndarray, run_info: dict, seed: int,
                      fraction: float) -> tuple[np.ndarray, str]:
    """(sorted indices of the training images that fit the temperature, "holdout" or "training").

    "holdout": the images a `train.validation: holdout` run held out, never trained on.
    "training": otherwise, a stratified `fraction` of the training images drawn from the run's
    seed (`split_validation`); a run validated on the test set trained on all of them, so a
    temperature fitted there is optimistic (the model is more confident on images it saw).
    No indices when the fraction rounds to no image of any class (a tiny training set).
    """
    if (run_info.get("validation") or "test") == "holdout":
        split = _holdout_split(train_labels, run_info, seed)
        if split is not None:
            return split[1], "holdout"
    try:
        return split_validation(train_labels, "holdout", fraction, seed)[1], "training"
    except ValueError:
        logger.warning("evaluate.temperature_fraction %s of %d training images is no image: no "
                       "temperature is fitted.", fraction, len(train_labels))
        return np.zeros(0, dtype=np.int64), "training"
