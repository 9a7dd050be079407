"""Tests of lossbench.core.losses against hand computations in numpy, on both Keras backends."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from keras import ops

from lossbench.core import losses
from lossbench.core.losses import LOSS_NAMES, LOSSES, LossSpec, get_loss

SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "params.schema.yaml"
EPSILON = 1e-7
GCE_Q = 0.7  # Zhang & Sabuncu's q, written out here rather than read from the module


def _softmax(scores):
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _ova_terms(outputs, true_class, negative_target, squared):
    """The per-class hinge terms max(0, 1 - t_k o_k) (squared if asked), t_true = 1 and every
    other t_k = `negative_target` (0 for the paper's Keras 1 losses, -1 for one-vs-all)."""
    terms = []
    for k, output in enumerate(outputs):
        target = 1.0 if k == true_class else negative_target
        margin = max(0.0, 1.0 - target * output)
        terms.append(margin**2 if squared else margin)
    return np.mean(terms)


def _crammer_singer(outputs, true_class):
    others = [output for k, output in enumerate(outputs) if k != true_class]
    return max(0.0, 1.0 + max(others) - outputs[true_class])


# Each loss written out in numpy for one image (its outputs and its true class), as a
# reference. A loss added to lossbench.core.losses needs its reference here too: the tests
# below run over every registered loss, and `_numpy_loss` refuses a loss it has none for.
NUMPY_LOSSES = {
    "categorical_crossentropy": lambda o, t: -np.log(np.clip(o[t], EPSILON, 1 - EPSILON)),
    "hinge": lambda o, t: _ova_terms(o, t, 0.0, squared=False),
    "squared_hinge": lambda o, t: _ova_terms(o, t, 0.0, squared=True),
    "ova_hinge": lambda o, t: _ova_terms(o, t, -1.0, squared=False),
    "ova_squared_hinge": lambda o, t: _ova_terms(o, t, -1.0, squared=True),
    "crammer_singer_hinge": _crammer_singer,
    "square": lambda o, t: np.mean([(o[k] - (k == t)) ** 2 for k in range(len(o))]),
    "mae": lambda o, t: sum(abs((k == t) - o[k]) for k in range(len(o))),
    "generalized_cross_entropy": lambda o, t: (1.0 - np.clip(o[t], EPSILON, 1.0) ** GCE_Q) / GCE_Q,
}


def _numpy_loss(name, labels, outputs):
    """The loss `name` of each row of `outputs`, from its numpy reference in NUMPY_LOSSES."""
    if name not in NUMPY_LOSSES:
        raise ValueError(
            f"tests/test_losses.py has no numpy reference for the loss {name!r}: add one to "
            "NUMPY_LOSSES, written out by hand, so that the registered function is checked."
        )
    outputs = outputs.astype(np.float64)
    return np.array([NUMPY_LOSSES[name](row, int(label)) for row, label in zip(outputs, labels)])


def test_every_registered_loss_has_a_numpy_reference():
    assert set(NUMPY_LOSSES) == set(LOSS_NAMES)
    with pytest.raises(ValueError, match="no numpy reference for the loss 'toy'"):
        _numpy_loss("toy", np.zeros(1), np.zeros((1, 3)))


def _example_outputs(name, batch, num_classes, seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(scale=2.0, size=(batch, num_classes)).astype("float32")
    labels = rng.integers(0, num_classes, size=batch)
    if LOSSES[name].output_activation == "softmax":
        return labels, _softmax(scores).astype("float32")
    return labels, scores


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("batch, num_classes", [(3, 4), (5, 10)])
def test_loss_matches_numpy(name, batch, num_classes):
    labels, outputs = _example_outputs(name, batch, num_classes, seed=batch * num_classes)
    computed = np.asarray(get_loss(name).function(labels, outputs))
    assert computed.shape == (batch,)
    assert computed.dtype == np.float32
    np.testing.assert_allclose(computed, _numpy_loss(name, labels, outputs), rtol=1e-5, atol=1e-6)


def test_hand_computed_values():
    # Scores for 2 samples x 3 classes, worked out by hand.
    labels = np.array([0, 2])
    scores = np.array([[2.0, 0.5, -1.0], [0.0, 3.0, 1.5]], dtype="float32")
    # One-vs-all hinge: sample 0: max(0, 1-2), max(0, 1+0.5), max(0, 1-1) -> (0 + 1.5 + 0) / 3.
    # Sample 1: max(0, 1+0)=1, max(0, 1+3)=4, max(0, 1-1.5)=0 -> 5 / 3.
    np.testing.assert_allclose(losses.ova_hinge(labels, scores), [0.5, 5 / 3], rtol=1e-6)
    np.testing.assert_allclose(losses.ova_squared_hinge(labels, scores), [2.25 / 3, 17 / 3], rtol=1e-6)
    # Crammer-Singer: sample 0: max(0, 1 + 0.5 - 2) = 0; sample 1: max(0, 1 + 3 - 1.5) = 2.5.
    np.testing.assert_allclose(losses.crammer_singer_hinge(labels, scores), [0.0, 2.5], rtol=1e-6)
    probabilities = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]], dtype="float32")
    np.testing.assert_allclose(
        losses.categorical_crossentropy(labels, probabilities), [np.log(2), -np.log(0.8)], rtol=1e-6
    )
    # Paper hinge, 3 classes: (1 - p_true + 2) / 3.
    np.testing.assert_allclose(losses.hinge(labels, probabilities), [2.5 / 3, 2.2 / 3], rtol=1e-6)
    np.testing.assert_allclose(
        losses.squared_hinge(labels, probabilities), [2.25 / 3, 2.04 / 3], rtol=1e-6
    )


