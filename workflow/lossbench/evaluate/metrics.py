"""The numbers of one run's evaluation, computed from arrays: no model, no files.

In:  the true labels and the model's score rows of the test images (and of a sample of the
     training images, predicted without augmentation), the class names, the run's training
     history (`history.json`'s epochs) and run information (`run.json`), the output batches
     of the final convolution, and a loss function.
Out: accuracy, error, per-class accuracy, the confusion matrix and the share of the most
     predicted class (`classification_metrics`); the exact one-sided binomial test of the
     correct count against chance (`above_chance_p_value`); the first epoch reaching each
     validation accuracy (`convergence`); the final running and best validation accuracies
     (`history_summary`); the mean loss (`mean_loss`); how much of a ReLU layer is active
     (`activation_summary`) and whether it counts as dead (`final_layer_dead`); and all of
     them, with the calibration numbers of `lossbench.evaluate.calibration`, as the full
     evaluation's dictionary (`build_metrics`), whose layout and definitions
     `lossbench.evaluate`'s docstring gives.

Every value that is not finite comes out as None, so the evaluate stage's JSON stays strict.
The tests check these functions against hand computations.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from lossbench.core.metric_registry import RunOutputs, computed_metrics
from lossbench.evaluate.calibration import no_calibration
from lossbench.io.evaluation import dead_by_share


def finite_or_none(value: Any) -> float | None:
    """`value` as a float, or None when it is missing, NaN or infinite."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def threshold_key(threshold: float) -> str:
    """The JSON key of a convergence threshold: 0.5 -> "50%", 0.725 -> "72.5%"."""
    return f"{round(float(threshold) * 100.0, 6):g}%"


