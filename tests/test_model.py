"""Tests of lossbench.core.model: the paper's All-CNN variant and its analytic FLOPs."""

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from lossbench.core.model import (
    build_model,
    forward_flops_per_image,
    scaled_channels,
    training_flops_per_image,
)
from lossbench.pipeline.params import load_params

# The project's params.yaml model section (the paper's width, initialisation and stride-2
# padding), which build_model takes from params only: it has no defaults of its own.
PAPER_MODEL = load_params(Path(__file__).resolve().parent.parent / "params.yaml")["model"]


def model_of(**arguments) -> keras.Model:
    """build_model with the schema's model settings, overridden by `arguments`."""
    return build_model(**{**PAPER_MODEL, **arguments})


# The paper's Listing 1.1: parameters of conv 1..9 and of the dense layer.
PAPER_LAYER_PARAMETERS = [2688, 83040, 83040, 166080, 331968, 331968, 331968, 37056, 1930, 6410]


@pytest.fixture(scope="module")
def paper_model():
    return model_of()


def test_paper_parameter_count(paper_model):
    assert paper_model.count_params() == 1_376_148


def test_paper_per_layer_parameter_counts(paper_model):
    counts = [layer.count_params() for layer in paper_model.layers if layer.count_params()]
    assert counts == PAPER_LAYER_PARAMETERS


@pytest.mark.parametrize("stride2_padding", ["theano", "tensorflow"])
def test_paper_layer_shapes(stride2_padding):
    paper_model = model_of(stride2_padding=stride2_padding)
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
    if stride2_padding == "tensorflow":
        assert all(layer.padding == "same" for layer in convolutions)
    else:
        # Theano's symmetric padding: an explicit one-pixel ZeroPadding2D, then "valid".
        for layer in convolutions:
            assert layer.padding == ("valid" if layer.strides == (2, 2) else "same")
        paddings = [layer for layer in paper_model.layers if isinstance(layer, layers.ZeroPadding2D)]
        assert [layer.name for layer in paddings] == ["pad_3", "pad_6"]
        assert all(layer.padding == ((1, 1), (1, 1)) for layer in paddings)


def test_initializers_are_keras1_defaults(paper_model):
    for layer in paper_model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            assert isinstance(layer.kernel_initializer, keras.initializers.GlorotUniform)
            assert isinstance(layer.bias_initializer, keras.initializers.Zeros)
            assert np.all(np.asarray(layer.bias) == 0)


def test_narrow_model_is_smaller():
    narrow = model_of(width=0.25)
    assert narrow.count_params() < 1_376_148 / 8
    convolutions = [layer for layer in narrow.layers if isinstance(layer, layers.Conv2D)]
    # The 96/192 channel convolutions scale; the num_classes convolution does not.
    assert [layer.filters for layer in convolutions] == [24, 24, 24, 48, 48, 48, 48, 48, 10]


def test_scaled_channels_never_zero():
    assert scaled_channels(96, 0.001) == 1
    assert scaled_channels(192, 0.5) == 96
    assert scaled_channels(96, 1.0) == 96


def test_softmax_outputs_sum_to_one():
    model = model_of(width=0.05, num_classes=7)
    images = np.random.default_rng(0).random((3, 32, 32, 3)).astype("float32")
    outputs = np.asarray(model(images, training=False))
    assert outputs.shape == (3, 7)
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs.sum(axis=-1), 1.0, rtol=1e-5)


def test_linear_outputs_allowed():
    model = model_of(width=0.05, output_activation="linear", input_shape=(16, 16, 3))
    images = np.random.default_rng(1).random((2, 16, 16, 3)).astype("float32")
    outputs = np.asarray(model(images, training=False))
    assert outputs.shape == (2, 10)
    assert model.layers[-1].activation is keras.activations.linear


def test_outputs_stay_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = model_of(width=0.05, input_shape=(8, 8, 3))
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
        model_of(**arguments)


def test_paper_flops():
    # 281,180,416 multiply-accumulates, 2 FLOPs each; training is 3x the forward pass.
    assert forward_flops_per_image() == 2 * 281_180_416
    assert training_flops_per_image() == 3 * forward_flops_per_image()
    # The lead engineer measured 1.687 GFLOP per training image at width 1.0.
    assert training_flops_per_image() / 1e9 == pytest.approx(1.687, abs=0.001)


@pytest.mark.parametrize("width, num_classes, input_shape", [(1.0, 10, (32, 32, 3)), (0.3, 100, (24, 20, 1))])
def test_flops_match_the_built_model(width, num_classes, input_shape):
    """The analytic count equals MACs read off the built model's layer shapes."""
    model = model_of(num_classes=num_classes, width=width, input_shape=input_shape)
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


# --- The paper's Keras 1.0.3 initialisation and Theano padding -------------------------------