def test_paper_hinge_is_affine_in_true_probability():
    """With 0/1 targets on softmax outputs, every wrong class adds a constant 1."""
    rng = np.random.default_rng(7)
    probabilities = _softmax(rng.normal(scale=3.0, size=(64, 10))).astype("float32")
    labels = rng.integers(0, 10, size=64)
    true_probability = probabilities[np.arange(64), labels]
    np.testing.assert_allclose(
        losses.hinge(labels, probabilities), 0.9 + 0.1 * (1 - true_probability), rtol=1e-6
    )
    np.testing.assert_allclose(
        losses.squared_hinge(labels, probabilities),
        0.9 + 0.1 * (1 - true_probability) ** 2,
        rtol=1e-6,
    )


def test_new_losses_by_hand():
    labels = np.array([0, 2])
    # Square loss on raw scores, 3 classes: sample 0: ((2-1)^2 + 0.5^2 + 1^2) / 3 = 2.25 / 3;
    # sample 1: (0^2 + 3^2 + (1.5-1)^2) / 3 = 9.25 / 3.
    scores = np.array([[2.0, 0.5, -1.0], [0.0, 3.0, 1.5]], dtype="float32")
    np.testing.assert_allclose(losses.square(labels, scores), [2.25 / 3, 9.25 / 3], rtol=1e-6)
    # MAE on probabilities: |1 - 0.5| + 0.25 + 0.25 = 1 = 2 (1 - 0.5); 0.1 + 0.1 + 0.2 = 0.4.
    probabilities = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]], dtype="float32")
    np.testing.assert_allclose(losses.mae(labels, probabilities), [1.0, 0.4], rtol=1e-6)
    # GCE, q = 0.7: (1 - 0.5^0.7) / 0.7 and (1 - 0.8^0.7) / 0.7.
    np.testing.assert_allclose(
        losses.generalized_cross_entropy(labels, probabilities),
        [(1 - 0.5**0.7) / 0.7, (1 - 0.8**0.7) / 0.7], rtol=1e-6)


def test_paper_hinge_is_a_scaled_mae():
    """The paper's hinge on softmax outputs, K classes: (K - 1) / K + MAE / (2 K), with MAE =
    sum_k |y_k - p_k| = 2 (1 - p_true); for 10 classes 0.9 + 0.05 MAE (the constant the issue
    states holds for this definition of MAE)."""
    rng = np.random.default_rng(17)
    for num_classes in (3, 10):
        probabilities = _softmax(rng.normal(scale=3.0, size=(64, num_classes))).astype("float32")
        labels = rng.integers(0, num_classes, size=64)
        absolute_error = np.asarray(losses.mae(labels, probabilities))
        true_probability = probabilities[np.arange(64), labels]
        np.testing.assert_allclose(absolute_error, 2 * (1 - true_probability), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            losses.hinge(labels, probabilities),
            (num_classes - 1) / num_classes + absolute_error / (2 * num_classes), rtol=1e-6)
        if num_classes == 10:
            np.testing.assert_allclose(losses.hinge(labels, probabilities), 0.9 + 0.05 * absolute_error, rtol=1e-6)


