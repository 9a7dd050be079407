"""The paper's All-CNN variant, and its analytic cost in FLOPs.

In: the number of classes, a width multiplier on the convolution channel counts, the output
activation ("softmax" for the paper's losses, "linear" for the textbook margin losses), the
image shape (height, width, channels), channels last, and two choices that decide whether the
net is initialised and padded as the paper's Keras 1 / Theano did (the defaults) or as
Keras 3 / TensorFlow do.
Out: an uncompiled `keras.Model` mapping a batch of images (float, NHWC) to one row of
`num_classes` float32 outputs per image; or, from the FLOPs functions, a float count of
floating-point operations per image.

The architecture is the one in the paper's Listing 1.1 (Dierauf, Stutz and Marti, after
Springenberg et al.'s "All Convolutional Net", without dropout or weight decay):

    conv 3x3 96, conv 3x3 96, conv 3x3 96 stride 2,
    conv 3x3 192, conv 3x3 192, conv 3x3 192 stride 2,
    conv 3x3 192, conv 1x1 192, conv 1x1 num_classes,
    flatten, dense num_classes, output activation.

Every convolution uses "same" padding and ReLU. At width 1.0 with 10 classes on 32x32x3
images the model has exactly the paper's 1,376,148 parameters. The paper ran Theano with
channels-first tensors; channels-last changes neither the parameter count nor the function
the network computes, only the memory layout.

Two details of the paper's software change what is trained, and both are reproduced by default
(the authors' script, ../shared/paper/authors-code/cifar_classifier.py, lines 67-89, builds the
layers with Keras 1's defaults; their runs of 23-31 May 2016 used Keras <= 1.0.3 on Theano):

* ``init="keras1"``: Keras <= 1.0.3 computed Glorot's fans of a Theano-ordered convolution
  kernel (c_out, c_in, k, k) as fan_in = c_in * k * k and fan_out = c_out, without the
  receptive field (Keras 1.0.4 added it). Kernels were drawn from
  uniform(+-sqrt(6 / (c_in k^2 + c_out))), 1.3 to 2.7 times wider than Keras 3's
  uniform(+-sqrt(6 / (c_in k^2 + c_out k^2))) for the 3x3 layers; 1x1 and dense kernels are the
  same either way. ``init="keras3"`` uses today's formula.
* ``stride2_padding="theano"``: Theano's "same" ("half") border mode pads one pixel on every
  side, so the 3x3 stride-2 windows are centred on pixels 0, 2, ..., 30. TensorFlow's "same"
  pads 0 before and 1 after (centres 1, 3, ..., 31). "theano" adds an explicit symmetric
  ``ZeroPadding2D`` before each stride-2 convolution (then "valid"); "tensorflow" uses "same".
  Stride-1 convolutions pad symmetrically in both, so they keep "same".
"""

from __future__ import annotations

import keras
from keras import layers

OUTPUT_ACTIVATIONS = ("softmax", "linear")
INITIALIZATIONS = ("keras1", "keras3")
STRIDE2_PADDINGS = ("theano", "tensorflow")

# The last convolution, whose ReLU on the class scores can die: evaluate looks it up by name.
FINAL_CONVOLUTION_NAME = "conv_9"

# The convolutions as (channels before width scaling, kernel size, stride). The last
# convolution has `num_classes` channels and is added separately because it is not scaled.
_SCALED_CONVOLUTIONS = (
    (96, 3, 1),
    (96, 3, 1),
    (96, 3, 2),
    (192, 3, 1),
    (192, 3, 1),
    (192, 3, 2),
    (192, 3, 1),
    (192, 1, 1),
)


def scaled_channels(channels: int, width: float) -> int:
    """Return max(1, round(channels * width)): a convolution's channel count at this width."""
    return max(1, int(round(channels * width)))


