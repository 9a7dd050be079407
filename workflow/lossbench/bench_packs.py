"""The pack curve: training images/s of packs of 1, 2, 4, ... runs of the paper's model at
batch 32 each, beside one run's, in each precision (a benchmark; no stage reads it).

In:  the training settings (`lossbench.train.training.TrainConfig`), the pack sizes and
     precisions to measure, the steps to time and the steps per call, a time budget.
Out: one row per (precision, pack size): aggregate training images/s through the device loop
     as training runs it (`path_images_per_s`: the pack's callbacks reading each call's losses),
     of its compiled calls alone back to back (`compiled_images_per_s`), the host's share
     (1 - path / compiled), the gain over one run of the same precision measured in the same
     call (`gain_over_one`), or why the row was not measured (`error`: out of memory, or the
     budget spent before it).

Both rates are steady-state rates, from the end of the first call (which carries compilation
and the arrays' transfer) to the end of the last, as `lossbench.step_rates` times one
run; the data are random images (their values do not change a step's time). JAX only: the
device loop is JAX's.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from lossbench.step_rates import StepClock, compiled_call_seconds, steady_step_seconds

logger = logging.getLogger(__name__)


def _members(config, size: int, images: np.ndarray, clock: StepClock | None):
    from lossbench.train.device_loop import PackMember
    from lossbench.train.training import build_training_model

    members = []
    for seed in range(size):
        model = build_training_model(config, "categorical_crossentropy", seed, num_classes=10,
                                     device_loop=True)[0]
        callbacks = [clock] if clock is not None and seed == 0 else []
        members.append(PackMember(model, seed, float(config.learning_rate),
                                  np.arange(len(images)), None, callbacks))
    return members


def pack_rate(config, size: int, steps: int, per_call: int) -> dict:
    """One row of the curve: `size` runs in `config`'s precision, `steps` steps of
    `config.batch_size` images per run, `per_call` steps per call."""
    from lossbench.train.device_loop import PackData, fit_pack_on_device

    rng = np.random.default_rng(0)
    count = config.batch_size * steps
    images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count).astype(np.int32)
    one_epoch = dataclasses.replace(config, epochs=1)
    clock = StepClock()
    # The path: one epoch as training runs it, compiled in its first call.
    fit_pack_on_device(_members(one_epoch, size, images, clock), one_epoch, images, labels, 0,
                       per_call, verbose=0)
    path_seconds = steady_step_seconds(clock.marks)
    # The compiled calls alone, back to back on resident data (compiled already).
    members = _members(one_epoch, size, images, None)
    data = PackData(members, images, labels, one_epoch, per_call)
    compiled_seconds = compiled_call_seconds(data, steps, per_call)[0]
    path_rate = size * config.batch_size / path_seconds
    compiled_rate = size * config.batch_size / compiled_seconds
    return {"pack_size": size, "precision": config.precision, "batch_size": config.batch_size,
            "timed_steps": steps, "steps_per_call": per_call,
            "path_images_per_s": path_rate, "compiled_images_per_s": compiled_rate,
            "host_share": max(0.0, 1.0 - path_rate / compiled_rate)}


def pack_curve(config, sizes: list[int], precisions: list[str], steps: int, per_call: int,
               seconds: float) -> list[dict]:
    """Rows of `pack_rate` for every precision and size, in that order, until `seconds` have
    passed (later rows then say so); each row's gain over the same precision's one run."""
    import keras

    started, rows = time.monotonic(), []
    for precision in precisions:
        for size in sizes:
            row = {"pack_size": size, "precision": precision, "batch_size": config.batch_size}
            if time.monotonic() - started > seconds:
                row["error"] = f"not measured: the curve's {seconds:.0f} s were spent"
                rows.append(row)
                continue
            try:
                keras.mixed_precision.set_dtype_policy(precision)
                row = pack_rate(dataclasses.replace(config, precision=precision), size, steps,
                                per_call)
            except Exception as error:  # noqa: BLE001 - out of memory ends a row, not the curve
                row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
                logger.warning("pack of %d in %s not measured: %s", size, precision, row["error"])
            finally:
                keras.mixed_precision.set_dtype_policy("float32")
                keras.backend.clear_session()
            rows.append(row)
            if "error" not in row:
                logger.info("pack %2d %-14s %9.0f images/s (compiled %9.0f, host %4.1f %%)",
                            size, precision, row["path_images_per_s"],
                            row["compiled_images_per_s"], 100 * row["host_share"])
    for row in rows:
        one = next((other for other in rows if other["precision"] == row["precision"]
                    and other["pack_size"] == 1 and "error" not in other), None)
        if one is not None and "error" not in row:
            row["gain_over_one"] = row["path_images_per_s"] / one["path_images_per_s"]
    return rows