def test_generalized_cross_entropy_bridges_crossentropy_and_mae():
    rng = np.random.default_rng(23)
    probabilities = _softmax(rng.normal(scale=2.0, size=(32, 10))).astype("float32")
    labels = rng.integers(0, 10, size=32)
    # q -> 0: (1 - p^q) / q -> -log p. At q = 1e-4 the difference is about q log(p)^2 / 2.
    near_zero = np.asarray(losses.generalized_cross_entropy_q(labels, probabilities, 1e-4))
    crossentropy = np.asarray(losses.categorical_crossentropy(labels, probabilities))
    np.testing.assert_allclose(near_zero, crossentropy, rtol=2e-3, atol=1e-4)
    # q = 1: 1 - p_true, which is MAE / 2 (the constant: a factor of one half).
    at_one = np.asarray(losses.generalized_cross_entropy_q(labels, probabilities, 1.0))
    np.testing.assert_allclose(at_one, np.asarray(losses.mae(labels, probabilities)) / 2, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="0 < q <= 1"):
        losses.generalized_cross_entropy_q(labels, probabilities, 0.0)


def test_crossentropy_is_clipped():
    labels = np.array([0, 1])
    probabilities = np.array([[0.0, 1.0], [0.0, 1.0]], dtype="float32")
    computed = np.asarray(losses.categorical_crossentropy(labels, probabilities))
    assert np.all(np.isfinite(computed))
    np.testing.assert_allclose(computed[0], -np.log(EPSILON), rtol=1e-4)
    assert computed[1] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_label_shapes_and_dtypes(name):
    labels, outputs = _example_outputs(name, 4, 10, seed=3)
    expected = _numpy_loss(name, labels, outputs)
    for label_variant in (
        labels.astype("int32"),
        labels.astype("int64"),
        labels.reshape(-1, 1),
        labels.astype("float32"),
        labels.reshape(-1, 1).astype("float32"),
        ops.convert_to_tensor(labels.reshape(-1, 1), dtype="float32"),
    ):
        computed = np.asarray(get_loss(name).function(label_variant, outputs))
        np.testing.assert_allclose(computed, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_outputs(name, dtype):
    labels, outputs = _example_outputs(name, 4, 10, seed=5)
    low_precision = ops.cast(ops.convert_to_tensor(outputs), dtype)
    computed = get_loss(name).function(labels, low_precision)
    assert keras.backend.standardize_dtype(computed.dtype) == "float32"
    rounded = np.asarray(ops.cast(low_precision, "float32"))
    np.testing.assert_allclose(np.asarray(computed), _numpy_loss(name, labels, rounded), rtol=1e-5, atol=1e-6)


def test_one_hot_labels_rejected():
    outputs = np.full((2, 3), 1 / 3, dtype="float32")
    with pytest.raises(ValueError, match="integer class labels"):
        losses.hinge(np.eye(3, dtype="float32")[:2], outputs)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_losses_train_and_evaluate_through_compile(name):
    """Keras's own wrapping (label casting, rank matching, batch mean) gives the same loss."""
    spec = get_loss(name)
    rng = np.random.default_rng(11)
    features = rng.normal(size=(6, 5)).astype("float32")
    labels = rng.integers(0, 4, size=6)
    inputs = keras.Input(shape=(5,))
    outputs = keras.layers.Dense(4, activation=spec.output_activation)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=spec.function)
    predictions = np.asarray(model(features, training=False))
    evaluated = model.evaluate(features, labels, batch_size=6, verbose=0)
    assert evaluated == pytest.approx(_numpy_loss(name, labels, predictions).mean(), rel=1e-5)
    trained = model.train_on_batch(features, labels)
    assert np.isfinite(trained)
    assert all(np.all(np.isfinite(np.asarray(weight))) for weight in model.trainable_weights)