def _check_arguments(num_classes, width, input_shape) -> tuple[int, int, int]:
    """Raise ValueError for arguments no model can be built from; return the input shape."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"num_classes must be a positive integer, got {num_classes!r}. "
            "CIFAR-10 has 10 classes and CIFAR-100 has 100."
        )
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(
            f"width must be a positive number, got {width!r}. "
            "1.0 builds the paper's model; smaller values build narrower, cheaper models."
        )
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or not all(
        isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in input_shape
    ):
        raise ValueError(
            f"input_shape must be (height, width, channels) with positive integers, got "
            f"{input_shape!r}. CIFAR images are (32, 32, 3)."
        )
    return input_shape


def _layer_plan(num_classes: int, width: float) -> list[tuple[int, int, int]]:
    """Return every convolution as (output channels, kernel size, stride), in order."""
    plan = [
        (scaled_channels(channels, width), kernel_size, strides)
        for channels, kernel_size, strides in _SCALED_CONVOLUTIONS
    ]
    plan.append((num_classes, 1, 1))
    return plan


def kernel_initializer(init: str, kernel_rank: int) -> keras.initializers.Initializer:
    """Glorot-uniform kernels with the fans of Keras <= 1.0.3 ("keras1") or of Keras 3.

    Keras 3's `GlorotUniform` takes the axes that count as fan-in and fan-out: for a
    channels-last kernel (k, k, c_in, c_out), Keras 1.0.3's fans are the product of the first
    three axes and the last axis alone. Dense kernels (c_in, c_out) get the same fans under
    both, so the argument only changes convolutions.
    """
    if init not in INITIALIZATIONS:
        raise ValueError(
            f"model.init is {init!r}; use one of {', '.join(INITIALIZATIONS)} "
            "(keras1 reproduces the paper's Keras 1.0.3 initialisation)."
        )
    if init == "keras3" or kernel_rank < 3:
        return keras.initializers.GlorotUniform()
    return keras.initializers.GlorotUniform(
        input_axes=list(range(kernel_rank - 1)), output_axes=[kernel_rank - 1]
    )


def glorot_limit(kernel_shape, init: str) -> float:
    """The half-width of the uniform distribution a kernel of this shape is drawn from."""
    kernel_shape = tuple(int(size) for size in kernel_shape)
    if len(kernel_shape) == 2 or init == "keras3":
        receptive_field = 1
        for size in kernel_shape[:-2]:
            receptive_field *= size
        fan_in = kernel_shape[-2] * receptive_field
        fan_out = kernel_shape[-1] * receptive_field
    else:
        fan_in = 1
        for size in kernel_shape[:-1]:
            fan_in *= size
        fan_out = kernel_shape[-1]
    return (6.0 / (fan_in + fan_out)) ** 0.5


def _check_choices(output_activation: str, init: str, stride2_padding: str) -> None:
    """Raise ValueError for an output activation, initialisation or padding not offered here."""
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"output_activation must be one of {', '.join(OUTPUT_ACTIVATIONS)}, got "
            f"{output_activation!r}. Use the `output_activation` of the loss's LossSpec "
            "(lossbench.core.losses.get_loss(name).output_activation)."
        )
    if stride2_padding not in STRIDE2_PADDINGS:
        raise ValueError(
            f"model.stride2_padding is {stride2_padding!r}; use one of "
            f"{', '.join(STRIDE2_PADDINGS)} (theano reproduces the paper's symmetric padding)."
        )
    kernel_initializer(init, 4)  # refuse an unknown `init` before building anything


def _convolution(features, position: int, channels: int, kernel_size: int, strides: int,
                 init: str, stride2_padding: str, name: str, activation: str = "relu"):
    """Apply the plan's convolution number `position` (`activation`: ReLU but for a linear
    final convolution) to `features`; return its output.

    Under "theano" padding a stride-2 convolution is preceded by a `pad_<position>` layer.
    """
    padding = "same"
    if strides > 1 and stride2_padding == "theano":
        # Theano's "half" mode: kernel_size // 2 zeros on every side, then a valid
        # convolution, so the windows start on the first pixel as the paper's did.
        features = layers.ZeroPadding2D(kernel_size // 2, name=f"pad_{position}")(features)
        padding = "valid"
    # Glorot-uniform kernels and zero biases were Keras 1's defaults, which the paper
    # used; they are spelled out so that a change of defaults in a later Keras cannot
    # silently change the experiment.
    return layers.Conv2D(
        channels,
        kernel_size,
        strides=strides,
        padding=padding,
        activation=activation,
        kernel_initializer=kernel_initializer(init, 4),
        bias_initializer="zeros",
        name=name,
    )(features)


def build_model(
    *,
    width: float,
    init: str,
    stride2_padding: str,
    num_classes: int = 10,
    output_activation: str = "softmax",
    input_shape=(32, 32, 3),
    name: str = "all_cnn",
    final_convolution_activation: str = "relu",
) -> keras.Model:
    """Build the paper's All-CNN variant (Listing 1.1) with the Functional API.

    Args:
        num_classes: number of classes, the size of the output row.
        width: multiplier on the 96- and 192-channel convolutions; each gets
            max(1, round(channels * width)) channels. The final `num_classes` convolution
            is not scaled. 1.0 reproduces the paper's 1,376,148 parameters.
        output_activation: "softmax" (the paper: all three of its losses read softmax
            probabilities) or "linear" (raw scores, for the textbook margin losses).
        input_shape: (height, width, channels) of one image, channels last.
        name: the model's name.
        init: "keras1" (the paper's: Keras <= 1.0.3 fans, no receptive field in fan_out)
            or "keras3" (today's Glorot-uniform); see the module docstring.
        stride2_padding: "theano" (the paper's: one pixel of zeros on every side before
            each stride-2 convolution) or "tensorflow" (TensorFlow's asymmetric "same").
        final_convolution_activation: "relu" (the paper's: every convolution has a ReLU) or
            "linear": the last convolution's class maps pass to the dense layer unclipped.

    Returns:
        An uncompiled `keras.Model` from images (batch, height, width, channels) to
        outputs (batch, num_classes), float32 even under a mixed-precision policy.
    """
    input_shape = _check_arguments(num_classes, width, input_shape)
    _check_choices(output_activation, init, stride2_padding)
    if final_convolution_activation not in ("relu", "linear"):
        raise ValueError(f"final_convolution_activation must be relu or linear, got "
                         f"{final_convolution_activation!r} (params.yaml: model.final_convolution_activation).")

    inputs = keras.Input(shape=input_shape, name="images")
    features = inputs
    plan = _layer_plan(num_classes, width)
    for position, (channels, kernel_size, strides) in enumerate(plan, start=1):
        final = position == len(plan)
        features = _convolution(
            features, position, channels, kernel_size, strides, init, stride2_padding,
            name=FINAL_CONVOLUTION_NAME if final else f"conv_{position}",
            activation=final_convolution_activation if final else "relu",
        )
    features = layers.Flatten(name="flatten")(features)
    scores = layers.Dense(
        num_classes,
        kernel_initializer=kernel_initializer(init, 2),
        bias_initializer="zeros",
        name="dense",
    )(features)
    # The activation runs in float32 so that, under a mixed-precision policy, the softmax
    # and the losses see float32 values rather than float16 ones that saturate near 1.
    outputs = layers.Activation(output_activation, dtype="float32", name="output")(scores)
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


def forward_flops_per_image(
    width: float = 1.0, num_classes: int = 10, input_shape=(32, 32, 3)
) -> float:
    """Return the analytic FLOPs of one image's forward pass through `build_model`.

    Convention: 2 FLOPs per multiply-accumulate (MAC) of the convolutions and the dense
    layer, summed over layers; bias additions, ReLUs, the softmax and the loss are not
    counted (they are under 0.2 % of the total). A convolution with "same" padding and
    stride s has ceil(H / s) x ceil(W / s) output positions, each costing
    kernel_height x kernel_width x input_channels x output_channels MACs; padded zeros are
    counted as if they were real inputs, as cuDNN computes them.

    At width 1.0, 10 classes and 32x32x3 images this is 281,180,416 MACs, i.e.
    562,360,832 FLOPs (0.562 GFLOP) per image.
    """
    height, image_width, channels_in = _check_arguments(num_classes, width, input_shape)
    total_macs = 0
    for channels_out, kernel_size, strides in _layer_plan(num_classes, width):
        # "Same" padding makes the output size ceil(input size / stride).
        height = -(-height // strides)
        image_width = -(-image_width // strides)
        total_macs += height * image_width * kernel_size * kernel_size * channels_in * channels_out
        channels_in = channels_out
    total_macs += height * image_width * channels_in * num_classes
    return 2.0 * total_macs


def training_flops_per_image(
    width: float = 1.0, num_classes: int = 10, input_shape=(32, 32, 3)
) -> float:
    """Return the analytic FLOPs of one training step's work per image: 3x the forward pass.

    Convention: a training step costs the forward pass plus two backward matrix products
    of the same size per layer (the gradient with respect to the layer's input and the
    gradient with respect to its weights), so 3 x `forward_flops_per_image`. The true count
    is slightly lower: the first convolution needs no gradient with respect to the images
    (its input gradient is 2 x 2,654,208 FLOPs at width 1.0, 0.3 % of the total), and the
    optimizer update (a few FLOPs per parameter, about 10^7 per step, shared by the batch)
    is not counted.

    At width 1.0, 10 classes and 32x32x3 images this is 1,687,082,496 FLOPs (1.687 GFLOP)
    per training image, matching the lead engineer's measurement of 1.687 GFLOP.
    """
    return 3.0 * forward_flops_per_image(width, num_classes, input_shape)
