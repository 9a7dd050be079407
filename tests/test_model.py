"""Tests of lossbench.model: the paper's All-CNN variant and its analytic FLOPs."""

import numpy as np
import pytest

import keras
from keras import layers

from lossbench.model import (
    build_model,
    forward_flops_per_image,
    scaled_channels,
    training_flops_per_image,
)

# The paper's Listing 1.1: parameters of conv 1..9 and of the dense layer.
PAPER_LAYER_PARAMETERS = [2688, 83040, 83040, 166080, 331968, 331968, 331968, 37056, 1930, 6410]


@pytest.fixture(scope="module")
def paper_model():
    return build_model()


def test_paper_parameter_count(paper_model):
    assert paper_model.count_params() == 1_376_148


def test_paper_per_layer_parameter_counts(paper_model):
    counts = [layer.count_params() for layer in paper_model.layers if layer.count_params()]
    assert counts == PAPER_LAYER_PARAMETERS


def test_paper_layer_shapes(paper_model):
    convolutions = [layer for layer in paper_model.layers if isinstance(layer, layers.Conv2D)]
    shapes = [tuple(layer.output.shape[1:]) for layer in convolutions]
    assert shapes == [
        (32, 32, 96),
        (32, 32, 96),
        (16, 16, 96),
        (16, 16, 192),
        (16, 16, 192),
        (8, 8, 192),
        (8, 8, 192),
        (8, 8, 192),
        (8, 8, 10),
    ]
    assert all(layer.activation is keras.activations.relu for layer in convolutions)
    assert all(layer.padding == "same" for layer in convolutions)


def test_initializers_are_keras1_defaults(paper_model):
    for layer in paper_model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            assert isinstance(layer.kernel_initializer, keras.initializers.GlorotUniform)
            assert isinstance(layer.bias_initializer, keras.initializers.Zeros)
            assert np.all(np.asarray(layer.bias) == 0)


def test_narrow_model_is_smaller():
    narrow = build_model(width=0.25)
    assert narrow.count_params() < 1_376_148 / 8
    convolutions = [layer for layer in narrow.layers if isinstance(layer, layers.Conv2D)]
    # The 96/192 channel convolutions scale; the num_classes convolution does not.
    assert [layer.filters for layer in convolutions] == [24, 24, 24, 48, 48, 48, 48, 48, 10]


def test_scaled_channels_never_zero():
    assert scaled_channels(96, 0.001) == 1
    assert scaled_channels(192, 0.5) == 96
    assert scaled_channels(96, 1.0) == 96


def test_softmax_outputs_sum_to_one():
    model = build_model(width=0.05, num_classes=7)
    images = np.random.default_rng(0).random((3, 32, 32, 3)).astype("float32")
    outputs = np.asarray(model(images, training=False))
    assert outputs.shape == (3, 7)
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs.sum(axis=-1), 1.0, rtol=1e-5)


def test_linear_outputs_allowed():
    model = build_model(width=0.05, output_activation="linear", input_shape=(16, 16, 3))
    images = np.random.default_rng(1).random((2, 16, 16, 3)).astype("float32")
    outputs = np.asarray(model(images, training=False))
    assert outputs.shape == (2, 10)
    assert model.layers[-1].activation is keras.activations.linear


def test_outputs_stay_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_model(width=0.05, input_shape=(8, 8, 3))
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.layers[1].compute_dtype == "float16"
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"output_activation": "sigmoid"}, "softmax, linear"),
        ({"width": 0}, "width"),
        ({"width": -1.0}, "width"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"input_shape": (32, 32)}, "input_shape"),
    ],
)
def test_bad_arguments_raise_value_error(arguments, message):
    with pytest.raises(ValueError, match=message):
        build_model(**arguments)


def test_paper_flops():
    # 281,180,416 multiply-accumulates, 2 FLOPs each; training is 3x the forward pass.
    assert forward_flops_per_image() == 2 * 281_180_416
    assert training_flops_per_image() == 3 * forward_flops_per_image()
    # The lead engineer measured 1.687 GFLOP per training image at width 1.0.
    assert training_flops_per_image() / 1e9 == pytest.approx(1.687, abs=0.001)


@pytest.mark.parametrize("width, num_classes, input_shape", [(1.0, 10, (32, 32, 3)), (0.3, 100, (24, 20, 1))])
def test_flops_match_the_built_model(width, num_classes, input_shape):
    """The analytic count equals MACs read off the built model's layer shapes."""
    model = build_model(num_classes=num_classes, width=width, input_shape=input_shape)
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            height, image_width, channels_out = layer.output.shape[1:]
            kernel_height, kernel_width, channels_in, _ = layer.kernel.shape
            macs += height * image_width * kernel_height * kernel_width * channels_in * channels_out
        elif isinstance(layer, layers.Dense):
            macs += int(np.prod(layer.kernel.shape))
    assert forward_flops_per_image(width, num_classes, input_shape) == 2 * macs


def test_flops_scale_with_width():
    full = training_flops_per_image(1.0)
    half = training_flops_per_image(0.5)
    quarter = training_flops_per_image(0.25)
    # Most layers have both input and output channels scaled, so cost falls nearly as
    # width squared; the first convolution (3 input channels) and the last layers fall slower.
    assert full > half > quarter > 0
    assert 0.25 <= half / full < 0.27
    assert 0.0625 <= quarter / full < 0.075
