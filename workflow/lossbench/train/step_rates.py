"""How fast training steps run, and what share of a step is spent outside the compiled step.

In:  a `TrainConfig` (its width, batch size, precision, augmentation), how many steps to time
     and for how long, and which training path: Keras's `fit` (TensorFlow, and JAX's former
     path) or the JAX device loop (`lossbench.train.device_loop`, the default on JAX).
Out: `training_rates`: {"path", "train_images_per_s" (the path as training runs it: its
     feeding, callbacks and Python between calls; per step at the margin of a short epoch), "compiled_images_per_s" (the compiled
     training computation alone, called back to back on data already on the device), and
     "host_share" (1 - the first over the second, at least 0: the share of a step's wall time
     spent outside the compiled computation: feeding, Python, copies)}.

The compiled computation of Keras's `fit` on JAX does not exist (Keras refuses XLA for a
model with RandomTranslation, so it runs op by op): its compiled rate is the device loop's
compiled step of the same net and batch, the same arithmetic. `lossbench bench` reports all
of it per backend.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

# Steps timed back to back to measure the compiled step alone, at least.
MIN_COMPILED_STEPS = 2


def _seconds(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _random_data(batch_size: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(batch_size * steps, 32, 32, 3), dtype=np.uint8)
    return images, rng.integers(0, 10, size=batch_size * steps).astype(np.int32)


def _build(config, device_loop: bool):
    from lossbench.train.training import build_training_model

    return build_training_model(config, "categorical_crossentropy", seed=0, num_classes=10,
                                device_loop=device_loop)[0]


def _keras_fit_seconds(model, config, images, labels, steps: int) -> float:
    """Keras's `fit` over `steps` batches, the feeding of `lossbench.core.batches`."""
    from lossbench.core.batches import make_batches

    count = config.batch_size * steps
    batches = make_batches(images[:count], labels[:count], config.batch_size)
    return _seconds(lambda: model.fit(**batches, epochs=1, verbose=0))


def _device_loop_seconds(model, config, images, labels, steps: int, per_call: int) -> float:
    """One epoch of `steps` batches through the device loop as training runs it (the arrays
    put on the device, the callbacks that read each call's loss), without validation."""
    from lossbench.train.callbacks import EpochRecorder
    from lossbench.train.device_loop import fit_on_device

    count = config.batch_size * steps
    one_epoch = dataclasses.replace(config, epochs=1)
    recorder = EpochRecorder(lambda record, diverged: None)
    return _seconds(lambda: fit_on_device(model, one_epoch, 0, (images[:count], labels[:count]),
                                          None, 0, [recorder], per_call, verbose=0))


def _jax_compiled_seconds(model, config, images, labels, steps: int, per_call: int) -> float:
    """The device loop's compiled calls alone, back to back on resident data, `steps` steps."""
    import jax

    from lossbench.train.device_loop import DeviceData, _hand_back, _training_state

    data = DeviceData(model, images, labels, config, 0, per_call)
    order, seed = data.epoch_inputs(0)
    state = _training_state(model)
    calls = [min(per_call, steps - first) for first in range(0, steps, per_call)]

    def run(state):
        for first, count in zip(range(0, steps, per_call), calls):
            logs, state = data.full(state, data.images, data.labels, order, seed, first, count)
        jax.block_until_ready(state)
        return state

    state = run(state)  # compilation: not timed
    started = time.perf_counter()
    state = run(state)
    seconds = time.perf_counter() - started
    _hand_back(model, state)
    model.jax_state_sync()
    return seconds


def _tensorflow_compiled_seconds(model, images, labels, steps: int) -> float:
    """Keras's train step in one `tf.function` (XLA as the model is compiled), called
    `steps` times on one batch (`images`, `labels`) already made a tensor: the step's graph
    without Keras's `fit` around it (whose own function is not reachable from outside)."""
    import tensorflow as tf

    x, y = tf.constant(images), tf.constant(labels)
    step = tf.function(lambda: model.train_step((x, y)), jit_compile=bool(model.jit_compile))
    step()  # tracing and compilation: not timed

    def run():
        for _ in range(steps):
            logs = step()
        float(logs["loss"])

    return _seconds(run)


def training_rates(config, max_steps: int, warmup_steps: int, target_seconds: float,
                   device_loop: bool | None = None, kind: str = "cpu") -> dict:
    """The rates of module docstring for `config` (its batch size and precision) on device
    `kind`. After `warmup_steps` (tracing, compilation) a two-step probe estimates the rate
    and the timed run takes as many steps as fit in `target_seconds` (2 to `max_steps`)."""
    import keras

    from lossbench.train.device_loop import steps_per_call, uses_device_loop

    device_loop = uses_device_loop() if device_loop is None else device_loop
    images, labels = _random_data(config.batch_size, max_steps)
    model = _build(config, device_loop)

    def path_seconds(steps: int) -> float:
        if not device_loop:
            return _keras_fit_seconds(model, config, images, labels, steps)
        per_call = steps_per_call(config.steps_per_execution, kind, steps)
        return _device_loop_seconds(model, config, images, labels, steps, per_call)

    path_seconds(max(warmup_steps, 2))
    probe = path_seconds(2)
    steps = int(min(max_steps, max(2, round(target_seconds * 2 / probe))))
    seconds = path_seconds(steps)
    # Per step at the margin, (t(steps) - t(2)) / (steps - 2): a timed epoch of a few steps
    # must not charge each step its share of the epoch's fixed costs (the arrays put on the
    # device, the state taken and handed back), which a real epoch of 1,563 steps spreads thin.
    marginal = (seconds - probe) / (steps - 2) if steps > 2 and seconds > probe else seconds / steps
    path_rate = config.batch_size / marginal
    compiled_steps = max(MIN_COMPILED_STEPS, steps)
    if keras.backend.backend() == "tensorflow":
        compiled = _tensorflow_compiled_seconds(model, images[:config.batch_size],
                                                labels[:config.batch_size], compiled_steps)
    else:
        compiled_model = model if device_loop else _build(config, True)
        per_call = steps_per_call(config.steps_per_execution, kind, compiled_steps)
        compiled = _jax_compiled_seconds(compiled_model, config, images[:config.batch_size * compiled_steps],
                                         labels[:config.batch_size * compiled_steps], compiled_steps, per_call)
    compiled_rate = config.batch_size * compiled_steps / compiled
    return {"path": "device_loop" if device_loop else "keras_fit",
            "train_images_per_s": path_rate, "compiled_images_per_s": compiled_rate,
            "host_share": max(0.0, 1.0 - path_rate / compiled_rate)}
