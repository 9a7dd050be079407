"""Validation on the device (`lossbench.train.device_loop`): Keras's own `test_step` over the
validation images of one run or of every run of a pack, in one compiled call.

In:  a compiled Keras model (its `test_step`), a batch size, whether the call is for a pack.
Out: the jitted function of `compiled_validation`, kept on the model.
"""

from __future__ import annotations


def compiled_validation(model, batch_size: int, pack: bool):
    """A jitted function (state, metrics, images, labels, index, first, count) -> (logs,
    metrics): Keras's `test_step` over `count` (not static) batches of `batch_size` images,
    images[index[(first + b) * batch_size:][:batch_size]], from the metrics variables'
    values `metrics` on; `state` is (trainable, non-trainable) values. The logs are those of
    the metrics after the last batch. With `pack`, every argument but images and labels, and
    the results, have one entry per run. Made once per model (kept on it)."""
    import jax

    made = model.__dict__.setdefault("_lossbench_compiled_validation", {})
    if (batch_size, pack) in made:
        return made[(batch_size, pack)]
    import jax.numpy as jnp

    def one_batch(batch, state, metrics, images, labels, index):
        rows = jax.lax.dynamic_slice_in_dim(index, batch * batch_size, batch_size)
        logs, (_, _, metrics) = model.test_step(
            (*state, metrics), (jnp.take(images, rows, axis=0), jnp.take(labels, rows, axis=0)))
        return logs, metrics

    def run(state, metrics, images, labels, index, first, count):
        logs, metrics = one_batch(first, state, metrics, images, labels, index)

        def body(offset, carried):
            return one_batch(first + offset, state, carried[1], images, labels, index)

        return jax.lax.fori_loop(1, count, body, (logs, metrics))

    if pack:
        run = jax.vmap(run, in_axes=(0, 0, None, None, 0, None, None))
    made[(batch_size, pack)] = jax.jit(run)
    return made[(batch_size, pack)]
