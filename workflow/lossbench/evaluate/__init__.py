"""The `evaluate` stage: measure one trained model, for one (loss, seed), on the test set.

In:  the trained model (`data/models/<loss>-seed<seed>.keras`, taking uint8 images and
     returning one score row per image), the prepared data (`lossbench.io.prepared.
     load_prepared`), the run's training log directory (`history.json`, `run.json`) and
     params.yaml's `evaluate:` section (batch size, convergence thresholds, collapse share,
     dead-layer share, training sample size, temperature fraction).
Out: two JSON files (both `cache: false`, so git tracks them and reviews need no cache) and,
     where asked for, the predictions (`data/predictions/<loss>-seed<seed>.npz`, in DVC's
     cache: `test_scores`, `test_labels`, `temperature_scores`, `temperature_labels`,
     `temperature_indices`, the score rows every number here is computed from):

     - the review metrics (`reports/metrics/<loss>-seed<seed>.json`, a plain output): a few
       flat numbers and nothing else, each rounded to 4 decimals (`lossbench.io.review`), read
       per run with `dvc metrics diff --targets reports/metrics`. They are not DVC
       `metrics:`, which would add a row per run to `dvc metrics show` and a column per run
       and number to `dvc exp show`; the study's one DVC metric is compare's headline.
       Booleans are written as 0/1 because DVC lists only numbers (`review_metrics`); run
       times are not here (they are in the full evaluation and `run.json`), so that a diff
       shows what a change did to the results, not how long it took:

       {"test_accuracy": 0.53, "test_loss": 0.947, "train_accuracy": 0.55,
        "best_val_accuracy": 0.54, "best_val_epoch": 97, "epochs_completed": 100,
        "collapsed": 0, "diverged": 0, "test_ece": 0.08, "test_nll": 1.41,
        "test_brier": 0.62, "test_ece_after_temperature": 0.02}

     - the full evaluation (`reports/evaluation/<loss>-seed<seed>.json`, a plain output),
       which `lossbench compare`, `figures` and `report` read:

     {
       "loss": "hinge", "seed": 0,
       "test_accuracy": 0.53, "test_error": 0.47, "test_loss": 0.947, "test_size": 10000,
       "above_chance_p_value": 1.2e-300, "non_finite_predictions": 0,
       "top_predicted_class_share": 0.13, "collapsed": false,
       "train_accuracy": 0.57, "train_accuracy_images": 2000, "generalization_gap": 0.04,
       "running_accuracy": 0.55,
       "final_val_accuracy": 0.53, "best_val_accuracy": 0.54, "best_val_epoch": 97,
       "train_seconds": 26800.0, "epochs_planned": 100, "epochs_completed": 100,
       "diverged": false, "diverged_epoch": null, "model_parameters": 1376148,
       "initial_output_gradient_scale": 0.004,
       "final_conv_active_fraction": 0.31, "final_conv_dead_channels": 0,
       "final_conv_channels": 10, "final_layer_dead": false,
       "test_ece": 0.08, "test_nll": 1.41, "test_brier": 0.62, "temperature": 1.6,
       "test_ece_after_temperature": 0.02, "test_nll_after_temperature": 1.32,
       "test_brier_after_temperature": 0.60, "calibration": {...},
       "convergence": {"50%": {"threshold": 0.5, "epoch": 61, "seconds": 16400.2}, ...},
       "per_class_accuracy": {"airplane": 0.61, ...},
       "class_names": ["airplane", ...],
       "confusion_matrix": [[612, 20, ...], ...],
       "setup": {"device": ..., "backend": ..., "precision": ..., "validation": "test",
                 "train_size": 50000, "validation_size": 10000, "versions": {...},
                 "command": ..., "evaluation_backend": "tensorflow", "label_noise": 0.0}
     }

     `confusion_matrix[i][j]` counts test images of true label i predicted as label j.
     This file is not a DVC metric: its strings (device, command) and per-class numbers
     would fill `dvc metrics diff` with rows that say nothing about the change under review.

Definitions:
- `above_chance_p_value`: an exact one-sided binomial test (scipy.stats.binomtest) of the
  correct count (test_accuracy x test_size) against p = 1 / classes on the run's own test set.
- `train_accuracy` is the final model's accuracy on `train_accuracy_images` training images
  predicted without augmentation (`training_sample`: `evaluate.train_sample` images, 2000 by
  default, null = all, drawn with a fixed seed from the images the run trained on; null when
  those are unknown). `generalization_gap` is `train_accuracy - test_accuracy`, both measured
  the same way. `running_accuracy` is what Keras logged as accuracy during the last epoch
  (on augmented images, averaged over batches while the weights changed), as the paper's
  Keras 1 reported "training accuracy"; it is not the model's accuracy on training images.
- `initial_output_gradient_scale` is copied from run.json where train recorded it (mean
  |dL/d output| at initialisation), else null.
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
  `final_conv_channels` is its channel count. `final_layer_dead` is true when at least
  `evaluate.dead_layer_share` (0.99) of the activations are zero (1 - active fraction), null
  when the fraction is unknown. Why: a ReLU unit whose input is negative for every image
  outputs 0 and gets no gradient, so it stays dead. When (nearly) all of `conv_9`'s outputs are
  0, the Dense layer sees (nearly) the same input for every image and predicts one class for
  (nearly) all of them, so the run sits at chance whatever the loss. This happens to the paper's
  architecture (ReLU on the class-score layer, no batch normalisation) under SGD, notably in
  short or narrow runs; `lossbench compare` counts such runs and `lossbench report` names them
  instead of blaming the loss.
  `conv_9` is looked up in the model and in the models nested in it (the training model
  wraps the classifier behind `Rescaling` and the augmentation); when it is nested, it is
  fed the images through the outer model's `Rescaling` (uint8 / 255 without one). All are
  null for a model with no layer named `conv_9`, and all but the channel count when any
  activation is not finite (a diverged run is reported as diverged, not as dead).
- `collapsed` is true when one class was predicted for at least `evaluate.collapse_share`
  (0.9) of the test images (`top_predicted_class_share`), whatever the cause: a dead final
  layer is one cause, a softmax saturated on one class another. Such a model says nothing
  about its loss; `lossbench compare` and the report count these runs and show the means
  with and without them.
- Calibration (`test_ece` ... `calibration`): expected calibration error (15 equal-width
  bins of top-label confidence), NLL and Brier score on the test set, and the same after
  temperature scaling fitted on training images, never test images; definitions, and which
  training images, in `lossbench.evaluate.calibration`. Linear-output losses are measured on the
  softmax of their scores (`calibration.probabilities` says so).
- `setup.label_noise` is the fraction of the prepared training labels that differ from the
  clean ones (`preprocess.label_noise`); test labels are always clean. Training accuracy
  and the temperature are measured against the labels training read.
- A metric registered with a function in `lossbench.core.metric_registry` is written after
  the calibration numbers under its own name (and in the review file when it says so).
- Every value that is not finite is written as null, so the file is strict JSON.

The numbers are computed by `lossbench.evaluate.metrics` from arrays (conv_9's activity by
`lossbench.evaluate.activations`); this module loads the model, runs it on the test images and the
training sample, reads the training logs and writes the two files.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lossbench.core.metric_registry import review_names
from lossbench.core.model import FINAL_CONVOLUTION_NAME
from lossbench.evaluate.activations import final_conv_activity
from lossbench.evaluate.calibration import calibration_fields
from lossbench.evaluate.metrics import build_metrics, mean_loss
from lossbench.evaluate.predictions import predict_run, write_predictions
from lossbench.io.atomic import write_json
from lossbench.io.evaluation import final_layer_dead
from lossbench.io.review import review_number

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The review metrics file.
# ---------------------------------------------------------------------------------------------


def review_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The flat, numbers-only subset of a run's metrics that DVC shows in review.

    Booleans become 0/1: `dvc metrics diff` silently leaves out values that are not numbers,
    so a run that newly collapses or diverges would otherwise not show up in the diff.
    Floats are rounded to 4 decimals (`lossbench.io.review`); missing values stay null (DVC
    shows them as "-"). The keys are the registry's review metrics
    (`lossbench.core.metric_registry.review_names`), in its order.
    """
    return {key: review_number(metrics.get(key)) for key in review_names()}


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


