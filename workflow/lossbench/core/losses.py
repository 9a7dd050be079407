"""The loss functions compared, as a registry of name -> LossSpec.

In: integer class labels `y_true`, shape (batch,) or (batch, 1), possibly cast to float by
Keras; and the model outputs `y_pred`, shape (batch, num_classes), of any float dtype.
Out: one loss value per sample, a float32 tensor of shape (batch,). Keras averages it over
the batch when a function is passed to `model.compile(loss=...)`.

Each `LossSpec` also says which output activation the model must end in: the paper's three
losses read softmax probabilities, the textbook margin losses read raw linear scores.

The paper (Keras 1 on Theano) put a softmax under all three of its losses, and Keras 1's
`hinge` and `squared_hinge` did not turn 0/1 targets into -1/+1 targets. Its "hinge" was
therefore mean_k max(0, 1 - y_k p_k) with one-hot y and softmax p, which for 10 classes
equals 0.9 + 0.1 (1 - p_true): every wrong class contributes a constant 1. Modern Keras
converts the targets, so its `hinge` is a different loss. `hinge` and `squared_hinge` here
reproduce the paper's losses; `ova_hinge`, `ova_squared_hinge` and `crammer_singer_hinge`
are the textbook margin losses the paper's equations describe.

Three losses the last decade added sit beside them, to ask what a loss changes besides
accuracy (calibration, robustness to wrong labels):

- `square` (Hui & Belkin, ICLR 2021): the mean squared error of the raw linear scores against
  the one-hot targets, mean_k (s_k - y_k)^2, found as good as cross-entropy across tasks.
- `mae` (Ghosh, Kumar & Sastry, AAAI 2017): the L1 distance between the softmax output and the
  one-hot target, sum_k |y_k - p_k| = 2 (1 - p_true), provably robust to symmetric label noise.
  It is the sum over classes, as in Ghosh et al. and Zhang & Sabuncu, not Keras's mean.
- `generalized_cross_entropy` (Zhang & Sabuncu, NeurIPS 2018): L_q = (1 - p_true^q) / q with
  q = 0.7 on softmax outputs; it tends to cross-entropy as q -> 0 and is MAE / 2 at q = 1.

The paper's hinge is an MAE: with 0/1 targets on softmax outputs, for K classes
mean_k max(0, 1 - y_k p_k) = (K - 1) / K + (1 - p_true) / K = (K - 1) / K + MAE / (2 K), so
for 10 classes it is 0.9 + 0.05 MAE: the same gradient direction as MAE, a twentieth of its
size (tests/test_losses.py shows the identity).

Adding a loss takes one function below and one entry in `LOSSES`; the `enum` of
`train.losses` in workflow/schemas/params.schema.yaml must list the same names (a test
checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import ops

# Zhang & Sabuncu's q for the generalized cross-entropy (their CIFAR experiments).
GCE_Q = 0.7

# The largest finite float32 value, used instead of infinity to mask the true class out of
# a maximum, so that no infinity can ever meet a multiplication by zero and become NaN.
_FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class LossSpec:
    """A loss function and what it needs.

    Attributes:
        name: the registry key, as written in params.yaml under `train.losses`.
        function: `function(y_true, y_pred) -> per-sample loss (batch,)`.
        output_activation: the activation `lossbench.core.model.build_model` must end in,
            "softmax" or "linear".
        formula: the loss in one line of plain text, for reports and figure captions.
    """

    name: str
    function: Callable
    output_activation: str
    formula: str


def _prepare(y_true, y_pred):
    """Return (one-hot float32 targets, float32 outputs) from integer labels and outputs."""
    # Outputs are cast first so that float16 or bfloat16 outputs of a mixed-precision model
    # are never squared, logged or summed in 16 bits.
    y_pred = ops.cast(y_pred, "float32")
    num_classes = y_pred.shape[-1]
    if num_classes is None:
        raise ValueError(
            "The model outputs must have a known last dimension (the number of classes); "
            f"got shape {y_pred.shape}."
        )
    true_shape = tuple(y_true.shape)
    if len(true_shape) > 2 or (len(true_shape) == 2 and true_shape[-1] not in (1, None)):
        raise ValueError(
            "lossbench losses take integer class labels of shape (batch,) or (batch, 1), "
            f"got labels of shape {true_shape}. Pass class indices, not one-hot vectors."
        )
    # Keras casts labels to the loss dtype (float32) before calling the loss; labels are
    # small integers, which float32 represents exactly, so the cast back is lossless.
    labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    one_hot = ops.one_hot(labels, num_classes, dtype="float32")
    return one_hot, y_pred


@keras.saving.register_keras_serializable(package="lossbench")
def categorical_crossentropy(y_true, y_pred):
    """Cross-entropy on softmax outputs: -log clip(p_true, eps, 1 - eps), as Keras clips."""
    one_hot, probabilities = _prepare(y_true, y_pred)
    # Keras clips probabilities to [eps, 1 - eps] so that a confident wrong prediction
    # gives a large finite loss rather than an infinite one.
    epsilon = keras.config.epsilon()
    probabilities = ops.clip(probabilities, epsilon, 1.0 - epsilon)
    return -ops.sum(one_hot * ops.log(probabilities), axis=-1)


@keras.saving.register_keras_serializable(package="lossbench")
def hinge(y_true, y_pred):
    """The paper's Keras 1 hinge: mean_k max(0, 1 - y_k p_k) with 0/1 targets y on softmax p."""
    one_hot, probabilities = _prepare(y_true, y_pred)
    # The targets stay 0/1, as Keras 1 left them, so each wrong class adds a constant 1 and
    # only the true class's probability is pushed up.
    return ops.mean(ops.relu(1.0 - one_hot * probabilities), axis=-1)