@pytest.mark.parametrize("init", ["keras1", "keras3"])
def test_kernel_spread_per_layer_matches_the_glorot_formula(init):
    # Keras <= 1.0.3 (the paper's): fan_in = c_in k^2, fan_out = c_out for a k x k kernel;
    # Keras 3: fan_out = c_out k^2. A uniform(-L, L) draw has standard deviation L / sqrt(3).
    keras.utils.set_random_seed(1)
    model = model_of(init=init)
    for layer in model.layers:
        if not isinstance(layer, (layers.Conv2D, layers.Dense)):
            continue
        kernel = np.asarray(layer.kernel)
        if kernel.ndim == 4:
            size, _, channels_in, channels_out = kernel.shape
            fan_out = channels_out if init == "keras1" else channels_out * size * size
            limit = np.sqrt(6.0 / (channels_in * size * size + fan_out))
        else:
            limit = np.sqrt(6.0 / sum(kernel.shape))
        # float32 rounding may put a draw a hair past the float64 limit.
        assert np.max(np.abs(kernel)) <= limit * (1 + 1e-6), layer.name
        assert np.max(np.abs(kernel)) > 0.95 * limit, layer.name
        assert np.std(kernel) == pytest.approx(limit / np.sqrt(3), rel=0.1), layer.name


def test_keras1_three_by_three_kernels_start_wider_than_keras3():
    keras1, keras3 = model_of(init="keras1"), model_of(init="keras3")
    for name in ("conv_1", "conv_2", "conv_3", "conv_7", "conv_8", "conv_9"):
        ratio = np.std(keras1.get_layer(name).kernel) / np.std(keras3.get_layer(name).kernel)
        if keras1.get_layer(name).kernel_size == (3, 3):
            assert 1.3 <= ratio <= 2.8, (name, ratio)
        else:
            assert ratio == pytest.approx(1.0, rel=0.1), (name, ratio)


def _numpy_convolution(images, kernel, stride, pad_before, pad_after):
    """A plain numpy cross-correlation (what Conv2D computes), channels last, no bias."""
    padded = np.pad(images, ((0, 0), (pad_before, pad_after), (pad_before, pad_after), (0, 0)))
    size = kernel.shape[0]
    rows = (padded.shape[1] - size) // stride + 1
    columns = (padded.shape[2] - size) // stride + 1
    output = np.zeros((images.shape[0], rows, columns, kernel.shape[3]))
    for row in range(rows):
        for column in range(columns):
            window = padded[:, row * stride:row * stride + size, column * stride:column * stride + size]
            output[:, row, column] = np.tensordot(window, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return output


@pytest.mark.parametrize(
    ("stride2_padding", "pad_before", "pad_after"),
    # Theano pads one pixel on both sides (windows centred on 0, 2, 4); TensorFlow's "same"
    # pads 0 before and 1 after on an even input (windows centred on 1, 3, 5).
    [("theano", 1, 1), ("tensorflow", 0, 1)],
)
def test_stride2_padding_matches_a_hand_computed_convolution(stride2_padding, pad_before, pad_after):
    model = model_of(width=0.05, input_shape=(6, 6, 3), stride2_padding=stride2_padding)
    before_stride = model.get_layer("conv_2").output
    after_stride = model.get_layer("conv_3").output
    probe = keras.Model(model.inputs, [before_stride, after_stride])
    images = np.random.default_rng(0).uniform(size=(2, 6, 6, 3)).astype("float32")

    features, result = (np.asarray(array) for array in probe(images))

    kernel = np.asarray(model.get_layer("conv_3").kernel, dtype="float64")
    expected = np.maximum(_numpy_convolution(features, kernel, 2, pad_before, pad_after), 0)
    assert result.shape == expected.shape == (2, 3, 3, kernel.shape[3])
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_unknown_init_and_padding_are_refused():
    with pytest.raises(ValueError, match="model.init"):
        model_of(init="he")
    with pytest.raises(ValueError, match="model.stride2_padding"):
        model_of(stride2_padding="reflect")


def test_the_final_convolution_can_be_linear_with_the_same_parameters():
    """Issue 30, item 5: `model.final_convolution_activation: linear` drops only the ReLU of the
    last convolution (its class maps may then be negative); the paper's ReLU is the default."""
    import keras
    import numpy as np

    from lossbench.core.model import FINAL_CONVOLUTION_NAME, build_model

    paper = build_model(width=1.0, init="keras1", stride2_padding="theano")
    linear = build_model(width=1.0, init="keras1", stride2_padding="theano",
                         final_convolution_activation="linear")
    assert paper.count_params() == linear.count_params() == 1_376_148
    assert paper.get_layer(FINAL_CONVOLUTION_NAME).activation is keras.activations.relu
    assert linear.get_layer(FINAL_CONVOLUTION_NAME).activation is keras.activations.linear
    assert all(layer.activation is keras.activations.relu for layer in linear.layers
               if isinstance(layer, keras.layers.Conv2D) and layer.name != FINAL_CONVOLUTION_NAME)
    maps = keras.Model(linear.inputs, linear.get_layer(FINAL_CONVOLUTION_NAME).output)
    images = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype("float32")
    assert float(np.min(maps.predict(images, verbose=0))) < 0
    with pytest.raises(ValueError, match="model.final_convolution_activation"):
        build_model(width=1.0, init="keras1", stride2_padding="theano", final_convolution_activation="tanh")