def load_model(model_path: str | os.PathLike, expected_sha256: str | None = None):
    """Load a trained `.keras` model for inference (no optimizer, no loss), refusing one whose
    bytes are not those train recorded (`expected_sha256`, run.json's `model_sha256`; None for
    logs written before train recorded it) or that Keras cannot read."""
    import zipfile

    import keras

    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(
            f"The model {model_path} does not exist. Run `lossbench train` for this loss and "
            "seed first (or `dvc repro` / `snakemake`)."
        )
    restore = (f"Restore it (`dvc checkout {model_path}` where DVC has it) or train the run "
               f"again (`snakemake --forcerun {model_path}`, or `dvc repro --force` its train stage).")
    if expected_sha256 is not None:
        from lossbench.io.digests import file_sha256

        if file_sha256(model_path) != expected_sha256:
            raise ValueError(f"{model_path} is not the model train wrote (its SHA-256 differs "
                             f"from run.json's model_sha256): it changed after training. {restore}")
    # The training model holds lossbench's augmentation layers; importing their module
    # registers them with Keras so that the saved model can be rebuilt.
    for module in ("lossbench.core.augment", "lossbench.core.losses"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
    try:
        return keras.saving.load_model(model_path, compile=False)
    except (zipfile.BadZipFile, ValueError, OSError, KeyError) as error:
        raise ValueError(f"{model_path} cannot be read as a Keras model ({type(error).__name__}: "
                         f"{str(error)[:200]}): it is damaged or truncated. {restore}") from error


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
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, predictions) of an in-memory model; `run` adds the reading of files around
    this. The predictions are `predict_run`'s arrays, with the test and temperature labels."""
    import keras

    from lossbench.core.losses import get_loss

    spec = get_loss(loss_name)
    predictions = predict_run(evaluate_params, seed, model, test_images, run_info, train_images, train_labels)
    scores = predictions["test_scores"]
    predictions["test_labels"] = np.asarray(test_labels)
    train_sample = None
    if "train_sample_indices" in predictions:
        train_sample = (train_labels[predictions["train_sample_indices"]], predictions["train_sample_scores"])
    if "temperature_indices" in predictions:
        predictions["temperature_labels"] = train_labels[predictions["temperature_indices"]]
    calibration = calibration_fields(
        scores, test_labels, spec.output_activation, predictions.get("temperature_scores"),
        predictions.get("temperature_labels"), predictions.get("temperature_split"))
    metrics = build_metrics(
        loss_name,
        seed,
        test_labels,
        scores,
        class_names,
        test_loss=mean_loss(spec.function, test_labels, scores),
        history=history,
        run_info=run_info,
        thresholds=evaluate_params["convergence_thresholds"],
        model_parameters=int(model.count_params()),
        evaluation_backend=keras.backend.backend(),
        final_conv=final_conv_activity(model, test_images, int(evaluate_params["batch_size"])),
        collapse_share=evaluate_params["collapse_share"],
        train_sample=train_sample,
        dead_layer_share=evaluate_params["dead_layer_share"],
        calibration=calibration,
        output_activation=spec.output_activation,
    )
    return metrics, predictions