@keras.saving.register_keras_serializable(package="lossbench")
def squared_hinge(y_true, y_pred):
    """The paper's Keras 1 squared hinge: mean_k max(0, 1 - y_k p_k)^2, 0/1 targets, softmax p."""
    one_hot, probabilities = _prepare(y_true, y_pred)
    return ops.mean(ops.square(ops.relu(1.0 - one_hot * probabilities)), axis=-1)


@keras.saving.register_keras_serializable(package="lossbench")
def ova_hinge(y_true, y_pred):
    """One-vs-all L1-SVM (Tang 2013): mean_k max(0, 1 - t_k s_k), t_k in {-1, +1}, raw scores s."""
    one_hot, scores = _prepare(y_true, y_pred)
    # Each class is its own binary SVM: the true class wants a score of at least +1, every
    # other class a score of at most -1.
    signs = 2.0 * one_hot - 1.0
    return ops.mean(ops.relu(1.0 - signs * scores), axis=-1)


@keras.saving.register_keras_serializable(package="lossbench")
def ova_squared_hinge(y_true, y_pred):
    """One-vs-all L2-SVM (Tang 2013): mean_k max(0, 1 - t_k s_k)^2, t_k in {-1, +1}, raw scores s."""
    one_hot, scores = _prepare(y_true, y_pred)
    signs = 2.0 * one_hot - 1.0
    return ops.mean(ops.square(ops.relu(1.0 - signs * scores)), axis=-1)


@keras.saving.register_keras_serializable(package="lossbench")
def crammer_singer_hinge(y_true, y_pred):
    """Crammer-Singer multiclass hinge: max(0, 1 + max_{k != t} s_k - s_t) on raw scores s."""
    one_hot, scores = _prepare(y_true, y_pred)
    true_score = ops.sum(one_hot * scores, axis=-1)
    # The true class is replaced by the lowest float32 value so that the maximum runs over
    # the other classes only; its gradient then flows to the highest-scoring wrong class.
    other_scores = ops.where(one_hot > 0.5, -_FLOAT32_MAX, scores)
    return ops.relu(1.0 + ops.max(other_scores, axis=-1) - true_score)


