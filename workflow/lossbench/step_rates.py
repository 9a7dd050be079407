"""How fast training steps run, and what share of a step is spent outside the compiled step.

In:  a `TrainConfig` (its width, batch size, precision, augmentation), how many steps to time
     and for how long, and which training path: Keras's `fit` (TensorFlow, and JAX's former
     path) or the JAX device loop (`lossbench.train.device_loop`, the default on JAX).
Out: `training_rates`: {"path", "train_images_per_s" (the path as training runs it: its
     feeding, callbacks and Python between calls, in the steady state of an epoch),
     "compiled_images_per_s" (the compiled training computation alone, called back to back on
     data already on the device), and "host_share" (1 - the first over the second, at least
     0: the share of a step's wall time spent outside the compiled computation: feeding,
     Python, copies)}.

Both rates are steady-state rates, timed the same way: from the end of an epoch's first call
(which carries the epoch's fixed costs: arrays put on the device, the state taken out of the
model, tracing) to the end of its last, each end marked after the call's loss is read (so the
device has finished it). The two are measured in turns, `repeats` times, and each rate is the
median of its turns, so that a load that changes during the measurement (other work on a
2-core machine) falls on both alike. (The estimate this replaced took the per-step margin
between two epochs of different lengths: on one quiet 2-core EPYC it read the JAX device
loop's host share as 79.5 % over 6 steps, 29.7 % over 24 and 7.4 % over 40.)

The compiled computation of Keras's `fit` on JAX does not exist (Keras refuses XLA for a
model with RandomTranslation, so it runs op by op): its compiled rate is the device loop's
compiled step of the same net and batch, the same arithmetic. `lossbench bench` reports all
of it per backend.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np


class StepClock(keras.callbacks.Callback):
    """Marks the end of each call as (last step of the call, seconds), after reading the
    call's loss, which waits for the device to finish the call."""

    def __init__(self):
        super().__init__()
        self.marks = []

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None:
            float(loss)
        self.marks.append((batch, time.perf_counter()))


def steady_step_seconds(marks: list[tuple[int, float]]) -> float:
    """Seconds per step from the end of the first call to the end of the last (`marks`:
    (last step of the call, time) per call, in order). At least two calls are needed."""
    if len(marks) < 2:
        raise ValueError(f"A steady-state rate needs at least two timed calls, got {len(marks)}; "
                         "time more steps than one call runs.")
    (first_step, first_time), (last_step, last_time) = marks[0], marks[-1]
    return (last_time - first_time) / (last_step - first_step)


def _random_data(batch_size: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(batch_size * steps, 32, 32, 3), dtype=np.uint8)
    return images, rng.integers(0, 10, size=batch_size * steps).astype(np.int32)


def _build(config, device_loop: bool):
    from lossbench.train.training import build_training_model

    return build_training_model(config, "categorical_crossentropy", seed=0, num_classes=10,
                                device_loop=device_loop)[0]


def _keras_fit_step_seconds(model, config, images, labels, steps: int) -> float:
    """Keras's `fit` over `steps` batches (the feeding of `lossbench.core.batches`), per step
    in the steady state."""
    from lossbench.core.batches import make_batches

    count = config.batch_size * steps
    batches = make_batches(images[:count], labels[:count], config.batch_size)
    clock = StepClock()
    model.fit(**batches, epochs=1, verbose=0, callbacks=[clock])
    return steady_step_seconds(clock.marks)


def _device_loop_step_seconds(model, config, images, labels, steps: int, per_call: int) -> float:
    """One epoch of `steps` batches through the device loop as training runs it (the arrays
    put on the device, the callbacks that read each call's loss), without validation; per
    step in the steady state."""
    from lossbench.train.callbacks import EpochRecorder
    from lossbench.train.device_loop import fit_on_device

    count = config.batch_size * steps
    one_epoch = dataclasses.replace(config, epochs=1)
    recorder, clock = EpochRecorder(lambda record, diverged: None), StepClock()
    fit_on_device(model, one_epoch, 0, (images[:count], labels[:count]), None, 0,
                  [recorder, clock], per_call, verbose=0)
    return steady_step_seconds(clock.marks)


def compiled_call_seconds(data, steps: int, per_call: int) -> tuple[float, object]:
    """(seconds per step in the steady state, the state reached) of `data`'s compiled calls
    (`lossbench.train.device_loop.PackData`, one run or a pack) run back to back on resident
    data for `steps` steps of epoch 0, each call's loss read before the clock."""
    import jax

    orders, seeds = data.epoch_inputs(0)
    state, marks = data.state(), []
    for first in range(0, steps, per_call):
        count = min(per_call, steps - first)
        logs, state = data.full(state, data.learning_rates, data.images, data.labels, orders,
                                seeds, first, count)
        jax.block_until_ready(logs["loss"])
        marks.append((first + count - 1, time.perf_counter()))
    return steady_step_seconds(marks), state


