"""The score rows evaluate computes its numbers from: predicted, and saved for later checks.

In:  a loaded model, uint8 images, the run's run.json and seed, params.yaml's `evaluate:`.
Out: `predict_scores`, one float64 score row per image; `predict_run`, the rows of the test
     images, of the training sample (`lossbench.evaluate.training_sample.training_sample`)
     and of the temperature images (`temperature_split`); `write_predictions` /
     `read_predictions`, the `.npz` file the evaluate stage keeps of them
     (`data/predictions/<run>.npz`, in DVC's cache): `test_scores`, `test_labels`,
     `temperature_scores`, `temperature_labels` and `temperature_indices` (into the prepared
     training images), so that every calibration number can be recomputed without the model.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lossbench.evaluate.training_sample import temperature_split, training_sample
from lossbench.io.atomic import staged_file


def predict_scores(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's score rows for uint8 `images`, batch by batch, as a float64 array."""
    from keras import ops

    if batch_size < 1:
        raise ValueError(f"evaluate.batch_size must be at least 1, got {batch_size}.")
    batches = []
    for start in range(0, len(images), batch_size):
        # training=False keeps the model's augmentation layers inactive.
        outputs = model(images[start:start + batch_size], training=False)
        batches.append(np.asarray(ops.convert_to_numpy(outputs), dtype=np.float64))
    return np.concatenate(batches, axis=0)


def predict_run(
    evaluate_params: dict,
    seed: int,
    model,
    test_images: np.ndarray,
    run_info: dict,
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """The score rows evaluate measures, as arrays: `test_scores`, and with the training
    images those of `training_sample` (`train_sample_indices`, `train_sample_scores`) and of
    `temperature_split` (`temperature_indices`, `temperature_scores`, `temperature_split`).
    Training images are predicted with training=False, so without augmentation."""
    batch_size = int(evaluate_params["batch_size"])
    predictions: dict[str, Any] = {"test_scores": predict_scores(model, test_images, batch_size)}
    if train_labels is None:
        return predictions
    sample = training_sample(train_labels, run_info, seed, evaluate_params["train_sample"])
    if sample is not None:
        predictions.update(train_sample_indices=sample,
                           train_sample_scores=predict_scores(model, train_images[sample], batch_size))
    indices, split = temperature_split(train_labels, run_info, seed,
                                       evaluate_params["temperature_fraction"])
    if len(indices):
        predictions.update(temperature_indices=indices, temperature_split=split,
                           temperature_scores=predict_scores(model, train_images[indices], batch_size))
    return predictions


# The arrays of the predictions file, in the order written.
PREDICTION_ARRAYS = ("test_scores", "test_labels", "temperature_scores", "temperature_labels",
                     "temperature_indices")


def write_predictions(path: str | os.PathLike, predictions: dict[str, Any]) -> None:
    """The score rows the numbers were computed from, as a compressed .npz (a DVC output)."""
    arrays = {name: np.asarray(predictions[name]) for name in PREDICTION_ARRAYS if name in predictions}
    with staged_file(path) as staging:
        np.savez_compressed(staging, **arrays)


def read_predictions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays `write_predictions` wrote."""
    with np.load(path, allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}
