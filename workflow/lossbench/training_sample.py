"""Which training images evaluate measures training accuracy on, without augmentation.

In:  the prepared training labels, the run's run.json (`validation`, `train_size`,
     `validation_size`, and `holdout_fraction` where train records it), its seed and
     `evaluate.train_sample` (a number of images, or None for all).
Out: `training_sample`, sorted indices into the prepared training images: a fixed sample of
     the images the run actually trained on (the hold-out, if any, left out), or None when
     those cannot be told.

Why a sample of the training images: Keras's logged "accuracy" is a running mean over an
epoch's augmented batches while the weights change, so it is not the final model's accuracy
on its training data; evaluate predicts this sample with the final model instead.
"""

from __future__ import annotations

import logging

import numpy as np

from lossbench.batches import split_validation

logger = logging.getLogger(__name__)


# The sample of training images is drawn with this fixed seed, not the run's: every run that
# trained on the same images is then measured on the same sample, so runs compare fairly.
TRAIN_SAMPLE_SEED = 0
# `evaluate.train_sample` when params.yaml does not give it.
DEFAULT_TRAIN_SAMPLE = 2000


def trained_indices(train_labels: np.ndarray, run_info: dict, seed: int) -> np.ndarray | None:
    """Indices of the prepared training images the run was trained on, or None if unknown.

    With `train.validation: test` (the paper's), every prepared training image. With a
    hold-out, the images `lossbench.batches.split_validation` kept for the run's seed; the
    hold-out fraction is run.json's `holdout_fraction` where recorded, else the recorded
    validation size over all images, accepted only if it reproduces that size.
    """
    validation = run_info.get("validation") or "test"
    if validation == "test":
        return np.arange(len(train_labels))
    held, trained = run_info.get("validation_size"), run_info.get("train_size")
    fraction = run_info.get("holdout_fraction")
    if fraction is None and held and trained:
        fraction = held / (held + trained)
    if validation == "holdout" and fraction is not None and 0.0 < float(fraction) < 1.0:
        try:
            keep, held_out = split_validation(train_labels, "holdout", float(fraction), seed)
        except ValueError:
            keep, held_out = None, None
        if keep is not None and (held is None or len(held_out) == held):
            return keep
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
