"""The evaluate stage: metrics checked against hand computations, and one real run end to end.

The end-to-end test saves a tiny Keras model whose outputs are known in closed form (the
mean of each colour channel, scaled and put through a softmax) and evaluates it from files
laid out as the pipeline lays them out: a prepared-data directory, a `.keras` model and a
training log directory.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lossbench import evaluate
from lossbench.evaluate import metrics as run_metrics
from lossbench.pipeline.params import with_defaults

CLASS_NAMES = ["red", "green", "blue"]


def evaluate_params(**values) -> dict:
    """params.yaml's `evaluate:` section: `values`, and the schema's defaults for the rest."""
    return with_defaults("evaluate", values)


# The default shares that make a run collapsed and its conv_9 dead.
SHARES = {key: evaluate_params()[key] for key in ("collapse_share", "dead_layer_share")}


# ---------------------------------------------------------------------------------------------
# Pure helpers.
# ---------------------------------------------------------------------------------------------


def test_classification_metrics_match_a_hand_count():
    labels = [0, 0, 1, 1, 2, 2]
    scores = np.array([
        [0.9, 0.1, 0.0],        # true 0, predicted 0: right
        [0.2, 0.7, 0.1],        # true 0, predicted 1: wrong
        [0.1, 0.8, 0.1],        # true 1, predicted 1: right
        [0.1, 0.3, 0.6],        # true 1, predicted 2: wrong
        [0.0, 0.1, 0.9],        # true 2, predicted 2: right
        [np.nan, 0.1, 0.2],     # true 2, no finite prediction: an error, not in the matrix
    ])
    metrics = run_metrics.classification_metrics(labels, scores, CLASS_NAMES)
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["error"] == pytest.approx(3 / 6)
    assert metrics["size"] == 6 and metrics["correct"] == 3
    assert metrics["non_finite_predictions"] == 1
    assert metrics["per_class_accuracy"] == {"red": 0.5, "green": 0.5, "blue": 0.5}
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_a_model_that_predicts_one_class_is_marked_collapsed():
    labels = np.arange(20) % 2
    # 18 of 20 images (90 %) predicted as class 1: collapsed at the default share of 0.9.
    scores = np.tile([0.1, 0.8, 0.1], (20, 1))
    scores[:2] = [0.9, 0.05, 0.05]
    metrics = run_metrics.classification_metrics(labels, scores, CLASS_NAMES)
    assert metrics["top_predicted_class_share"] == pytest.approx(0.9)
    built = run_metrics.build_metrics("hinge", 0, labels, scores, CLASS_NAMES, 1.0, [], {}, [0.5], **SHARES)
    assert built["collapsed"] is True
    # 17 of 20 (85 %) is not collapsed; nor is a higher threshold met by 90 %.
    scores[2] = [0.9, 0.05, 0.05]
    assert run_metrics.build_metrics("hinge", 0, labels, scores, CLASS_NAMES, 1.0, [], {}, [0.5], **SHARES)[
        "collapsed"] is False
    scores[2] = [0.1, 0.8, 0.1]
    assert run_metrics.build_metrics(
        "hinge", 0, labels, scores, CLASS_NAMES, 1.0, [], {}, [0.5], **{**SHARES, "collapse_share": 0.95}
    )["collapsed"] is False


def test_all_nan_scores_count_as_wrong_not_as_class_zero():
    # np.argmax would return 0 for every NaN row and so credit class 0's images as right.
    scores = np.full((4, 3), np.nan)
    metrics = run_metrics.classification_metrics([0, 0, 1, 2], scores, CLASS_NAMES)
    assert metrics["accuracy"] == 0.0 and metrics["non_finite_predictions"] == 4
    assert np.sum(metrics["confusion_matrix"]) == 0


def test_a_class_without_images_has_no_accuracy():
    metrics = run_metrics.classification_metrics([0, 1], np.eye(3)[[0, 1]], CLASS_NAMES)
    assert metrics["per_class_accuracy"]["blue"] is None


@pytest.mark.parametrize(
    "labels, scores, message",
    [
        ([0, 1], np.zeros((2, 4)), "4 scores per image"),
        ([0, 5], np.zeros((2, 3)), "Labels must lie"),
        ([0, 1, 2], np.zeros((2, 3)), "do not match"),
    ],
)
def test_classification_metrics_reject_mismatched_inputs(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        run_metrics.classification_metrics(labels, scores, CLASS_NAMES)


HISTORY = [
    {"epoch": 1, "loss": 2.0, "accuracy": 0.30, "val_loss": 1.9, "val_accuracy": 0.40, "seconds": 10.0},
    {"epoch": 2, "loss": 1.5, "accuracy": 0.50, "val_loss": 1.4, "val_accuracy": 0.55, "seconds": 11.0},
    {"epoch": 3, "loss": 1.2, "accuracy": 0.60, "val_loss": 1.3, "val_accuracy": float("nan"), "seconds": 12.0},
    {"epoch": 4, "loss": 1.0, "accuracy": 0.70, "val_loss": 1.1, "val_accuracy": 0.72, "seconds": 13.0},
    {"epoch": 5, "loss": 0.9, "accuracy": 0.75, "val_loss": 1.2, "val_accuracy": 0.72, "seconds": 14.0},
]


def test_convergence_gives_first_epoch_and_cumulative_seconds():
    result = run_metrics.convergence(HISTORY, [0.5, 0.7, 0.8])
    assert result == {
        "50%": {"threshold": 0.5, "epoch": 2, "seconds": 21.0},
        "70%": {"threshold": 0.7, "epoch": 4, "seconds": 46.0},
        "80%": {"threshold": 0.8, "epoch": None, "seconds": None},
    }
    assert run_metrics.threshold_key(0.725) == "72.5%"


def test_convergence_seconds_unknown_after_an_epoch_without_a_time():
    history = [dict(HISTORY[0], seconds=None), HISTORY[1]]
    assert run_metrics.convergence(history, [0.5])["50%"] == {"threshold": 0.5, "epoch": 2, "seconds": None}


def test_history_summary_takes_last_running_and_earliest_best_validation():
    # Keras's logged "accuracy" is a running mean over augmented batches: it is kept under
    # its own name, not as the training accuracy.
    assert run_metrics.history_summary(HISTORY) == {
        "running_accuracy": 0.75, "final_val_accuracy": 0.72,
        "best_val_accuracy": 0.72, "best_val_epoch": 4,
    }
    diverged = HISTORY[:2] + [{"epoch": 3, "accuracy": float("nan"), "val_accuracy": None, "seconds": 1.0}]
    summary = run_metrics.history_summary(diverged)
    assert summary["running_accuracy"] is None and summary["final_val_accuracy"] is None
    assert summary["best_val_epoch"] == 2
    assert run_metrics.history_summary([])["best_val_accuracy"] is None


def test_mean_loss_uses_the_registry_function():
    from lossbench.core.losses import get_loss

    probabilities = np.array([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25]])
    labels = np.array([0, 2])
    expected = -(math.log(0.7) + math.log(0.25)) / 2
    result = run_metrics.mean_loss(get_loss("categorical_crossentropy").function, labels, probabilities)
    assert result == pytest.approx(expected, rel=1e-6)
    # The paper's hinge on softmax outputs: 0.9 + 0.1 (1 - p_true) for 10 classes; here 3
    # classes, so mean_k max(0, 1 - y_k p_k) = (2 + 1 - p_true) / 3.
    hinge = run_metrics.mean_loss(get_loss("hinge").function, labels, probabilities)
    assert hinge == pytest.approx(((3 - 0.7) / 3 + (3 - 0.25) / 3) / 2, rel=1e-6)
    nan_scores = np.full((2, 3), np.nan)
    assert run_metrics.mean_loss(get_loss("categorical_crossentropy").function, labels, nan_scores) is None


# ---------------------------------------------------------------------------------------------
# End to end: files in, metrics JSON out.
# ---------------------------------------------------------------------------------------------

GAIN = 10.0  # the Dense layer's weight: scores = softmax(GAIN * channel means in [0, 1])


def channel_images() -> tuple[np.ndarray, np.ndarray]:
    """Twelve uint8 images of solid colours and their labels (the brightest channel, mostly)."""
    colours = [
        (200, 10, 10), (180, 40, 20), (90, 100, 20), (220, 0, 0),   # red; the third looks green
        (10, 200, 10), (30, 150, 60), (20, 60, 40), (0, 250, 5),     # green; the third looks green too
        (10, 10, 200), (40, 20, 160), (160, 20, 100), (5, 5, 255),   # blue; the third looks red
    ]
    labels = np.repeat(np.arange(3, dtype=np.int32), 4)
    images = np.stack([np.full((32, 32, 3), colour, dtype=np.uint8) for colour in colours])
    return images, labels


def expected_probabilities(images: np.ndarray) -> np.ndarray:
    means = images.astype(np.float64).mean(axis=(1, 2)) / 255.0
    logits = GAIN * means
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def save_channel_model(path: Path, poison: bool = False) -> Path:
    """A .keras model from uint8 images to softmax(GAIN * per-channel mean); NaN if poisoned."""
    import keras

    inputs = keras.Input(shape=(32, 32, 3), dtype="uint8", name="images")
    features = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    features = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(3, activation="softmax", name="dense")(features)
    model = keras.Model(inputs, outputs)
    kernel = np.eye(3, dtype=np.float32) * GAIN
    if poison:
        kernel[0, 0] = np.nan  # what a diverged run's weights look like
    dense = model.get_layer("dense")
    dense.kernel.assign(kernel)
    dense.bias.assign(np.zeros(3, dtype=np.float32))
    model.save(path)
    return path


def write_prepared(directory: Path, images: np.ndarray, labels: np.ndarray,
                   train_labels: np.ndarray | None = None) -> Path:
    """A prepared-data directory as `lossbench preprocess` writes it (npy arrays, classes.json).

    Both splits hold `images`; the training split has `train_labels` where given.
    """
    from lossbench.io.prepared import Split
    from lossbench.io.prepared import write_prepared as write_arrays

    train = labels if train_labels is None else train_labels
    write_arrays(directory, {"train": Split(images, train), "test": Split(images, labels)},
                 CLASS_NAMES)
    return directory


def write_logs(directory: Path, loss="categorical_crossentropy", seed=7, diverged=False, **recorded) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "history.json").write_text(json.dumps({"epochs": HISTORY}, allow_nan=True))
    run_info = {
        "loss": loss, "seed": seed, "epochs_planned": 5, "epochs_completed": 5,
        "diverged": diverged, "diverged_epoch": 5 if diverged else None, "train_seconds": 60.0,
        "device": "CPU: test", "backend": "tensorflow", "precision": "float32",
        "validation": "test", "train_size": 12, "validation_size": 12,
        "versions": {"python": "3", "keras": "3"}, "command": "lossbench train ...", **recorded,
    }
    (directory / "run.json").write_text(json.dumps(run_info))
    return directory


# What the channel model predicts for `channel_images()`, worked out by hand below.
CHANNEL_PREDICTIONS = np.array([0, 0, 1, 0, 1, 1, 1, 1, 2, 2, 0, 2])


def test_evaluate_run_writes_hand_checked_metrics(tmp_path):
    images, labels = channel_images()
    # The training split: the same images, labelled as the model predicts them except the
    # first, so the model gets 11 of the 12 training images right.
    train_labels = CHANNEL_PREDICTIONS.copy()
    train_labels[0] = 2
    data_dir = write_prepared(tmp_path / "prepared", images, labels, train_labels)
    model_path = save_channel_model(tmp_path / "model.keras")
    log_dir = write_logs(tmp_path / "log", initial_output_gradient_scale=0.0125)
    output = tmp_path / "metrics" / "categorical_crossentropy-seed7.json"

    evaluate.run(
        evaluate_params(batch_size=5, convergence_thresholds=[0.5, 0.7, 0.8], train_sample=None),
        loss_name="categorical_crossentropy", seed=7, data_dir=data_dir,
        model_path=model_path, log_dir=log_dir, output=output,
    )
    text = output.read_text()
    assert "NaN" not in text  # strict JSON
    metrics = json.loads(text)

    probabilities = expected_probabilities(images)
    predictions = probabilities.argmax(axis=1)
    # By hand: image 2 (red, looks green) and image 10 (blue, looks red) are predicted wrong.
    assert list(predictions) == list(CHANNEL_PREDICTIONS)
    assert metrics["test_accuracy"] == pytest.approx(10 / 12)
    assert metrics["test_error"] == pytest.approx(2 / 12)
    assert metrics["test_size"] == 12 and metrics["non_finite_predictions"] == 0
    assert metrics["per_class_accuracy"] == pytest.approx({"red": 0.75, "green": 1.0, "blue": 0.75})
    assert metrics["confusion_matrix"] == [[3, 1, 0], [0, 4, 0], [1, 0, 3]]
    assert metrics["class_names"] == CLASS_NAMES
    expected_loss = -np.mean(np.log(probabilities[np.arange(12), labels]))
    assert metrics["test_loss"] == pytest.approx(expected_loss, rel=1e-5)
    # Training accuracy is measured on all 12 training images (train_sample: null), not read
    # from Keras's running accuracy (0.75 in the history), which is kept under its own name.
    assert metrics["train_accuracy"] == pytest.approx(11 / 12)
    assert metrics["train_accuracy_images"] == 12
    assert metrics["generalization_gap"] == pytest.approx(11 / 12 - 10 / 12)
    assert metrics["running_accuracy"] == 0.75
    # 10 of 12 right against chance 1/3: P(X >= 10) for X ~ Binomial(12, 1/3), by hand.
    by_hand = sum(math.comb(12, k) * (1 / 3) ** k * (2 / 3) ** (12 - k) for k in (10, 11, 12))
    assert metrics["above_chance_p_value"] == pytest.approx(by_hand, rel=1e-9)
    assert metrics["initial_output_gradient_scale"] == 0.0125
    assert metrics["best_val_accuracy"] == 0.72 and metrics["best_val_epoch"] == 4
    assert metrics["convergence"]["70%"] == {"threshold": 0.7, "epoch": 4, "seconds": 46.0}
    assert metrics["train_seconds"] == 60.0 and metrics["epochs_completed"] == 5
    assert metrics["diverged"] is False and metrics["model_parameters"] == 12
    # This model has no conv_9: the final-layer metrics are null, and evaluation goes on.
    assert metrics["final_conv_active_fraction"] is None
    assert metrics["final_conv_dead_channels"] is None and metrics["final_conv_channels"] is None
    assert metrics["final_layer_dead"] is None
    assert metrics["setup"]["device"] == "CPU: test" and metrics["setup"]["validation"] == "test"
    assert metrics["loss"] == "categorical_crossentropy" and metrics["seed"] == 7
    assert not list(output.parent.glob(".*.tmp"))  # no temporary file left behind


def test_a_diverged_model_still_gets_honest_metrics(tmp_path):
    images, labels = channel_images()
    data_dir = write_prepared(tmp_path / "prepared", images, labels)
    model_path = save_channel_model(tmp_path / "model.keras", poison=True)
    log_dir = write_logs(tmp_path / "log", loss="hinge", seed=0, diverged=True)
    metrics = evaluate.run(
        evaluate_params(batch_size=500, convergence_thresholds=[0.5]), loss_name="hinge", seed=0,
        data_dir=data_dir, model_path=model_path, log_dir=log_dir, output=tmp_path / "m.json",
    )
    assert metrics["diverged"] is True and metrics["diverged_epoch"] == 5
    assert metrics["test_accuracy"] == 0.0 and metrics["non_finite_predictions"] == 12
    assert metrics["test_loss"] is None
    # No image right: nothing is above chance (P(X >= 0) = 1), and no gradient scale recorded.
    assert metrics["above_chance_p_value"] == pytest.approx(1.0)
    assert metrics["initial_output_gradient_scale"] is None
    assert json.loads((tmp_path / "m.json").read_text())["test_accuracy"] == 0.0


def test_evaluate_run_refuses_mismatched_or_missing_inputs(tmp_path):
    images, labels = channel_images()
    data_dir = write_prepared(tmp_path / "prepared", images, labels)
    model_path = save_channel_model(tmp_path / "model.keras")
    log_dir = write_logs(tmp_path / "log", loss="hinge", seed=0)
    arguments = dict(data_dir=data_dir, model_path=model_path, output=tmp_path / "m.json")
    parameters = evaluate_params(batch_size=500, convergence_thresholds=[0.5])
    with pytest.raises(ValueError, match="belongs to loss 'hinge'"):
        evaluate.run(parameters, loss_name="squared_hinge", seed=0, log_dir=log_dir, **arguments)
    with pytest.raises(FileNotFoundError, match="lossbench train"):
        evaluate.run(parameters, loss_name="hinge", seed=0, log_dir=tmp_path / "absent", **arguments)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate.run(parameters, loss_name="hinge", seed=0, log_dir=log_dir,
                     data_dir=data_dir, model_path=tmp_path / "absent.keras", output=tmp_path / "m.json")
    with pytest.raises(ValueError, match="Unknown loss"):
        evaluate.run(parameters, loss_name="no_such_loss", seed=0, log_dir=log_dir, **arguments)
    assert not (tmp_path / "m.json").exists()


def test_a_model_changed_after_training_or_damaged_is_refused_with_the_way_back(tmp_path):
    """Issue 31, items 2 and 6: weights edited in place (size and time kept) were evaluated as
    if trained; a truncated model said "File not found" and a damaged one gave a BadZipFile
    traceback."""
    from lossbench.io.digests import file_sha256

    images, labels = channel_images()
    data_dir = write_prepared(tmp_path / "prepared", images, labels)
    model_path = save_channel_model(tmp_path / "model.keras")
    log_dir = write_logs(tmp_path / "log", loss="hinge", seed=0, model_sha256=file_sha256(model_path))
    arguments = dict(loss_name="hinge", seed=0, data_dir=data_dir, model_path=model_path,
                     log_dir=log_dir, output=tmp_path / "m.json")
    parameters = evaluate_params(batch_size=500, convergence_thresholds=[0.5])
    evaluate.run(parameters, **arguments)  # the model train recorded: evaluated
    edited = bytearray(model_path.read_bytes())
    edited[len(edited) // 2] ^= 0xFF  # one byte flipped, the size kept
    model_path.write_bytes(bytes(edited))
    (tmp_path / "m.json").unlink()
    with pytest.raises(ValueError, match="is not the model train wrote .*`dvc checkout "):
        evaluate.run(parameters, **arguments)
    assert not (tmp_path / "m.json").exists()
    unrecorded = write_logs(tmp_path / "old-log", loss="hinge", seed=0)  # logs from before the digest
    for damage in (bytes(edited), bytes(edited[: len(edited) // 3])):
        model_path.write_bytes(damage)
        with pytest.raises(ValueError, match="cannot be read as a Keras model .* damaged or truncated"):
            evaluate.run(parameters, **dict(arguments, log_dir=unrecorded))


# ---------------------------------------------------------------------------------------------
# The final convolution's activity: a dead class-score layer is detected.
# ---------------------------------------------------------------------------------------------


def test_activation_summary_by_hand():
    # Two batches of (images, positions, channels=3); channel 2 is never positive.
    first = np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]])
    second = np.array([[[0.0, 2.0, 0.0], [3.0, 0.0, 0.0]]])
    result = run_metrics.activation_summary([first, second])
    assert result == {"final_conv_active_fraction": 3 / 12, "final_conv_dead_channels": 1,
                      "final_conv_channels": 3}
    dead = run_metrics.activation_summary([np.zeros((4, 2, 2, 3))])
    assert dead["final_conv_active_fraction"] == 0.0 and dead["final_conv_dead_channels"] == 3
    # NaN activations (a diverged run) are not "dead": the values are unknown.
    diverged = run_metrics.activation_summary([np.full((2, 3), np.nan)])
    assert diverged == {"final_conv_active_fraction": None, "final_conv_dead_channels": None,
                        "final_conv_channels": 3}
    assert evaluate.final_layer_dead({"final_conv_channels": 3, "final_conv_dead_channels": 3})
    assert not evaluate.final_layer_dead({"final_conv_channels": 3, "final_conv_dead_channels": 2})
    assert not evaluate.final_layer_dead({"final_conv_channels": None, "final_conv_dead_channels": None})
    assert not evaluate.final_layer_dead({})


THRESHOLD = 0.5  # conv_9 = relu(pixel - THRESHOLD) per colour channel, pixels scaled to [0, 1]


def save_conv9_model(path: Path, bias: float = -THRESHOLD, nested: bool = True) -> Path:
    """A .keras model shaped like the training model, with a conv_9 computed in closed form.

    nested: uint8 images -> Rescaling -> augmentation -> classifier model (conv_9 -> flatten
    -> dense -> output), as `lossbench train` builds it. Otherwise conv_9 follows the
    Rescaling directly in one model. conv_9 is a 1x1 convolution with identity kernel and
    bias `bias`, so channel c is relu(pixel_c / 255 + bias); a bias of -10 with a zero
    kernel makes it dead everywhere.
    """
    import keras

    from lossbench.core.augment import build_augmentation

    def classifier_layers(features):
        features = keras.layers.Conv2D(3, 1, activation="relu", name="conv_9")(features)
        features = keras.layers.Flatten(name="flatten")(features)
        features = keras.layers.Dense(3, name="dense")(features)
        return keras.layers.Activation("softmax", dtype="float32", name="output")(features)

    inputs = keras.Input(shape=(32, 32, 3), dtype="uint8", name="images")
    scaled = keras.layers.Rescaling(1.0 / 255.0, name="scale_to_unit_range")(inputs)
    if nested:
        classifier_inputs = keras.Input(shape=(32, 32, 3), name="images")
        classifier = keras.Model(classifier_inputs, classifier_layers(classifier_inputs), name="all_cnn")
        outputs = classifier(build_augmentation(0.1, True, 0)(scaled))
    else:
        outputs = classifier_layers(scaled)
    model = keras.Model(inputs, outputs, name="lossbench_test")
    conv = (model.get_layer("all_cnn") if nested else model).get_layer("conv_9")
    dead = bias <= -1.0
    kernel = np.zeros((1, 1, 3, 3), dtype=np.float32) if dead else np.eye(3, dtype=np.float32)[None, None]
    conv.kernel.assign(kernel)
    conv.bias.assign(np.full(3, bias, dtype=np.float32))
    model.save(path)
    return path


@pytest.mark.parametrize("nested", [True, False])
def test_final_conv_activity_is_measured_on_scaled_images(tmp_path, nested):
    images, labels = channel_images()
    data_dir = write_prepared(tmp_path / "prepared", images, labels)
    model_path = save_conv9_model(tmp_path / "model.keras", nested=nested)
    metrics = evaluate.run(
        evaluate_params(batch_size=5, convergence_thresholds=[0.5]), loss_name="categorical_crossentropy",
        seed=7, data_dir=data_dir, model_path=model_path, log_dir=write_logs(tmp_path / "log"),
        output=tmp_path / "m.json",
    )
    # By hand: a channel is positive where its uint8 value exceeds 127.5 (solid colours, so
    # every position of an image agrees); 10 of the 36 colour values do.
    expected = float(np.mean(images[:, 0, 0, :] / 255.0 > THRESHOLD))
    assert expected == pytest.approx(10 / 36)
    assert metrics["final_conv_active_fraction"] == pytest.approx(expected)
    assert metrics["final_conv_dead_channels"] == 0 and metrics["final_conv_channels"] == 3
    assert metrics["final_layer_dead"] is False
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["final_conv_active_fraction"] == pytest.approx(expected)


def test_a_dead_final_conv_is_reported(tmp_path, caplog):
    images, labels = channel_images()
    data_dir = write_prepared(tmp_path / "prepared", images, labels)
    model_path = save_conv9_model(tmp_path / "model.keras", bias=-10.0)
    with caplog.at_level("WARNING", logger="lossbench.evaluate"):
        metrics = evaluate.run(
            evaluate_params(batch_size=5, convergence_thresholds=[0.5]), loss_name="categorical_crossentropy",
            seed=7, data_dir=data_dir, model_path=model_path, log_dir=write_logs(tmp_path / "log"),
            output=tmp_path / "m.json",
        )
    assert metrics["final_conv_active_fraction"] == 0.0
    assert metrics["final_conv_dead_channels"] == metrics["final_conv_channels"] == len(CLASS_NAMES)
    assert metrics["final_layer_dead"] is True
    # The dense layer sees zeros for every image: one class for all, a third of them right.
    assert metrics["test_accuracy"] == pytest.approx(1 / 3)
    assert "100.00 % of conv_9's activations on the test images are zero" in caplog.text


# ---------------------------------------------------------------------------------------------
# Dead final layer by share of zeros; the training sample.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("active, share, dead", [
    (0.0003, 0.99, True),    # 99.97 % zeros: dead
    (0.01, 0.99, True),      # exactly 99 % zeros: at the share counts as dead
    (0.0101, 0.99, False),   # 98.99 % zeros: alive
    (0.0003, 0.9999, False), # a stricter share
    (0.3, 0.99, False),
    (None, 0.99, None),      # not measured (no conv_9, or a diverged run): unknown
])
def test_final_layer_dead_by_the_share_of_zero_activations(active, share, dead):
    assert run_metrics.final_layer_dead(active, share) is dead
    labels = np.arange(6) % 3
    built = run_metrics.build_metrics(
        "hinge", 0, labels, np.eye(3)[labels], CLASS_NAMES, 1.0, [], {}, [0.5],
        collapse_share=SHARES["collapse_share"],
        final_conv={"final_conv_active_fraction": active, "final_conv_dead_channels": 0,
                    "final_conv_channels": 3},
        dead_layer_share=share,
    )
    assert built["final_layer_dead"] is dead


def test_runs_final_layer_dead_prefers_the_share_rule():
    # One channel alive in a few places is dead by the share rule; the old all-channels rule
    # (every channel zero everywhere) is used only for metrics without `final_layer_dead`.
    assert evaluate.final_layer_dead({"final_layer_dead": True, "final_conv_channels": 3,
                                      "final_conv_dead_channels": 2})
    assert not evaluate.final_layer_dead({"final_layer_dead": False, "final_conv_channels": 3,
                                          "final_conv_dead_channels": 3})
    assert evaluate.final_layer_dead({"final_layer_dead": None, "final_conv_channels": 3,
                                      "final_conv_dead_channels": 3})


def test_above_chance_p_value_uses_the_runs_own_test_size():
    # 30 % right is far above 10 % chance on 1,000 images, but not on 10.
    assert run_metrics.above_chance_p_value(300, 1000, 10) < 1e-40
    assert run_metrics.above_chance_p_value(3, 10, 10) == pytest.approx(
        1 - sum(math.comb(10, k) * 0.1 ** k * 0.9 ** (10 - k) for k in range(3)))
    assert run_metrics.above_chance_p_value(0, 0, 10) is None


def test_the_training_sample_is_fixed_and_leaves_out_the_hold_out():
    from lossbench.core.batches import split_validation
    from lossbench.evaluate.training_sample import training_sample

    labels = np.arange(100) % 10
    test_run = {"validation": "test", "train_size": 100, "validation_size": 20}
    sample = training_sample(labels, test_run, seed=3, sample_size=30)
    assert len(sample) == 30 == len(set(sample)) and list(sample) == sorted(sample)
    # The same images for every run seed, so that runs are measured alike.
    assert list(training_sample(labels, test_run, seed=4, sample_size=30)) == list(sample)
    assert list(training_sample(labels, test_run, seed=3, sample_size=None)) == list(range(100))
    # With a hold-out, only the images the run trained on (the fraction read from the sizes).
    holdout_run = {"validation": "holdout", "train_size": 80, "validation_size": 20}
    keep, held_out = split_validation(labels, "holdout", 0.2, 5)
    assert list(training_sample(labels, holdout_run, seed=5, sample_size=None)) == list(keep)
    assert not set(training_sample(labels, holdout_run, seed=5, sample_size=50)) & set(held_out)
    recorded = dict(holdout_run, holdout_fraction=0.2, train_size=None, validation_size=None)
    assert list(training_sample(labels, recorded, seed=5, sample_size=None)) == list(keep)
    # Sizes that no fraction reproduces: unknown, so no training accuracy rather than a wrong one.
    assert training_sample(labels, dict(holdout_run, validation_size=7), seed=5, sample_size=None) is None
