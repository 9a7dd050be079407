"""The paper's All-CNN variant, and its analytic cost in FLOPs.

In: the number of classes, a width multiplier on the convolution channel counts, the output
activation ("softmax" for the paper's losses, "linear" for the textbook margin losses) and
the image shape (height, width, channels), channels last.
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
"""

from __future__ import annotations

import keras
from keras import layers

OUTPUT_ACTIVATIONS = ("softmax", "linear")

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


def build_model(
    num_classes: int = 10,
    width: float = 1.0,
    output_activation: str = "softmax",
    input_shape=(32, 32, 3),
    name: str = "all_cnn",
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

    Returns:
        An uncompiled `keras.Model` from images (batch, height, width, channels) to
        outputs (batch, num_classes), float32 even under a mixed-precision policy.
    """
    input_shape = _check_arguments(num_classes, width, input_shape)
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"output_activation must be one of {', '.join(OUTPUT_ACTIVATIONS)}, got "
            f"{output_activation!r}. Use the `output_activation` of the loss's LossSpec "
            "(lossbench.losses.get_loss(name).output_activation)."
        )

    inputs = keras.Input(shape=input_shape, name="images")
    features = inputs
    for index, (channels, kernel_size, strides) in enumerate(_layer_plan(num_classes, width)):
        # Glorot-uniform kernels and zero biases were Keras 1's defaults, which the paper
        # used; Keras 3 has the same defaults, but they are spelled out so that a change of
        # defaults in a later Keras cannot silently change the experiment.
        features = layers.Conv2D(
            channels,
            kernel_size,
            strides=strides,
            padding="same",
            activation="relu",
            kernel_initializer="glorot_uniform",
            bias_initializer="zeros",
            name=f"conv_{index + 1}",
        )(features)
    features = layers.Flatten(name="flatten")(features)
    scores = layers.Dense(
        num_classes,
        kernel_initializer="glorot_uniform",
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
