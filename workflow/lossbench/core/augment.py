"""The paper's data augmentation, as Keras preprocessing layers inside the training graph.

In: a batch of float images in [0, 1], NHWC (batch, height, width, channels).
Out: a batch of the same shape and dtype, each image shifted by up to `shift_fraction` of
its height and width (nearest fill) and flipped left-right with probability 1/2, when the
augmentation is called with `training=True`; the images unchanged with `training=False`.

The paper used Keras 1's `ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1,
horizontal_flip=True)`, whose default `fill_mode` was "nearest" and whose affine transform
interpolated with order 0 (nearest). The layers here do the same: each image gets its own
uniform shift in [-shift_fraction, +shift_fraction] x size along each axis, and nearest
interpolation and fill only copy input pixels, so no new pixel values appear.

`set_epoch_seed` makes the random draws of an epoch a function of (seed, epoch) only, so a
run resumed from a checkpoint augments its remaining epochs exactly as an uninterrupted
run would.

`shift_and_flip` is the same augmentation as one function of (images, seed) written with
`keras.ops`, for the JAX backend's device loop (`lossbench.train.device_loop`), where Keras
3.15's RandomTranslation would keep the training step out of XLA: integer pixel shifts of
round(uniform(-f, f) x size) with edge replication (what nearest interpolation and nearest
fill compute) and a flip with probability 1/2, gathered with clipped indices, so it compiles
and runs where the images are. Its draws are a function of a (2,) seed, which the device
loop makes (`epoch_seed(seed, epoch)`, step), so a resumed run draws what an uninterrupted
one would.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers


def build_augmentation(shift_fraction: float, horizontal_flip: bool, seed: int) -> keras.Sequential:
    """Build the augmentation pipeline: a random shift (if shift_fraction > 0), then a flip.

    Args:
        shift_fraction: the largest shift, as a fraction of image height and width, in
            [0, 1); the paper's is 0.1. 0 leaves out the shift.
        horizontal_flip: whether to flip images left-right at random (the paper: True).
        seed: a non-negative integer seeding the layers' random draws. Call
            `set_epoch_seed` before each epoch to reseed them per epoch.

    Returns:
        A `keras.Sequential` of preprocessing layers, active only when called with
        `training=True` (inside `fit`, or explicitly). With neither a shift nor a flip it
        holds one Identity layer and returns its input.
    """
    if isinstance(shift_fraction, bool) or not isinstance(shift_fraction, (int, float)):
        raise ValueError(f"shift_fraction must be a number in [0, 1), got {shift_fraction!r}.")
    if not 0 <= shift_fraction < 1:
        raise ValueError(
            f"shift_fraction must be in [0, 1), got {shift_fraction!r}. "
            "It is a fraction of the image size; the paper used 0.1 (10 %)."
        )
    if not isinstance(horizontal_flip, bool):
        raise ValueError(f"horizontal_flip must be True or False, got {horizontal_flip!r}.")
    _check_seed(seed, "seed")

    augmentation_layers = []
    if shift_fraction > 0:
        # Nearest interpolation and nearest fill reproduce Keras 1's order-0 affine
        # transform with fill_mode="nearest": shifted images only repeat existing pixels.
        augmentation_layers.append(
            layers.RandomTranslation(
                height_factor=shift_fraction,
                width_factor=shift_fraction,
                fill_mode="nearest",
                interpolation="nearest",
                seed=seed,
                name="random_shift",
            )
        )
    if horizontal_flip:
        # A different seed from the shift's keeps the flip decisions independent of the
        # shift draws even before set_epoch_seed reseeds both.
        augmentation_layers.append(
            layers.RandomFlip("horizontal", seed=seed + 1, name="random_flip")
        )
    if not augmentation_layers:
        # Keras cannot build an empty Sequential, so "no augmentation" is an identity layer.
        augmentation_layers.append(layers.Identity(name="no_augmentation"))
    return keras.Sequential(augmentation_layers, name="augmentation")


def _check_seed(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}.")


def _seed_generators(layer) -> list:
    """Return every `keras.random.SeedGenerator` a layer holds, in a stable order.

    Keras 3's image preprocessing layers keep theirs in `.generator`; other random layers
    (Dropout, GaussianNoise) in `.seed_generator`. When such a layer runs inside a tf.data
    pipeline under another backend it makes a TensorFlow copy, kept in
    `._backend_generators`, which must be reseeded too.
    """
    generators = []
    for attribute in ("generator", "seed_generator"):
        candidate = getattr(layer, attribute, None)
        if isinstance(candidate, keras.random.SeedGenerator) and candidate not in generators:
            generators.append(candidate)
    backend_generators = getattr(layer, "_backend_generators", None) or {}
    for backend_name in sorted(backend_generators):
        candidate = backend_generators[backend_name]
        if isinstance(candidate, keras.random.SeedGenerator) and candidate not in generators:
            generators.append(candidate)
    return generators


def _walk_layers(layer) -> list:
    """Return the layer and all its nested sublayers, depth-first in the order added."""
    found = [layer]
    for sublayer in getattr(layer, "layers", None) or []:
        found.extend(_walk_layers(sublayer))
    return found


def set_epoch_seed(augmentation, seed: int, epoch: int) -> None:
    """Reseed every random layer of `augmentation` from (seed, epoch) alone.

    Each seed generator's state, a variable of shape (2,), becomes [derived seed, 0], where
    the derived seed comes from numpy's SeedSequence over (seed, epoch, layer index,
    generator index): distinct per layer and per epoch, and independent of how many batches
    earlier epochs drew. Call it before each epoch (for example in a callback's
    `on_epoch_begin`), including the first epoch after resuming from a checkpoint.

    Meant for the augmentation running inside the model (the training graph), where it works
    on every backend, jitted `fit` on JAX included. If instead its layers are mapped over a
    tf.data pipeline under a non-TensorFlow backend, Keras creates the layers' TensorFlow
    seed generators lazily on first use, so a call made before the pipeline is first traced
    cannot reach them and that first epoch is not reproducible.

    Args:
        augmentation: the model or layer from `build_augmentation` (any layer works; its
            sublayers are searched).
        seed: the run's non-negative integer seed.
        epoch: the 0-based epoch number about to start.
    """
    _check_seed(seed, "seed")
    _check_seed(epoch, "epoch")
    if not isinstance(augmentation, keras.layers.Layer):
        raise ValueError(
            "set_epoch_seed expects the keras layer or model from build_augmentation, "
            f"got {type(augmentation).__name__}."
        )
    # The walk visits the layer itself first and then its sublayers depth-first in the
    # order they were added, which is the same on every run, so layer indices are stable.
    for layer_index, layer in enumerate(_walk_layers(augmentation)):
        for generator_index, generator in enumerate(_seed_generators(layer)):
            derived_seed = epoch_seed(seed, epoch, layer_index, generator_index)
            state = generator.state
            new_state = np.array([derived_seed, 0], dtype=keras.backend.standardize_dtype(state.dtype))
            state.assign(new_state)


def epoch_seed(seed: int, epoch: int, *indices: int) -> int:
    """A 31-bit seed derived from (seed, epoch, *indices) by NumPy's SeedSequence: distinct
    per epoch and per index, and independent of how many draws earlier epochs made. 31 bits
    fit every backend's seed dtype: int64 (TensorFlow), uint32 (JAX), int32 (PyTorch)."""
    sequence = np.random.SeedSequence([int(seed), int(epoch), *map(int, indices)])
    return int(sequence.generate_state(1, dtype=np.uint32)[0]) & 0x7FFFFFFF