@keras.saving.register_keras_serializable(package="lossbench")
def square(y_true, y_pred):
    """Square loss (Hui & Belkin 2021): mean_k (s_k - y_k)^2 of raw scores s, one-hot 0/1 y."""
    one_hot, scores = _prepare(y_true, y_pred)
    return ops.mean(ops.square(scores - one_hot), axis=-1)


@keras.saving.register_keras_serializable(package="lossbench")
def mae(y_true, y_pred):
    """MAE on softmax outputs (Ghosh et al. 2017): sum_k |y_k - p_k| = 2 (1 - p_true)."""
    one_hot, probabilities = _prepare(y_true, y_pred)
    return ops.sum(ops.abs(one_hot - probabilities), axis=-1)


def generalized_cross_entropy_q(y_true, y_pred, q: float):
    """L_q = (1 - p_true^q) / q on softmax outputs, p_true clipped to [eps, 1] (0 < q <= 1).

    p^q has an infinite slope at p = 0 for q < 1; the clip (Keras's epsilon, as cross-entropy
    clips) keeps the gradient finite when a softmax underflows.
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"The generalized cross-entropy needs 0 < q <= 1, got q = {q}.")
    one_hot, probabilities = _prepare(y_true, y_pred)
    true_probability = ops.sum(one_hot * probabilities, axis=-1)
    true_probability = ops.clip(true_probability, keras.config.epsilon(), 1.0)
    return (1.0 - ops.power(true_probability, q)) / q


@keras.saving.register_keras_serializable(package="lossbench")
def generalized_cross_entropy(y_true, y_pred):
    """Generalized cross-entropy (Zhang & Sabuncu 2018): (1 - p_true^q) / q, q = 0.7, softmax p."""
    return generalized_cross_entropy_q(y_true, y_pred, GCE_Q)


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec(
            "categorical_crossentropy",
            categorical_crossentropy,
            "softmax",
            "-log p_true, p = softmax(s) clipped to [eps, 1 - eps]",
        ),
        LossSpec(
            "hinge",
            hinge,
            "softmax",
            "mean_k max(0, 1 - y_k p_k), y one-hot 0/1, p = softmax(s) (paper, Keras 1)",
        ),
        LossSpec(
            "squared_hinge",
            squared_hinge,
            "softmax",
            "mean_k max(0, 1 - y_k p_k)^2, y one-hot 0/1, p = softmax(s) (paper, Keras 1)",
        ),
        LossSpec(
            "ova_hinge",
            ova_hinge,
            "linear",
            "mean_k max(0, 1 - t_k s_k), t_k = +1 for the true class, -1 otherwise",
        ),
        LossSpec(
            "ova_squared_hinge",
            ova_squared_hinge,
            "linear",
            "mean_k max(0, 1 - t_k s_k)^2, t_k = +1 for the true class, -1 otherwise",
        ),
        LossSpec(
            "crammer_singer_hinge",
            crammer_singer_hinge,
            "linear",
            "max(0, 1 + max_{k != true} s_k - s_true)",
        ),
        LossSpec(
            "square",
            square,
            "linear",
            "mean_k (s_k - y_k)^2, y one-hot 0/1, raw scores s (Hui & Belkin 2021)",
        ),
        LossSpec(
            "mae",
            mae,
            "softmax",
            "sum_k |y_k - p_k| = 2 (1 - p_true), p = softmax(s) (Ghosh et al. 2017)",
        ),
        LossSpec(
            "generalized_cross_entropy",
            generalized_cross_entropy,
            "softmax",
            f"(1 - p_true^q) / q, q = {GCE_Q}, p = softmax(s) (Zhang & Sabuncu 2018)",
        ),
    )
}

LOSS_NAMES: tuple[str, ...] = tuple(LOSSES)


def get_loss(name: str) -> LossSpec:
    """Return the LossSpec registered under `name`; raise ValueError naming the valid ones."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown loss {name!r}. Valid loss names: {', '.join(LOSS_NAMES)}."
        ) from None
