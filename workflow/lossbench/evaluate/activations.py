"""The final convolution's activity, measured on a trained model: is its ReLU layer dead?

In:  a Keras model (the training model, which nests the classifier behind `Rescaling` and the
     augmentation, or a plain one), uint8 images and a batch size.
Out: `final_conv_activity`, `lossbench.evaluate.metrics.activation_summary`'s dictionary for the
     layer `conv_9` (the 1x1 class-score convolution with a ReLU): its active fraction, dead
     channels and channel count, or all-null values where the model has no such layer.

Used by the evaluate stage, which documents what the numbers mean and why they matter; kept
apart so that the stage module holds the reading and writing of files.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from lossbench.core.model import FINAL_CONVOLUTION_NAME
from lossbench.evaluate.metrics import NO_FINAL_CONV, activation_summary

logger = logging.getLogger(__name__)


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
    model, images: np.ndarray, batch_size: int, layer_name: str = FINAL_CONVOLUTION_NAME
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