def _jax_compiled_step_seconds(model, config, images, labels, steps: int, per_call: int) -> float:
    """The device loop's compiled calls alone, back to back on resident data, `steps` steps;
    per step in the steady state (the first call untimed, as for the path)."""
    import jax

    from lossbench.train.device_loop import PackData, PackMember, hand_back

    member = PackMember(model, 0, float(config.learning_rate), np.arange(len(labels)), None, [])
    data = PackData([member], images, labels, config, per_call)
    seconds, state = compiled_call_seconds(data, steps, per_call)
    jax.block_until_ready(state)
    hand_back(model, state)
    model.jax_state_sync()
    return seconds


def _tensorflow_compiled_step_seconds(model, images, labels, steps: int) -> float:
    """Keras's train step in one `tf.function` (XLA as the model is compiled), called
    `steps` times on one batch (`images`, `labels`) already made a tensor: the step's graph
    without Keras's `fit` around it (whose own function is not reachable from outside); per
    step in the steady state, each step's loss read as the path's clock reads it."""
    import tensorflow as tf

    # Traced and compiled once per model (kept on it), not once per timed turn.
    made = model.__dict__.setdefault("_lossbench_timed_step", {})
    if images.shape not in made:
        x, y = tf.constant(images), tf.constant(labels)
        made[images.shape] = tf.function(lambda: model.train_step((x, y)),
                                         jit_compile=bool(model.jit_compile))
        made[images.shape]()  # tracing and compilation: not timed
    step, marks = made[images.shape], []
    for index in range(steps):
        float(step()["loss"])
        marks.append((index, time.perf_counter()))
    return steady_step_seconds(marks)


def _median(values: list[float]) -> float:
    return float(np.median(values))


def training_rates(config, max_steps: int, warmup_steps: int, target_seconds: float,
                   device_loop: bool | None = None, kind: str = "cpu", repeats: int = 2) -> dict:
    """The rates of the module docstring for `config` (its batch size and precision) on
    device `kind`. After `warmup_steps` (tracing, compilation) a short probe estimates the
    step time; each timed epoch then takes as many steps as fit in `target_seconds` (at least
    two calls, at most `max_steps`), and the path and the compiled computation are timed in
    turns, `repeats` times each."""
    from lossbench.train.device_loop import steps_per_call, uses_device_loop

    device_loop = uses_device_loop() if device_loop is None else device_loop
    images, labels = _random_data(config.batch_size, max_steps)
    model = _build(config, device_loop)
    compiled_model = model if device_loop or keras.backend.backend() == "tensorflow" else _build(config, True)

    def per_call(steps: int) -> int:
        # At most a third of the timed steps per call, so that every timed epoch has calls
        # after the first (64 steps per call on a GPU, one on a CPU: `steps_per_call`).
        return steps_per_call(config.steps_per_execution, kind, max(1, steps // 3)) if device_loop else 1

    def path_step_seconds(steps: int) -> float:
        if not device_loop:
            return _keras_fit_step_seconds(model, config, images, labels, steps)
        return _device_loop_step_seconds(model, config, images, labels, steps, per_call(steps))

    def compiled_step_seconds(steps: int) -> float:
        if keras.backend.backend() == "tensorflow":
            return _tensorflow_compiled_step_seconds(model, images[:config.batch_size],
                                                     labels[:config.batch_size], steps)
        count = config.batch_size * steps
        return _jax_compiled_step_seconds(compiled_model, config, images[:count], labels[:count],
                                          steps, per_call(steps))

    path_step_seconds(max(warmup_steps, 2))
    probe = path_step_seconds(min(max_steps, max(3, 3 * per_call(max_steps))))
    steps = int(min(max_steps, max(3, round(target_seconds / probe))))
    path, compiled = [], []
    for _ in range(repeats):
        path.append(path_step_seconds(steps))
        compiled.append(compiled_step_seconds(steps))
    path_rate, compiled_rate = config.batch_size / _median(path), config.batch_size / _median(compiled)
    return {"path": "device_loop" if device_loop else "keras_fit",
            "train_images_per_s": path_rate, "compiled_images_per_s": compiled_rate,
            "host_share": max(0.0, 1.0 - path_rate / compiled_rate), "timed_steps": steps,
            "repeats": repeats}
