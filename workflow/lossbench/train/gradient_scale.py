"""How strongly a loss pushes on the model's outputs: the mean |dL/d output|.

In:  a loss name (`lossbench.core.losses`), a batch of model outputs (batch, classes) and their
     integer labels.
Out: the mean over the batch and the classes of |d loss_i / d output_ik|, where loss_i is the
     per-sample loss (not divided by the batch size).

Why: plain SGD multiplies every gradient by one learning rate, so losses whose gradients differ
100-fold at initialisation (the paper's cross-entropy ~1, its softmax "hinge" ~0.01) train at
effective rates 100-fold apart. A ranking at one shared rate partly reflects that scale; the
report shows it beside the ranking, and the `tune` stage gives each loss its own rate.
"""

from __future__ import annotations

import numpy as np


def output_gradient_scale(loss_name: str, outputs: np.ndarray, labels: np.ndarray) -> float:
    """Mean |d loss_i / d output_ik| of `loss_name` at `outputs` (float32), by the backend's
    automatic differentiation (TensorFlow or JAX)."""
    import keras

    from lossbench.core.losses import get_loss

    function = get_loss(loss_name).function
    outputs = np.asarray(outputs, dtype=np.float32)
    labels = np.asarray(labels)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.constant(outputs)
        with tf.GradientTape() as tape:
            tape.watch(variable)
            total = tf.reduce_sum(function(tf.constant(labels), variable))
        gradient = tape.gradient(total, variable).numpy()
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        gradient = np.asarray(jax.grad(lambda values: jnp.sum(function(labels, values)))(outputs))
    else:
        raise ValueError(f"The gradient scale needs the tensorflow or jax backend, not {backend}.")
    return float(np.mean(np.abs(gradient)))