def shift_and_flip(images, seed, shift_fraction: float, horizontal_flip: bool):
    """The paper's augmentation of a batch of images (NHWC, any dtype), traceable and XLA-ready.

    Each image is shifted by round(u x height) rows and round(v x width) columns, u and v
    uniform in [-shift_fraction, shift_fraction], the border filled by repeating the edge
    pixels (Keras 1's order-0 shift with fill_mode "nearest"), then flipped left-right with
    probability 1/2 where `horizontal_flip`. Only input pixels are copied, so uint8 images
    can be augmented before they are scaled. `seed` is a (2,) uint32 JAX array, a stateless
    seed that Keras's random functions take on the JAX backend only (TensorFlow's Keras takes
    integers or seed generators): the same seed, the same draws.
    """
    from keras import ops

    batch, height, width = images.shape[0], images.shape[1], images.shape[2]
    draws = keras.random.uniform((batch, 3), seed=seed)
    shifts = ops.cast(ops.round((2.0 * draws[:, :2] - 1.0) * shift_fraction
                                * ops.convert_to_tensor([height, width], "float32")), "int32")
    columns = ops.arange(width, dtype="int32")[None, :]
    if horizontal_flip:
        columns = ops.where(draws[:, 2:3] < 0.5, width - 1 - columns, columns)
    # Clipping the source index repeats the edge row or column: nearest fill.
    rows = ops.clip(ops.arange(height, dtype="int32")[None, :] - shifts[:, :1], 0, height - 1)
    columns = ops.clip(columns - shifts[:, 1:], 0, width - 1)
    shifted = ops.take_along_axis(images, rows[:, :, None, None], axis=1)
    return ops.take_along_axis(shifted, columns[:, None, :, None], axis=2)
