"""Training on the JAX backend without Python per step: data on the device, steps fused.

In:  a compiled Keras model without augmentation layers (`lossbench.train.training` builds
     it so on JAX: Keras 3.15 refuses XLA for a model holding RandomTranslation), the
     job's settings, its training and validation arrays (uint8 images, int32 labels), the
     first epoch to train, the callbacks of `lossbench.train.callbacks` and the number of
     steps fused into one call.
Out: the model trained to `config.epochs`, the callbacks called as Keras's `fit` calls them
     (epoch begin and end with the same logs: loss, accuracy, val_loss, val_accuracy; a
     batch end after each call), so the checkpoint, history.json and the projection work
     unchanged.

Why: Keras's `fit` on JAX slices each batch on the host, copies it to the device and calls
the step from Python; with the augmentation layers it even runs the step op by op. Here the
prepared arrays are put on the device once per run, and one jitted call runs `steps` SGD
steps (a `lax.fori_loop` over Keras's own `train_step`, the arithmetic `fit` runs): each step
gathers its batch by index from the epoch's order (`lossbench.core.batches.
epoch_permutation`, the order the Keras path trains in), augments it on the device
(`lossbench.core.augment.shift_and_flip`) and trains on it. The epoch's last, short batch
(50,000 images are 1,562 batches of 32 and one of 16) has a compiled call of its own shape.

Reproducibility: the augmentation's seed of a step is (`epoch_seed(seed, epoch)`, step), so
every draw is a function of (seed, epoch, step), and a run resumed after any epoch trains
its remaining epochs bit for bit as an uninterrupted run on the same backend does. The
draws are not the Keras layers' draws: the two paths agree in distribution, not bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

# Steps fused into one call when `train.steps_per_execution` is auto. On a GPU a step of
# batch 32 takes about a millisecond, so 64 steps hide the call's overhead. On a CPU one step
# per call: XLA's CPU backend ran the loop's body ten times slower than the same step outside
# a loop (width 0.5, batch 32, JAX 0.10.2, 2-core EPYC: 5.3 s against 0.57 s per step), and a
# CPU step takes a tenth of a second or more, so the call's overhead is a small share anyway.
AUTO_STEPS_PER_CALL = {"gpu": 64, "cpu": 1}


def uses_device_loop() -> bool:
    """Whether training runs here: on the JAX backend (TensorFlow keeps Keras's `fit`)."""
    import keras

    return keras.backend.backend() == "jax"


def steps_per_call(setting, kind: str, full_batches: int) -> int:
    """Steps fused into one call: `train.steps_per_execution` when it is a number, else
    AUTO_STEPS_PER_CALL of the device `kind`; at most the epoch's full batches (and >= 1).
    It need not divide the epoch: the last call of an epoch runs the steps left."""
    wanted = AUTO_STEPS_PER_CALL[kind] if setting == "auto" else int(setting)
    return max(1, min(wanted, full_batches))


def loop_runtime(runtime, config, fit_count: int):
    """`runtime` (`lossbench.train.device.Runtime`) as the device loop runs on the JAX backend:
    XLA on, `steps_per_call` steps per call; unchanged on other backends."""
    import dataclasses

    if not uses_device_loop():
        return runtime
    steps = steps_per_call(config.steps_per_execution, runtime.device,
                           fit_count // config.batch_size)
    return dataclasses.replace(runtime, steps_per_execution=steps, jit_compile=True)


def compiled_steps(model, batch_size: int, stride: int, shift_fraction: float,
                   horizontal_flip: bool):
    """`_compile_steps`'s function, made once per model and settings (kept on the model), so
    that a second loop over the same model (a benchmark's) reuses the compiled code."""
    made = model.__dict__.setdefault("_lossbench_compiled_steps", {})
    key = (batch_size, stride, shift_fraction, horizontal_flip)
    if key not in made:
        made[key] = _compile_steps(model, *key)
    return made[key]


def _compile_steps(model, batch_size: int, stride: int, shift_fraction: float,
                   horizontal_flip: bool):
    """A jitted function (state, images, labels, order, epoch_seed, first_step, count) ->
    (logs, state) running `count` (>= 1, not static) SGD steps of `batch_size` images from
    step `first_step` of the epoch: step s trains on images[order[s * stride:][:batch_size]],
    augmented with seed (epoch_seed, s). `state` is Keras's JAX training state (trainable,
    non-trainable, optimizer and metrics variables' values) and is donated."""
    import jax
    import jax.numpy as jnp

    from lossbench.core.augment import shift_and_flip

    augment = shift_fraction > 0 or horizontal_flip

    def one_step(step, state, images, labels, order, epoch_seed):
        index = jax.lax.dynamic_slice_in_dim(order, step * stride, batch_size)
        batch = jnp.take(images, index, axis=0)
        if augment:
            seed = jnp.stack([epoch_seed, step.astype(jnp.uint32)])
            batch = shift_and_flip(batch, seed, shift_fraction, horizontal_flip)
        return model.train_step(state, (batch, jnp.take(labels, index, axis=0)))

    def run(state, images, labels, order, epoch_seed, first_step, count):
        logs, state = one_step(first_step, state, images, labels, order, epoch_seed)

        def body(offset, carried):
            return one_step(first_step + offset, carried[1], images, labels, order, epoch_seed)

        return jax.lax.fori_loop(1, count, body, (logs, state))

    return jax.jit(run, donate_argnums=0)


def _training_state(model):
    """Keras's JAX training state, taken out of the model's variables (as `fit` does)."""
    return model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                optimizer_variables=True, metrics_variables=True,
                                purge_model_variables=True)


def _hand_back(model, state) -> None:
    """Make `state` the model's current state, written to its variables at the next sync."""
    trainable, non_trainable, optimizer, metrics = state
    model._jax_state = {"trainable_variables": trainable, "non_trainable_variables": non_trainable,
                        "optimizer_variables": optimizer, "metrics_variables": metrics}
    model._jax_state_synced = False


class DeviceData:
    """The training arrays on the device and the compiled calls that train on them."""

    def __init__(self, model, images: np.ndarray, labels: np.ndarray, config, seed: int,
                 steps: int):
        import jax

        # The model's, the optimizer's and the metrics' variables exist before any state is taken.
        model._symbolic_build(data_batch=(images[:1], labels[:1]))
        self.images, self.labels = jax.device_put(images), jax.device_put(labels.astype(np.int32))
        self.count, self.batch_size, self.seed = len(labels), config.batch_size, seed
        self.shuffle, self.steps = config.shuffle, steps
        self.full_batches, short = divmod(self.count, self.batch_size)
        self.steps_per_epoch = math.ceil(self.count / self.batch_size)
        settings = (config.batch_size, config.shift_fraction, config.horizontal_flip)
        self.full = compiled_steps(model, settings[0], *settings)
        self.short = compiled_steps(model, short, *settings) if short else None

    def epoch_inputs(self, epoch: int) -> tuple:
        """(order, epoch seed) of `epoch` on the device."""
        import jax

        from lossbench.core.augment import epoch_seed
        from lossbench.core.batches import epoch_permutation

        order = epoch_permutation(self.count, self.seed, epoch, self.shuffle).astype(np.int32)
        return jax.device_put(order), np.uint32(epoch_seed(self.seed, epoch))

    def calls(self, state, epoch: int):
        """Yield (last step of the call, logs, state) for each call of epoch `epoch`."""
        order, seed = self.epoch_inputs(epoch)
        step = 0
        while step < self.steps_per_epoch:
            if step < self.full_batches:
                count = min(self.steps, self.full_batches - step)
                logs, state = self.full(state, self.images, self.labels, order, seed, step, count)
            else:
                count = 1
                logs, state = self.short(state, self.images, self.labels, order, seed, step, 1)
            step += count
            yield step - 1, logs, state


def fit_on_device(model, config, seed: int, fit_data: tuple, validation_data: tuple,
                  first_epoch: int, callbacks: list, steps: int, verbose: int) -> None:
    """Train epochs `first_epoch + 1` to `config.epochs` as Keras's `fit` would, with the
    batches gathered and augmented on the device, `steps` steps per call. Without
    `validation_data` (None) nothing is validated (a benchmark's loop)."""
    import keras

    images, labels = fit_data
    data = DeviceData(model, images, labels, config, seed, steps)
    callbacks = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose,
        epochs=config.epochs, steps=data.steps_per_epoch, model=model)
    model.stop_training, epoch_logs = False, {}
    callbacks.on_train_begin()
    try:
        for epoch in range(first_epoch, config.epochs):
            model.reset_metrics()
            callbacks.on_epoch_begin(epoch)
            state, logs = _training_state(model), {}
            for last_step, logs, state in data.calls(state, epoch):
                _hand_back(model, state)
                callbacks.on_train_batch_end(last_step, logs)
                if model.stop_training:
                    break
            model.jax_state_sync()
            epoch_logs = dict(model._get_metrics_result_or_logs(logs))
            validation = {} if validation_data is None else model.evaluate(
                *validation_data, batch_size=config.batch_size, verbose=0, return_dict=True)
            epoch_logs.update({f"val_{name}": value for name, value in validation.items()})
            callbacks.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
    finally:
        model.jax_state_sync()
        model._jax_state = None
    callbacks.on_train_end(logs=epoch_logs)