def predicted_labels(scores: np.ndarray) -> np.ndarray:
    """The arg-max label of each score row, or -1 where the row holds a non-finite value.

    NumPy's argmax would pick the first NaN's index, which would credit a diverged model with
    "predictions" of one arbitrary class; -1 marks such a row as having no prediction.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"Scores must have shape (images, classes), got shape {scores.shape}.")
    finite_rows = np.all(np.isfinite(scores), axis=1)
    labels = np.full(scores.shape[0], -1, dtype=np.int64)
    if np.any(finite_rows):
        labels[finite_rows] = np.argmax(scores[finite_rows], axis=1)
    return labels


def _checked(labels, scores, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) as arrays, or a ValueError saying how they do not fit together."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    scores = np.asarray(scores)
    num_classes = len(class_names)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Scores of shape {scores.shape} do not match {labels.shape[0]} labels: expected "
            f"({labels.shape[0]}, {num_classes})."
        )
    if scores.shape[1] != num_classes:
        raise ValueError(
            f"The model returns {scores.shape[1]} scores per image but the data has "
            f"{num_classes} classes ({', '.join(class_names)}). Evaluate the model on the "
            "prepared data it was trained on."
        )
    if labels.size == 0:
        raise ValueError("There are no test images to evaluate: the prepared test set is empty.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"Labels must lie in 0..{num_classes - 1}; found {labels.min()}..{labels.max()}."
        )
    return labels, scores


def classification_metrics(
    labels: Sequence[int] | np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Accuracy, error, per-class accuracy and the confusion matrix of one set of scores.

    Args:
        labels: true class index of each image, shape (images,).
        scores: one row of class scores per image, shape (images, classes); probabilities
            or raw scores alike, since only the arg-max matters.
        class_names: the name of each class index, len == classes.

    Returns:
        {"accuracy", "error", "size", "correct", "non_finite_predictions",
         "per_class_accuracy": {name: fraction or None for a class with no images},
         "confusion_matrix": list of lists, rows true labels, columns predicted labels}.
        Rows of non-finite scores count as errors and are not in the confusion matrix.
        Also "top_predicted_class_share": the fraction of all images predicted as the most
        often predicted class (images without a prediction count in the denominator).
    """
    labels, scores = _checked(labels, scores, class_names)
    num_classes = len(class_names)
    predictions = predicted_labels(scores)
    correct = predictions == labels
    has_prediction = predictions >= 0
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels[has_prediction], predictions[has_prediction]), 1)

    per_class = {}
    for index, name in enumerate(class_names):
        in_class = labels == index
        # A class without test images (possible in tiny subsets) has no accuracy; null
        # says so, where 0 would claim the model got every one of them wrong.
        per_class[str(name)] = float(correct[in_class].mean()) if np.any(in_class) else None

    accuracy = float(correct.mean())
    predicted_counts = np.bincount(predictions[has_prediction], minlength=num_classes)
    return {
        "accuracy": accuracy,
        "error": 1.0 - accuracy,
        "size": int(labels.size),
        "correct": int(np.count_nonzero(correct)),
        "non_finite_predictions": int(np.count_nonzero(~has_prediction)),
        # The share of all test images given the most often predicted class: 1/classes for a
        # model that spreads its predictions evenly, 1.0 for one that always says one class.
        "top_predicted_class_share": float(predicted_counts.max() / labels.size),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def above_chance_p_value(correct: int, size: int, classes: int) -> float | None:
    """The p-value of an exact one-sided binomial test that a run beats chance.

    Args:
        correct: the number of test images predicted right.
        size: the number of test images (the run's own test set, which may be a subset).
        classes: the number of classes; chance is 1 / classes.

    Returns:
        P(X >= correct) for X ~ Binomial(size, 1 / classes) (scipy.stats.binomtest with
        alternative="greater"), or None without images or with fewer than two classes.
    """
    from scipy import stats

    if size < 1 or classes < 2:
        return None
    test = stats.binomtest(int(correct), int(size), 1.0 / classes, alternative="greater")
    return float(test.pvalue)


def convergence(history: Sequence[dict], thresholds: Iterable[float]) -> dict[str, dict]:
    """The first epoch whose validation accuracy reaches each threshold, and when.

    Args:
        history: the `epochs` list of `history.json`: dicts with at least "epoch",
            "val_accuracy" and "seconds" (that epoch's wall time).
        thresholds: validation accuracies, as fractions.

    Returns:
        {threshold_key(threshold): {"threshold", "epoch", "seconds"}}, where "seconds" is
        the training wall time summed over epochs 1..epoch. Both are None where the
        threshold was never reached; "seconds" is also None if an epoch's time is missing.
    """
    result = {}
    for threshold in thresholds:
        threshold = float(threshold)
        epoch = seconds = None
        elapsed = 0.0
        for record in history:
            epoch_seconds = finite_or_none(record.get("seconds"))
            # One epoch without a recorded time makes every later cumulative time unknown.
            if elapsed is not None:
                elapsed = None if epoch_seconds is None else elapsed + epoch_seconds
            accuracy = finite_or_none(record.get("val_accuracy"))
            if accuracy is not None and accuracy >= threshold:
                epoch, seconds = int(record["epoch"]), elapsed
                break
        result[threshold_key(threshold)] = {"threshold": threshold, "epoch": epoch, "seconds": seconds}
    return result


def history_summary(history: Sequence[dict]) -> dict[str, Any]:
    """The last epoch's running accuracy and the best and final validation accuracies.

    Returns {"running_accuracy", "final_val_accuracy", "best_val_accuracy", "best_val_epoch"};
    a value is None where the history has no finite one (an empty or diverged history).
    `running_accuracy` is what Keras logged as "accuracy" during the last epoch: the mean
    over that epoch's batches, on augmented images, while the weights were still changing.
    It is not the model's accuracy on the training images (`build_metrics` measures that).
    The best epoch is the earliest one reaching the maximum, so ties favour faster training.
    """
    last = history[-1] if history else {}
    best_accuracy, best_epoch = None, None
    for record in history:
        accuracy = finite_or_none(record.get("val_accuracy"))
        if accuracy is not None and (best_accuracy is None or accuracy > best_accuracy):
            best_accuracy, best_epoch = accuracy, int(record["epoch"])
    return {
        "running_accuracy": finite_or_none(last.get("accuracy")),
        "final_val_accuracy": finite_or_none(last.get("val_accuracy")),
        "best_val_accuracy": best_accuracy,
        "best_val_epoch": best_epoch,
    }


def mean_loss(loss_function, labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The mean over images of `loss_function(labels, scores)`, or None if not finite."""
    from keras import ops

    per_image = ops.convert_to_numpy(
        loss_function(np.asarray(labels, dtype=np.int32), np.asarray(scores, dtype=np.float32))
    )
    return finite_or_none(np.mean(np.asarray(per_image, dtype=np.float64)))


def activation_summary(batches: Iterable[np.ndarray]) -> dict[str, Any]:
    """How much of a ReLU layer is active, from its output batches (channels last).

    Returns {"final_conv_active_fraction": positive activations / all activations,
    "final_conv_dead_channels": channels positive nowhere in any batch,
    "final_conv_channels": the channel count}. The first two are None when any activation
    is not finite or there are no activations.
    """
    positive = total = 0
    ever_positive = None
    finite = True
    for batch in batches:
        batch = np.asarray(batch)
        if batch.ndim < 2:
            raise ValueError(f"Activations must have a channel axis last, got shape {batch.shape}.")
        finite = finite and bool(np.all(np.isfinite(batch)))
        is_positive = batch > 0
        positive += int(np.count_nonzero(is_positive))
        total += int(is_positive.size)
        channel_positive = np.any(is_positive.reshape(-1, batch.shape[-1]), axis=0)
        ever_positive = channel_positive if ever_positive is None else ever_positive | channel_positive
    channels = None if ever_positive is None else int(ever_positive.size)
    if not finite or total == 0:
        return {"final_conv_active_fraction": None, "final_conv_dead_channels": None,
                "final_conv_channels": channels}
    return {
        "final_conv_active_fraction": positive / total,
        "final_conv_dead_channels": int(np.count_nonzero(~ever_positive)),
        "final_conv_channels": channels,
    }


NO_FINAL_CONV = {"final_conv_active_fraction": None, "final_conv_dead_channels": None,
                 "final_conv_channels": None}

def final_layer_dead(active_fraction: float | None, dead_layer_share: float) -> bool | None:
    """Whether the final convolution counts as dead, from its active (positive) fraction.

    A ReLU outputs exactly 0 wherever it is not positive, so 1 - `active_fraction` is the
    fraction of its activations that are zero. The layer is dead when that fraction is at
    least `dead_layer_share`; None when the fraction is unknown (no conv_9, or non-finite
    activations of a diverged run).
    """
    return dead_by_share(active_fraction, dead_layer_share)


def training_fields(history: Sequence[dict], test_accuracy: float,
                    train_sample: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Training accuracy measured on un-augmented training images, and the running one.

    `train_sample` is (labels, score rows) of the training images evaluate predicted without
    augmentation; without it (or with no image in it) the measured values are None.
    Returns {"train_accuracy", "train_accuracy_images", "generalization_gap" (train minus
    test accuracy, both measured the same way), "running_accuracy" (Keras's, see
    `history_summary`)}.
    """
    train_accuracy = images = None
    if train_sample is not None and len(train_sample[0]) > 0:
        labels = np.asarray(train_sample[0]).reshape(-1).astype(np.int64)
        train_accuracy = float(np.mean(predicted_labels(train_sample[1]) == labels))
        images = int(labels.size)
    return {
        "train_accuracy": train_accuracy,
        "train_accuracy_images": images,
        "generalization_gap": None if train_accuracy is None else train_accuracy - test_accuracy,
        "running_accuracy": history_summary(history)["running_accuracy"],
    }


def final_conv_fields(final_conv: dict[str, Any] | None, dead_layer_share: float) -> dict[str, Any]:
    """The `final_conv_*` values (null without a measurement) and `final_layer_dead`."""
    final_conv = {**NO_FINAL_CONV, **(final_conv or {})}
    active = finite_or_none(final_conv["final_conv_active_fraction"])
    return {
        "final_conv_active_fraction": active,
        "final_conv_dead_channels": final_conv["final_conv_dead_channels"],
        "final_conv_channels": final_conv["final_conv_channels"],
        "final_layer_dead": final_layer_dead(active, dead_layer_share),
    }


def _setup(run_info: dict, evaluation_backend: str | None) -> dict[str, Any]:
    """Where and how the run was trained (from its run.json) and evaluated."""
    return {
        "device": run_info.get("device"),
        "backend": run_info.get("backend"),
        "precision": run_info.get("precision"),
        "validation": run_info.get("validation"),
        "train_size": run_info.get("train_size"),
        "validation_size": run_info.get("validation_size"),
        "versions": run_info.get("versions", {}),
        "command": run_info.get("command"),
        "evaluation_backend": evaluation_backend,
    }


def registered_metrics(labels, scores, class_names: Sequence[str], output_activation: str,
                       history: Sequence[dict], run_info: dict) -> dict[str, Any]:
    """The values of the metrics registered with a function, each None where not finite."""
    outputs = RunOutputs(np.asarray(labels).reshape(-1), np.asarray(scores), tuple(map(str, class_names)),
                         output_activation, tuple(history), dict(run_info))
    return {name: finite_or_none(value) for name, value in computed_metrics(outputs).items()}


def build_metrics(
    loss_name: str, seed: int, labels: np.ndarray, scores: np.ndarray,
    class_names: Sequence[str], test_loss: float | None, history: Sequence[dict],
    run_info: dict, thresholds: Iterable[float],
    *,
    collapse_share: float,
    dead_layer_share: float,
    model_parameters: int | None = None,
    evaluation_backend: str | None = None,
    final_conv: dict[str, Any] | None = None,
    train_sample: tuple[np.ndarray, np.ndarray] | None = None,
    calibration: dict[str, Any] | None = None,
    output_activation: str = "softmax",
) -> dict[str, Any]:
    """Assemble the full evaluation's dictionary (layout in `lossbench.evaluate`'s docstring).

    A run is `collapsed` when at least `collapse_share` of the test images get one class
    (`evaluate.collapse_share` in params.yaml), whatever the cause. `train_sample` is
    (labels, scores) of the training images predicted without augmentation; without it the
    measured training accuracy and the gap are null. `final_conv` is `activation_summary`'s
    dictionary (or `final_conv_activity`'s); without it the `final_conv_*` values and
    `final_layer_dead` are null. The layer is dead at `dead_layer_share` zeros or more.
    `calibration`: `calibration_fields`'s dictionary (None: nulls). The metrics registered with
    a function (`lossbench.core.metric_registry`) follow; `output_activation` is the loss's.
    """
    classification = classification_metrics(labels, scores, class_names)
    from_history = history_summary(history)
    diverged_epoch = run_info.get("diverged_epoch")
    return {
        "loss": loss_name,
        "seed": int(seed),
        "test_accuracy": classification["accuracy"],
        "test_error": classification["error"],
        "test_loss": finite_or_none(test_loss),
        "test_size": classification["size"],
        "above_chance_p_value": above_chance_p_value(
            classification["correct"], classification["size"], len(class_names)),
        "non_finite_predictions": classification["non_finite_predictions"],
        "top_predicted_class_share": classification["top_predicted_class_share"],
        "collapsed": classification["top_predicted_class_share"] >= collapse_share,
        **training_fields(history, classification["accuracy"], train_sample),
        **{key: from_history[key] for key in ("final_val_accuracy", "best_val_accuracy", "best_val_epoch")},
        "train_seconds": finite_or_none(run_info.get("train_seconds")),
        "epochs_planned": run_info.get("epochs_planned"),
        "epochs_completed": run_info.get("epochs_completed", len(history)),
        "diverged": bool(run_info.get("diverged", False)),
        "diverged_epoch": None if diverged_epoch is None else int(diverged_epoch),
        "model_parameters": model_parameters,
        "initial_output_gradient_scale": finite_or_none(run_info.get("initial_output_gradient_scale")),
        **final_conv_fields(final_conv, dead_layer_share),
        **(calibration or no_calibration()),
        **registered_metrics(labels, scores, class_names, output_activation, history, run_info),
        "convergence": convergence(history, thresholds),
        "per_class_accuracy": classification["per_class_accuracy"],
        "class_names": [str(name) for name in class_names],
        "confusion_matrix": classification["confusion_matrix"],
        "setup": _setup(run_info, evaluation_backend),
    }
