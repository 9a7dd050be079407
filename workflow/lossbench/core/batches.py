"""What the train stage feeds Keras: the validation split, each epoch's order, the batches.

In:  the training and test arrays (uint8 images, int32 labels), `train.validation`,
     `train.holdout_fraction`, `train.shuffle`, the batch size and the run's seed.
Out: the images to train on and to validate on (`training_and_validation`), each epoch's
     order of the training images as a function of (seed, epoch) only (`epoch_permutation`),
     and batches in the form the active Keras backend's `fit` / `evaluate` take them
     (`make_batches`, `training_batches`).

Everything here is a function of its arguments, so a resumed run sees the orders and
batches that an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np


def holdout_counts(labels: np.ndarray, holdout_fraction: float) -> list[int]:
    """Images held out of each class (in `np.unique` order): its share, rounded."""
    _, counts = np.unique(labels, return_counts=True)
    return [int(round(count * holdout_fraction)) for count in counts]


def split_validation(
    labels: np.ndarray, validation: str, holdout_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices of the training images to train on and, for `holdout`, to validate on.

    For `test` every training image is trained on and validation uses the test set (None).
    For `holdout` a stratified fraction of each class is held out, drawn from the seed.
    """
    if validation == "test":
        return np.arange(len(labels)), None
    if validation != "holdout":
        raise ValueError(f"train.validation is {validation!r}; use `test` or `holdout`.")
    rng = np.random.default_rng([seed, 7919])
    held_out = []
    for label, count in zip(np.unique(labels), holdout_counts(labels, holdout_fraction)):
        members = np.flatnonzero(labels == label)
        held_out.append(rng.choice(members, size=count, replace=False))
    held_out = np.sort(np.concatenate(held_out))
    if len(held_out) == 0 or len(held_out) == len(labels):
        raise ValueError(
            f"train.holdout_fraction {holdout_fraction} leaves no images to "
            f"{'validate' if len(held_out) == 0 else 'train'} on from {len(labels)} training images."
        )
    keep = np.setdiff1d(np.arange(len(labels)), held_out)
    return keep, held_out


def training_and_validation(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    validation: str,
    holdout_fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels) to train on, then (images, labels) to validate on each epoch.

    With `test` all training images and the test set; with `holdout` the training images
    that `split_validation` keeps, and the ones it holds out.
    """
    keep, held_out = split_validation(train_labels, validation, holdout_fraction, seed)
    if held_out is None:
        return train_images, train_labels, test_images, test_labels
    return train_images[keep], train_labels[keep], train_images[held_out], train_labels[held_out]


def epoch_permutation(count: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of epoch `epoch`'s training images.

    With `shuffle` a permutation that is a function of (seed, epoch) only, so a resumed run
    sees the orders an uninterrupted one would. Without it the stored order, the same every
    epoch: what the paper's Keras <= 1.0.3 `ImageDataGenerator.flow` did by default
    (authors' script, cifar_classifier.py line 119, passes no `shuffle`).
    """
    if not shuffle:
        return np.arange(count)
    return np.random.default_rng([seed, epoch, 104729]).permutation(count)


def _deterministic_options():
    """tf.data options with autotuning off: with it on, we measured `fit` stalling for 3 to
    15 s with the CPU idle."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    return options


def make_batches(images: np.ndarray, labels: np.ndarray, batch_size: int):
    """What `fit`/`evaluate` iterate over, in the given order, for the active backend.

    For TensorFlow a tf.data pipeline with autotuning off; other backends take the arrays
    themselves.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return {"x": images, "y": labels, "batch_size": batch_size, "shuffle": False}
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    dataset = dataset.with_options(_deterministic_options()).prefetch(2)
    return {"x": dataset, "shuffle": False}


def training_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, epochs: range,
                     order_of_epoch):
    """The training batches of `epochs` (0-based) as one stream, for one `fit` call.

    `order_of_epoch(epoch)` gives that epoch's order of the images (`epoch_permutation`); it
    is called when the epoch's first batch is drawn, so memory does not grow with the number
    of epochs (an order list for every epoch of `train.epochs: 1000000000` would not fit).
    Each epoch is batched on its own, so its last batch may be short, exactly as a per-epoch
    pass would be. `fit` is given `steps_per_epoch`, so it draws each epoch's batches from
    this one stream in order. For TensorFlow a tf.data pipeline that gathers each batch from
    the arrays (autotuning off, as in `make_batches`); other backends get a Python generator.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        def generate():
            for epoch in epochs:
                order = order_of_epoch(epoch)
                for start in range(0, len(order), batch_size):
                    batch = order[start:start + batch_size]
                    yield images[batch], labels[batch]

        return generate()
    import tensorflow as tf

    count = len(labels)

    def epoch_batches(epoch):
        order = tf.numpy_function(lambda value: np.asarray(order_of_epoch(int(value)), np.int64),
                                  [epoch], tf.int64)
        return tf.data.Dataset.from_tensor_slices(tf.ensure_shape(order, [count])).batch(batch_size)

    images_tensor, labels_tensor = tf.constant(images), tf.constant(labels)
    dataset = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(epoch_batches).map(
        lambda batch: (tf.gather(images_tensor, batch), tf.gather(labels_tensor, batch))
    )
    return dataset.with_options(_deterministic_options()).prefetch(2)