@pytest.mark.parametrize("name", losses.LOSS_NAMES)
def test_model_with_loss_reloads_without_custom_objects(tmp_path, name):
    """Issue 29: every registered loss is serialisable (a forgotten
    `@keras.saving.register_keras_serializable` makes `load_model` fail on the user's model
    with "Could not locate function"), so each is saved and reloaded here."""
    spec = losses.get_loss(name)
    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation=spec.output_activation)(inputs))
    model.compile(optimizer="sgd", loss=spec.function)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    features = np.linspace(0, 1, 6, dtype="float32").reshape(2, 3)
    labels = np.array([0, 1])
    assert reloaded.evaluate(features, labels, verbose=0) == pytest.approx(
        model.evaluate(features, labels, verbose=0), rel=1e-6
    )


# The study's losses, in the registry's order (figures and tables list them so); a loss added
# after them leaves this test as it is.
STUDY_LOSSES = (
    "categorical_crossentropy",
    "hinge",
    "squared_hinge",
    "ova_hinge",
    "ova_squared_hinge",
    "crammer_singer_hinge",
    "square",
    "mae",
    "generalized_cross_entropy",
)


def test_registry():
    assert LOSS_NAMES[: len(STUDY_LOSSES)] == STUDY_LOSSES
    for name, spec in LOSSES.items():
        assert isinstance(spec, LossSpec)
        assert spec.name == name
        assert spec.output_activation in ("softmax", "linear")
        assert spec.formula
        assert spec.function.__doc__
    assert [LOSSES[name].output_activation for name in STUDY_LOSSES] == (
        ["softmax"] * 3 + ["linear"] * 4 + ["softmax"] * 2)
    assert losses.GCE_Q == GCE_Q
    with pytest.raises(Exception):
        LOSSES["hinge"].name = "other"


def test_get_loss_error_lists_names():
    with pytest.raises(ValueError) as error:
        get_loss("cross_entropy")
    for name in LOSS_NAMES:
        assert name in str(error.value)


def test_schema_enum_matches_registry():
    schema = yaml.safe_load(SCHEMA.read_text())
    enum = schema["properties"]["train"]["properties"]["losses"]["items"]["enum"]
    # params.yaml is validated before anything heavy is imported (Snakemake reads it to build
    # its DAG), so the schema lists the names itself and this test keeps it in step.
    assert tuple(enum) == LOSS_NAMES, (
        "The enum of train.losses in workflow/schemas/params.schema.yaml must list the losses "
        f"of lossbench.core.losses.LOSSES in the same order: {list(LOSS_NAMES)}."
    )


JAX_CHECK = """
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from lossbench.core.losses import LOSSES
rng = np.random.default_rng(0)
labels = rng.integers(0, 10, size=(4, 1)).astype("float32")
scores = rng.normal(size=(4, 10)).astype("float32")
for name, spec in LOSSES.items():
    outputs = keras.ops.softmax(scores) if spec.output_activation == "softmax" else scores
    values = spec.function(labels, keras.ops.cast(outputs, "bfloat16"))
    assert values.shape == (4,) and str(values.dtype) == "float32", (name, values)
    values = np.asarray(spec.function(labels, outputs))
    print(name, " ".join(f"{value:.7f}" for value in values))
"""


def test_losses_agree_on_jax_backend():
    environment = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    completed = subprocess.run(
        [sys.executable, "-c", JAX_CHECK], env=environment, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=(4, 1)).astype("float32")
    scores = rng.normal(size=(4, 10)).astype("float32")
    jax_values = {}
    for line in completed.stdout.strip().splitlines():
        name, *values = line.split()
        jax_values[name] = np.array(values, dtype=float)
    assert tuple(jax_values) == LOSS_NAMES
    for name, spec in LOSSES.items():
        outputs = _softmax(scores) if spec.output_activation == "softmax" else scores
        np.testing.assert_allclose(jax_values[name], _numpy_loss(name, labels.ravel(), outputs), rtol=1e-5, atol=1e-6)
