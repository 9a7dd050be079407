"""Tests of lossbench.core.augment: the paper's shifts and flips, seeded per epoch, both
backends."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

from lossbench.core.augment import build_augmentation, set_epoch_seed


def _images(batch=8, size=12, seed=0):
    # Distinct random values per pixel, so that "every output value is an input value"
    # really tests nearest interpolation rather than passing by coincidence.
    return np.random.default_rng(seed).random((batch, size, size, 3)).astype("float32")


def _augment(augmentation, images, seed, epoch):
    set_epoch_seed(augmentation, seed, epoch)
    return np.asarray(augmentation(images, training=True))


def test_layers_and_settings():
    augmentation = build_augmentation(0.1, True, seed=3)
    shift, flip = augmentation.layers
    assert isinstance(shift, layers.RandomTranslation)
    assert isinstance(flip, layers.RandomFlip)
    assert shift.fill_mode == "nearest" and shift.interpolation == "nearest"
    assert shift.height_factor == 0.1 and shift.width_factor == 0.1
    assert flip.mode == "horizontal"
    assert [type(layer) for layer in build_augmentation(0.0, True, 0).layers] == [layers.RandomFlip]
    assert [type(layer) for layer in build_augmentation(0.2, False, 0).layers] == [layers.RandomTranslation]


def test_values_shape_and_range_preserved():
    images = _images()
    augmented = _augment(build_augmentation(0.1, True, seed=0), images, seed=0, epoch=0)
    assert augmented.shape == images.shape
    assert augmented.dtype == np.float32
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0
    # Nearest interpolation and fill only copy pixels: each output image's values are a
    # subset of its own input image's values.
    for original, shifted in zip(images, augmented):
        assert np.isin(shifted, original).all()
    assert not np.array_equal(augmented, images)


def test_shift_is_at_most_ten_percent():
    # Each column holds its own index, so a pure shift moves column values by the shift.
    size = 20
    columns = np.tile(np.arange(size, dtype="float32")[None, None, :, None], (64, size, 1, 1)) / size
    augmentation = build_augmentation(0.1, False, seed=0)
    shifted = _augment(augmentation, columns, seed=1, epoch=0)
    offsets = np.abs(shifted - columns) * size
    assert offsets.max() <= 0.1 * size + 1e-4
    assert offsets.max() >= 1  # Some image out of 64 moved at least one pixel.


def test_flip_only_mirrors():
    images = _images(batch=32)
    flipped = _augment(build_augmentation(0.0, True, seed=0), images, seed=0, epoch=0)
    mirrored = images[:, :, ::-1, :]
    is_original = np.all(flipped == images, axis=(1, 2, 3))
    is_mirrored = np.all(flipped == mirrored, axis=(1, 2, 3))
    assert np.all(is_original | is_mirrored)
    assert is_original.any() and is_mirrored.any()


def test_inference_is_identity():
    images = _images()
    augmentation = build_augmentation(0.1, True, seed=0)
    np.testing.assert_array_equal(np.asarray(augmentation(images, training=False)), images)
    # Inside a model, predict() runs with training=False.
    inputs = keras.Input(shape=images.shape[1:])
    model = keras.Model(inputs, augmentation(inputs))
    np.testing.assert_array_equal(model.predict(images, verbose=0), images)


def test_no_augmentation_is_identity():
    images = _images()
    augmentation = build_augmentation(0.0, False, seed=0)
    np.testing.assert_array_equal(np.asarray(augmentation(images, training=True)), images)


def test_same_seed_and_epoch_reproduce():
    images = _images()
    first = build_augmentation(0.1, True, seed=0)
    second = build_augmentation(0.1, True, seed=99)  # The build seed is overridden.
    reference = _augment(first, images, seed=5, epoch=2)
    # Draws in between (other epochs, other batches) do not change what (5, 2) gives.
    _augment(first, images, seed=5, epoch=3)
    first(images, training=True)
    np.testing.assert_array_equal(_augment(first, images, seed=5, epoch=2), reference)
    np.testing.assert_array_equal(_augment(second, images, seed=5, epoch=2), reference)


def test_different_epoch_or_seed_differ():
    images = _images()
    augmentation = build_augmentation(0.1, True, seed=0)
    reference = _augment(augmentation, images, seed=5, epoch=2)
    assert not np.array_equal(_augment(augmentation, images, seed=5, epoch=3), reference)
    assert not np.array_equal(_augment(augmentation, images, seed=6, epoch=2), reference)


def test_layers_get_distinct_seeds():
    augmentation = build_augmentation(0.1, True, seed=0)
    dtypes = [str(layer.generator.state.dtype) for layer in augmentation.layers]
    set_epoch_seed(augmentation, 0, 0)
    states = [np.asarray(layer.generator.state) for layer in augmentation.layers]
    assert states[0][0] != states[1][0]
    assert all(state[1] == 0 for state in states)
    # The state keeps the backend's seed dtype (int64 on TensorFlow, uint32 on JAX).
    assert [str(layer.generator.state.dtype) for layer in augmentation.layers] == dtypes


def test_successive_batches_differ_within_an_epoch():
    images = _images()
    augmentation = build_augmentation(0.1, True, seed=0)
    set_epoch_seed(augmentation, 0, 0)
    first = np.asarray(augmentation(images, training=True))
    second = np.asarray(augmentation(images, training=True))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ((-0.1, True, 0), "shift_fraction"),
        ((1.0, True, 0), "shift_fraction"),
        ((0.1, "yes", 0), "horizontal_flip"),
        ((0.1, True, -1), "seed"),
    ],
)
def test_bad_arguments_raise_value_error(arguments, message):
    with pytest.raises(ValueError, match=message):
        build_augmentation(*arguments)


def test_set_epoch_seed_rejects_bad_arguments():
    augmentation = build_augmentation(0.1, True, seed=0)
    with pytest.raises(ValueError, match="epoch"):
        set_epoch_seed(augmentation, 0, -1)
    with pytest.raises(ValueError, match="layer"):
        set_epoch_seed("augmentation", 0, 0)


def _fit_with_epoch_seeds(weights, epochs, initial_epoch=0):
    """Train a tiny model with the augmentation inside, reseeding it every epoch."""
    keras.utils.set_random_seed(0)
    images = _images(batch=8, size=8, seed=1)
    labels = np.arange(8) % 2
    inputs = keras.Input(shape=(8, 8, 3))
    augmentation = build_augmentation(0.1, True, seed=0)
    features = layers.Flatten()(augmentation(inputs))
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(features))
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    reseed = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: set_epoch_seed(augmentation, 7, epoch)
    )
    model.fit(
        images,
        labels,
        batch_size=4,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,
        callbacks=[reseed],
        verbose=0,
    )
    return model.get_weights()


def test_resumed_training_matches_uninterrupted_training():
    initial = _fit_with_epoch_seeds(None, epochs=0)
    uninterrupted = _fit_with_epoch_seeds(initial, epochs=3)
    after_one = _fit_with_epoch_seeds(initial, epochs=1)
    resumed = _fit_with_epoch_seeds(after_one, epochs=3, initial_epoch=1)
    for expected, actual in zip(uninterrupted, resumed):
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)
    # Training moved the weights, so the runs above compared trained models. (Without
    # set_epoch_seed, the resumed run's fresh layers would replay epoch 0's draws in epoch 1.)
    assert not all(np.array_equal(a, b) for a, b in zip(after_one, initial))


JAX_CHECK = """
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from lossbench.core.augment import build_augmentation, set_epoch_seed
images = np.random.default_rng(0).random((8, 12, 12, 3)).astype("float32")
augmentation = build_augmentation(0.1, True, seed=0)
assert str(augmentation.layers[0].generator.state.dtype) == "uint32"
def run(seed, epoch):
    set_epoch_seed(augmentation, seed, epoch)
    return np.asarray(augmentation(images, training=True))
