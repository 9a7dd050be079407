"""The `evaluate` stage: measure one trained model, for one (loss, seed), on the test set.

In:  the trained model (`data/models/<loss>-seed<seed>.keras`, taking uint8 images and
     returning one score row per image), the prepared data (`lossbench.prepared.
     load_prepared`), the run's training log directory (`history.json`, `run.json`) and
     `evaluate.batch_size` / `evaluate.convergence_thresholds` from params.yaml.
Out: two JSON files (both `cache: false`, so git tracks them and reviews need no cache):

     - the review metrics (`reports/metrics/<loss>-seed<seed>.json`, the stage's DVC
       `metrics:`): a few flat numbers and nothing else, so that `dvc metrics diff` and
       `dvc exp show` stay readable. Booleans are written as 0/1 because DVC lists only
       numbers (`review_metrics`):

       {"test_accuracy": 0.53, "test_loss": 0.947, "train_accuracy": 0.55,
        "best_val_accuracy": 0.54, "best_val_epoch": 97, "epochs_completed": 100,
        "collapsed": 0, "diverged": 0, "train_seconds": 26800.0}

     - the full evaluation (`reports/evaluation/<loss>-seed<seed>.json`, a plain output),
       which `lossbench compare`, `figures` and `report` read:

     {
       "loss": "hinge", "seed": 0,
       "test_accuracy": 0.53, "test_error": 0.47, "test_loss": 0.947, "test_size": 10000,
       "non_finite_predictions": 0, "top_predicted_class_share": 0.13, "collapsed": false,
       "train_accuracy": 0.55, "generalization_gap": 0.02,
       "final_val_accuracy": 0.53, "best_val_accuracy": 0.54, "best_val_epoch": 97,
       "train_seconds": 26800.0, "epochs_planned": 100, "epochs_completed": 100,
       "diverged": false, "diverged_epoch": null, "model_parameters": 1376148,
       "final_conv_active_fraction": 0.31, "final_conv_dead_channels": 0,
       "final_conv_channels": 10,
       "convergence": {"50%": {"threshold": 0.5, "epoch": 61, "seconds": 16400.2}, ...},
       "per_class_accuracy": {"airplane": 0.61, ...},
       "class_names": ["airplane", ...],
       "confusion_matrix": [[612, 20, ...], ...],
       "setup": {"device": ..., "backend": ..., "precision": ..., "validation": "test",
                 "train_size": 50000, "validation_size": 10000, "versions": {...},
                 "command": ..., "evaluation_backend": "tensorflow"}
     }

     `confusion_matrix[i][j]` counts test images of true label i predicted as label j.
     This file is not a DVC metric: its strings (device, command) and per-class numbers
     would fill `dvc metrics diff` with rows that say nothing about the change under review.

Definitions:
- `train_accuracy` is the last epoch's training accuracy as Keras logged it during that epoch
  (on augmented images, averaged over the epoch's batches), as the paper's Keras 1 reported
  it. `generalization_gap` is `train_accuracy - test_accuracy`.
- Validation figures come from `history.json`. With `train.validation: test`, as in the
  paper, the "validation" set *is* the test set, so `best_val_accuracy` is an optimistic,
  test-selected number; `test_accuracy` is always that of the final model.
- `convergence` gives, per threshold, the first epoch whose validation accuracy reached it and
  the cumulative training wall time up to the end of that epoch (null if never reached).
- A diverged run (non-finite weights, hence non-finite scores) still gets a metrics file. An
  image whose score row holds any NaN or infinity has no prediction: it counts as an error
  (never as chance), is left out of the confusion matrix, and is counted in
  `non_finite_predictions`. `test_loss` is null when the mean loss is not finite.
- `final_conv_*` describe the last convolution, `conv_9`: the 1x1 convolution with one
  channel per class and a ReLU, whose output the Dense layer reads. They are measured on the
  evaluated test images (the model as evaluated: no augmentation). `final_conv_active_fraction`
  is the fraction of its activations (images x positions x channels) that are positive;
  `final_conv_dead_channels` counts the channels never positive on any test image;
  `final_conv_channels` is its channel count. Why: a ReLU unit whose input is negative for
  every image outputs 0 and gets no gradient, so it stays dead. When all of `conv_9`'s units
  are dead, the Dense layer sees the same all-zero input for every image and predicts one
  class for all of them, so the run sits at chance (a CE loss of ln 10 on CIFAR-10) whatever
  the loss. This happens to the paper's architecture (ReLU on the class-score layer, no batch
  normalisation) under SGD, notably in short or narrow runs; `lossbench compare` counts such
  runs and `lossbench report` names them instead of blaming the loss.
  `conv_9` is looked up in the model and in the models nested in it (the training model
  wraps the classifier behind `Rescaling` and the augmentation); when it is nested, it is
  fed the images through the outer model's `Rescaling` (uint8 / 255 without one). All three
  are null for a model with no layer named `conv_9`; the fraction and the dead-channel count
  are null when any activation is not finite (a diverged run is reported as diverged, not as
  dead).
- `collapsed` is true when one class was predicted for at least `evaluate.collapse_share`
  (0.9) of the test images (`top_predicted_class_share`), whatever the cause: a dead final
  layer is one cause, a softmax saturated on one class another. Such a model says nothing
  about its loss; `lossbench compare` and the report count these runs and show the means
  with and without them.
- Every value that is not finite is written as null, so the file is strict JSON.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from lossbench.atomic import write_json
from lossbench.model import FINAL_CONVOLUTION_NAME
from lossbench.runs import final_layer_dead

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Pure helpers: numbers in, numbers out. The tests check these against hand computations.
# ---------------------------------------------------------------------------------------------


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
        {"accuracy", "error", "size", "non_finite_predictions",
         "per_class_accuracy": {name: fraction or None for a class with no images},
         "confusion_matrix": list of lists, rows true labels, columns predicted labels}.
        Rows of non-finite scores count as errors and are not in the confusion matrix.
        Also "top_predicted_class_share": the fraction of all images predicted as the most
        often predicted class (images without a prediction count in the denominator).
    """
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
        "non_finite_predictions": int(np.count_nonzero(~has_prediction)),
        # The share of all test images given the most often predicted class: 1/classes for a
        # model that spreads its predictions evenly, 1.0 for one that always says one class.
        "top_predicted_class_share": float(predicted_counts.max() / labels.size),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
    }


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
    """The final training accuracy and the best and final validation accuracies.

    Returns {"train_accuracy", "final_val_accuracy", "best_val_accuracy", "best_val_epoch"};
    a value is None where the history has no finite one (an empty or diverged history).
    The best epoch is the earliest one reaching the maximum, so ties favour faster training.
    """
    last = history[-1] if history else {}
    best_accuracy, best_epoch = None, None
    for record in history:
        accuracy = finite_or_none(record.get("val_accuracy"))
        if accuracy is not None and (best_accuracy is None or accuracy > best_accuracy):
            best_accuracy, best_epoch = accuracy, int(record["epoch"])
    return {
        "train_accuracy": finite_or_none(last.get("accuracy")),
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


def build_metrics(
    loss_name: str,
    seed: int,
    labels: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    test_loss: float | None,
    history: Sequence[dict],
    run_info: dict,
    thresholds: Iterable[float],
    model_parameters: int | None = None,
    evaluation_backend: str | None = None,
    final_conv: dict[str, Any] | None = None,
    collapse_share: float = 0.9,
) -> dict[str, Any]:
    """Assemble the metrics file's dictionary (layout in the module docstring).

    A run is `collapsed` when at least `collapse_share` of the test images get one class
    (`evaluate.collapse_share` in params.yaml), whatever the cause.

    `final_conv` is `activation_summary`'s dictionary (or `final_conv_activity`'s); without
    it the three `final_conv_*` values are null.
    """
    final_conv = {**NO_FINAL_CONV, **(final_conv or {})}
    classification = classification_metrics(labels, scores, class_names)
    from_history = history_summary(history)
    train_accuracy = from_history["train_accuracy"]
    gap = None if train_accuracy is None else train_accuracy - classification["accuracy"]
    diverged_epoch = run_info.get("diverged_epoch")
    return {
        "loss": loss_name,
        "seed": int(seed),
        "test_accuracy": classification["accuracy"],
        "test_error": classification["error"],
        "test_loss": finite_or_none(test_loss),
        "test_size": classification["size"],
        "non_finite_predictions": classification["non_finite_predictions"],
        "top_predicted_class_share": classification["top_predicted_class_share"],
        "collapsed": classification["top_predicted_class_share"] >= collapse_share,
        "train_accuracy": train_accuracy,
        "generalization_gap": gap,
        "final_val_accuracy": from_history["final_val_accuracy"],
        "best_val_accuracy": from_history["best_val_accuracy"],
        "best_val_epoch": from_history["best_val_epoch"],
        "train_seconds": finite_or_none(run_info.get("train_seconds")),
        "epochs_planned": run_info.get("epochs_planned"),
        "epochs_completed": run_info.get("epochs_completed", len(history)),
        "diverged": bool(run_info.get("diverged", False)),
        "diverged_epoch": None if diverged_epoch is None else int(diverged_epoch),
        "model_parameters": model_parameters,
        "final_conv_active_fraction": finite_or_none(final_conv["final_conv_active_fraction"]),
        "final_conv_dead_channels": final_conv["final_conv_dead_channels"],
        "final_conv_channels": final_conv["final_conv_channels"],
        "convergence": convergence(history, thresholds),
        "per_class_accuracy": classification["per_class_accuracy"],
        "class_names": [str(name) for name in class_names],
        "confusion_matrix": classification["confusion_matrix"],
        "setup": {
            "device": run_info.get("device"),
            "backend": run_info.get("backend"),
            "precision": run_info.get("precision"),
            "validation": run_info.get("validation"),
            "train_size": run_info.get("train_size"),
            "validation_size": run_info.get("validation_size"),
            "versions": run_info.get("versions", {}),
            "command": run_info.get("command"),
            "evaluation_backend": evaluation_backend,
        },
    }


# The keys of the review metrics file, in the order written (see the module docstring).
REVIEW_METRICS = (
    "test_accuracy",
    "test_loss",
    "train_accuracy",
    "best_val_accuracy",
    "best_val_epoch",
    "epochs_completed",
    "collapsed",
    "diverged",
    "train_seconds",
)


def review_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The flat, numbers-only subset of a run's metrics that DVC shows in review.

    Booleans become 0/1: `dvc metrics diff` silently leaves out values that are not numbers,
    so a run that newly collapses or diverges would otherwise not show up in the diff.
    Missing values stay null (DVC shows them as "-").
    """
    flat = {}
    for key in REVIEW_METRICS:
        value = metrics.get(key)
        flat[key] = int(value) if isinstance(value, bool) else value
    return flat


# ---------------------------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------------------------


def read_training_logs(log_dir: str | os.PathLike) -> tuple[list[dict], dict]:
    """(history epochs, run information) from a training log directory."""
    log_dir = Path(log_dir)
    files = {name: log_dir / name for name in ("history.json", "run.json")}
    for name, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {log_dir} is not a finished training log directory. Run "
                "`lossbench train` for this loss and seed first (or `dvc repro` / `snakemake`)."
            )
    try:
        # history.json may hold NaN for a diverged epoch; Python's json reads NaN tokens.
        history = json.loads(files["history.json"].read_text())["epochs"]
        run_info = json.loads(files["run.json"].read_text())
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f"The training logs in {log_dir} are not in the expected format ({error}). "
            "Rerun `lossbench train` for this loss and seed to rewrite them."
        ) from error
    return list(history), dict(run_info)


def load_model(model_path: str | os.PathLike):
    """Load a trained `.keras` model for inference (no optimizer, no loss)."""
    import keras

    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(
            f"The model {model_path} does not exist. Run `lossbench train` for this loss and "
            "seed first (or `dvc repro` / `snakemake`)."
        )
    # The training model holds lossbench's augmentation layers; importing their module
    # registers them with Keras so that the saved model can be rebuilt.
    for module in ("lossbench.augment", "lossbench.losses"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
    return keras.saving.load_model(model_path, compile=False)


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


# The last convolution, named by the model that builds it.
FINAL_CONV_LAYER = FINAL_CONVOLUTION_NAME


def find_layer(model, name: str):
    """(the model holding the layer called `name`, the layer), searching nested models.

    Looks at `model`'s own layers first, then depth first into layers that hold layers
    (a nested Functional model or a Sequential). Returns (None, None) when there is none.
    """
    layers = list(getattr(model, "layers", None) or [])
    for layer in layers:
        if layer.name == name:
            return model, layer
    for layer in layers:
        if getattr(layer, "layers", None):
            owner, found = find_layer(layer, name)
            if found is not None:
                return owner, found
    return None, None


def _input_scaling(model) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) of `model`'s own Rescaling layer, or (1/255, 0) without exactly one."""
    import keras

    rescaling = [layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
    if len(rescaling) != 1:
        return np.float32(1.0 / 255.0), np.float32(0.0)
    layer = rescaling[0]
    return np.asarray(layer.scale, dtype=np.float32), np.asarray(layer.offset, dtype=np.float32)


def final_conv_activity(
    model, images: np.ndarray, batch_size: int, layer_name: str = FINAL_CONV_LAYER
) -> dict[str, Any]:
    """`activation_summary` of the layer `layer_name` (conv_9) on uint8 `images`.

    When the layer sits in `model` itself, the sub-model from `model`'s input takes the images
    as they are. When it sits in a nested model (the training model's classifier), the
    sub-model starts at that model's input and gets the images scaled as the outer model's
    `Rescaling` scales them (uint8 / 255 without one) as float32: the layers between, the
    augmentation, do nothing at inference. Returns all-null values when there is no such
    layer or no sub-model can be built to it (a subclassed model).
    """
    import keras
    from keras import ops

    if batch_size < 1:
        raise ValueError(f"evaluate.batch_size must be at least 1, got {batch_size}.")
    owner, layer = find_layer(model, layer_name)
    if layer is None:
        logger.info("The model has no layer %r: final_conv_* metrics are null.", layer_name)
        return dict(NO_FINAL_CONV)
    try:
        sub_model = keras.Model(owner.input, layer.output)
    except (AttributeError, ValueError, TypeError) as error:
        logger.warning("Cannot read the output of layer %r (%s): final_conv_* metrics are null.",
                       layer_name, error)
        return dict(NO_FINAL_CONV)
    scale, offset = _input_scaling(model)

    def batches():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            if owner is not model:
                batch = batch.astype(np.float32) * scale + offset
            yield ops.convert_to_numpy(sub_model(batch, training=False))

    return activation_summary(batches())


def evaluate_model(
    evaluate_params: dict,
    loss_name: str,
    seed: int,
    model,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str],
    history: Sequence[dict],
    run_info: dict,
) -> dict[str, Any]:
    """Metrics of an in-memory model; `run` adds the reading of files around this."""
    import keras

    from lossbench.losses import get_loss

    spec = get_loss(loss_name)
    batch_size = int(evaluate_params.get("batch_size", 500))
    scores = predict_scores(model, test_images, batch_size)
    return build_metrics(
        loss_name,
        seed,
        test_labels,
        scores,
        class_names,
        test_loss=mean_loss(spec.function, test_labels, scores),
        history=history,
        run_info=run_info,
        thresholds=evaluate_params.get("convergence_thresholds", [0.5, 0.7, 0.8]),
        model_parameters=int(model.count_params()),
        evaluation_backend=keras.backend.backend(),
        final_conv=final_conv_activity(model, test_images, batch_size),
        collapse_share=evaluate_params.get("collapse_share", 0.9),
    )


def run(
    evaluate_params: dict,
    loss_name: str,
    seed: int,
    data_dir: str | os.PathLike,
    model_path: str | os.PathLike,
    log_dir: str | os.PathLike,
    output: str | os.PathLike,
    metrics_output: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The CLI's entry point: evaluate one (loss, seed) run and write its metrics JSON.

    Writes the full evaluation to `output` and, when given, the review metrics
    (`review_metrics`) to `metrics_output`. Returns the full evaluation's dictionary.
    """
    from lossbench.losses import get_loss
    from lossbench.prepared import load_prepared

    get_loss(loss_name)  # fail on an unknown loss name before loading anything large
    history, run_info = read_training_logs(log_dir)
    # The CLI wires model, logs and output by name; a mismatch would silently attribute one
    # run's numbers to another, so it stops here.
    for key, expected in (("loss", loss_name), ("seed", seed)):
        if key in run_info and run_info[key] != expected:
            raise ValueError(
                f"{Path(log_dir) / 'run.json'} belongs to {key} {run_info[key]!r}, but "
                f"--{key} is {expected!r}. Pass the log directory of the same run."
            )
    data = load_prepared(data_dir)
    model = load_model(model_path)
    metrics = evaluate_model(
        evaluate_params,
        loss_name,
        seed,
        model,
        data.test_images,
        data.test_labels,
        data.class_names,
        history,
        run_info,
    )
    write_json(output, metrics)
    if metrics_output is not None:
        write_json(metrics_output, review_metrics(metrics))
    logger.info(
        "%s seed %d: test accuracy %.4f on %d images%s; metrics in %s.",
        loss_name, seed, metrics["test_accuracy"], metrics["test_size"],
        " (diverged run)" if metrics["diverged"] else "", output,
    )
    if metrics["collapsed"] and not final_layer_dead(metrics):
        logger.warning(
            "%s seed %d collapsed: %.0f %% of the test images get one class, so its accuracy "
            "says nothing about the loss.",
            loss_name, seed, 100 * metrics["top_predicted_class_share"],
        )
    if final_layer_dead(metrics):
        logger.warning(
            "%s seed %d: every channel of %s is dead (0 on every test image), so the model "
            "predicts one class for all images: its accuracy says nothing about the loss.",
            loss_name, seed, FINAL_CONV_LAYER,
        )
    return metrics