def _check_same_run(run_info: dict, loss_name: str, seed: int, log_dir) -> None:
    """Stop when the training logs belong to another run than `--loss` / `--seed`.

    The CLI wires model, logs and output by name; a mismatch would silently attribute one
    run's numbers to another.
    """
    for key, expected in (("loss", loss_name), ("seed", seed)):
        if key in run_info and run_info[key] != expected:
            raise ValueError(
                f"{Path(log_dir) / 'run.json'} belongs to {key} {run_info[key]!r}, but "
                f"--{key} is {expected!r}. Pass the log directory of the same run."
            )


def _warn_if_uninformative(metrics: dict[str, Any], loss_name: str, seed: int) -> None:
    """Warn when the run's accuracy says nothing about its loss: a dead final layer, or
    one class predicted for (nearly) every image for another reason."""
    if final_layer_dead(metrics):
        active = metrics.get("final_conv_active_fraction")
        layer = FINAL_CONVOLUTION_NAME
        zeros = (f"every channel of {layer} is zero on every test image" if active is None
                 else f"{100.0 * (1.0 - active):.2f} % of {layer}'s activations on the "
                 "test images are zero")
        logger.warning(
            "%s seed %d: %s (a dead final layer), so the model predicts (nearly) the same "
            "class for every image: its accuracy says nothing about the loss.",
            loss_name, seed, zeros,
        )
    elif metrics["collapsed"]:
        logger.warning(
            "%s seed %d collapsed: %.0f %% of the test images get one class, so its accuracy "
            "says nothing about the loss.",
            loss_name, seed, 100 * metrics["top_predicted_class_share"],
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
    predictions_output: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The CLI's entry point: evaluate one (loss, seed) run and write its metrics JSON.

    Writes the full evaluation to `output` and, when given, the review metrics
    (`review_metrics`) to `metrics_output` and the score rows (`write_predictions`) to
    `predictions_output`. Returns the full evaluation's dictionary.
    """
    from lossbench.core.losses import get_loss
    from lossbench.io.prepared import load_prepared

    get_loss(loss_name)  # fail on an unknown loss name before loading anything large
    history, run_info = read_training_logs(log_dir)
    _check_same_run(run_info, loss_name, seed, log_dir)
    data = load_prepared(data_dir)
    model = load_model(model_path, run_info.get("model_sha256"))
    metrics, predictions = evaluate_model(
        evaluate_params,
        loss_name,
        seed,
        model,
        data.test_images,
        data.test_labels,
        data.class_names,
        history,
        run_info,
        train_images=data.train_images,
        train_labels=data.train_labels,
    )
    metrics["setup"]["label_noise"] = data.label_noise_share
    write_json(output, metrics)
    if metrics_output is not None:
        write_json(metrics_output, review_metrics(metrics))
    if predictions_output is not None:
        write_predictions(predictions_output, predictions)
    logger.info(
        "%s seed %d: test accuracy %.4f on %d images%s; metrics in %s.",
        loss_name, seed, metrics["test_accuracy"], metrics["test_size"],
        " (diverged run)" if metrics["diverged"] else "", output,
    )
    _warn_if_uninformative(metrics, loss_name, seed)
    return metrics