reference = run(5, 2)
assert reference.shape == images.shape and reference.min() >= 0 and reference.max() <= 1
assert all(np.isin(out, inp).all() for out, inp in zip(reference, images))
assert not np.array_equal(reference, images)
run(5, 3)
assert np.array_equal(run(5, 2), reference)
assert not np.array_equal(run(5, 3), reference)
assert np.array_equal(np.asarray(augmentation(images, training=False)), images)
# Inside a jitted fit, the state assigned at epoch begin must be the one used.
inputs = keras.Input(shape=(12, 12, 3))
model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(augmentation(inputs))))
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
seen = []
class Record(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        set_epoch_seed(augmentation, 5, epoch)
    def on_epoch_end(self, epoch, logs=None):
        seen.append([np.asarray(layer.generator.state).tolist() for layer in augmentation.layers])
model.fit(images, np.arange(8) % 2, batch_size=4, epochs=2, callbacks=[Record()], verbose=0)
expected = []
for epoch in range(2):
    set_epoch_seed(augmentation, 5, epoch)
    expected.append([np.asarray(layer.generator.state).tolist() for layer in augmentation.layers])
for epoch in range(2):
    for got, start in zip(seen[epoch], expected[epoch]):
        assert got[0] == start[0] and got[1] > 0, (epoch, got, start)
print("ok")
"""


def test_augmentation_on_jax_backend():
    environment = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    completed = subprocess.run(
        [sys.executable, "-c", JAX_CHECK], env=environment, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().endswith("ok")
