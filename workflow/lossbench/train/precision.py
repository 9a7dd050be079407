"""`train.precision: auto` on a CPU: the faster precision, measured when a job starts.

In:  a function that builds the job's compiled training model in a given precision (the
     job's own width, batch size, backend and settings), one batch of its training images
     and labels, and the CPU's flags (/proc/cpuinfo, via `lossbench.train.device`).
Out: the chosen precision and each candidate's measured training images/s, logged in one
     line ("train.precision auto: float32 71.2 images/s, mixed_bfloat16 10.8 images/s ...;
     chose float32"); the training stage records both in run.json and in its checkpoint.

Why measured and not read from the CPU's flags: the flags do not predict the winner. With
TensorFlow at batch 32, mixed_bfloat16 trained at 1.72x float32's rate on an AMD EPYC with
AVX512_BF16 and 3.1x on a Xeon with AMX, but at 0.60x on a Xeon with AVX512_BF16 and without
AMX, and at a small fraction of it on an AVX2-only EPYC, where bfloat16 is emulated (README,
"Performance").

Why measured at the start of each job and not read from a cache written by `lossbench
bench`: the rates depend on the job's width, batch size, backend and library versions and on
the machine as it is that day (the development machines' CPUs change), which a cache keyed
by the CPU's name would not see; and the bench takes many minutes, so on most machines no
cache would exist. Measuring costs two model compilations and a few steps per candidate,
seconds against a job's hours; within one process (the tune stage trains several runs) the
result is measured once and reused.

The choice is the candidate with the highest measured rate, so a precision measured slower
than another is never chosen; an exact tie goes to float32, the paper's precision.
mixed_float16 is timed where the CPU computes float16 natively (AVX512_FP16) but is not
chosen: it is to be offered only once its test accuracy has been shown to stay within
float32's seed spread, as reports/studies/cpu-bf16-check/ showed for bfloat16, and no such
check has been made (no machine with AVX512_FP16 has run a study for this project).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

logger = logging.getLogger(__name__)

BASELINE = "float32"
CANDIDATES = ("float32", "mixed_bfloat16")
FLOAT16_CPU_FLAG = "avx512_fp16"
# Precisions that are timed and reported but never chosen, and why.
NOT_OFFERED = {
    "mixed_float16": "its accuracy has not been checked against float32's seed spread",
}
# How long each candidate is timed, after one warm-up step that traces and compiles: until
# BUDGET_SECONDS have passed or MAX_STEPS steps are done, and at least one step.
BUDGET_SECONDS = 2.0
MAX_STEPS = 20

# Rates measured in this process, by the caller's key (what a training step's speed depends
# on), so that the tune stage's runs measure once.
_measured: dict = {}


def candidate_precisions(flags: set[str]) -> list[str]:
    """The precisions `auto` times on a CPU with `flags`: float32 and mixed_bfloat16, and
    mixed_float16 where the CPU has AVX512_FP16."""
    return list(CANDIDATES) + (["mixed_float16"] if FLOAT16_CPU_FLAG in flags else [])


def steps_images_per_s(model, images, labels, budget_seconds: float = BUDGET_SECONDS,
                       max_steps: int = MAX_STEPS, clock: Callable[[], float] = time.perf_counter
                       ) -> tuple[float, int]:
    """(images/s, steps timed) of `model.train_on_batch` on one batch, after one warm-up step.

    Steps are timed until `budget_seconds` have passed or `max_steps` are done (at least
    one), so that a precision that is emulated and many times slower stays affordable.
    """
    model.train_on_batch(images, labels)  # tracing and compilation: not timed
    started = clock()
    steps, elapsed = 0, 0.0
    while steps < max_steps and (steps == 0 or elapsed < budget_seconds):
        model.train_on_batch(images, labels)
        steps += 1
        elapsed = clock() - started
    return len(labels) * steps / max(elapsed, 1e-9), steps


def choose(rates: dict[str, float]) -> str:
    """The offered precision with the highest rate in `rates` (images/s); float32 on a tie."""
    offered = {name: rate for name, rate in rates.items() if name not in NOT_OFFERED}
    if not offered:
        raise ValueError(f"No precision that auto may choose was measured: {sorted(rates)}.")
    best = max(offered.values())
    if offered.get(BASELINE) == best:
        return BASELINE
    return next(name for name, rate in offered.items() if rate == best)


def describe(rates: dict[str, float], steps: dict[str, int], choice: str, seconds: float) -> str:
    """The one log line: every rate, its ratio to float32's, and the choice."""
    baseline = rates.get(BASELINE)
    parts = []
    for name, rate in rates.items():
        ratio = f" ({rate / baseline:.2f}x float32)" if baseline and name != BASELINE else ""
        unoffered = f", not offered: {NOT_OFFERED[name]}" if name in NOT_OFFERED else ""
        parts.append(f"{name} {rate:.1f} images/s over {steps.get(name, 0)} step(s){ratio}{unoffered}")
    return (f"train.precision auto: {'; '.join(parts)}; chose {choice}, the faster "
            f"(measured in {seconds:.1f} s).")


def measure(build: Callable[[str], object], images, labels, candidates: list[str],
            key=None, timer: Callable | None = None) -> tuple[str, dict[str, float]]:
    """Time `timer(build(precision), images, labels)` for each candidate, choose, log one line.

    `build(precision)` returns a compiled model; `timer` (`steps_images_per_s` unless given)
    returns (images/s, steps). Returns (the chosen precision, {precision: images/s}). With a
    `key` measured before in this process, the earlier rates are reused.
    """
    import keras

    timer = timer or steps_images_per_s
    if key is not None and key in _measured:
        rates = _measured[key]
        choice = choose(rates)
        logger.info("train.precision auto: %s, as measured earlier in this process (%s).", choice,
                    ", ".join(f"{name} {rate:.1f} images/s" for name, rate in rates.items()))
        return choice, dict(rates)
    started = time.perf_counter()
    rates, steps = {}, {}
    for name in candidates:
        rate, steps[name] = timer(build(name), images, labels)
        rates[name] = round(rate, 2)
        # Names, seeds and the dtype policy of the measuring models must not reach the job's
        # model: it is built afterwards in a clean Keras state, as in a job that measures nothing.
        keras.backend.clear_session()
    choice = choose(rates)
    logger.info("%s", describe(rates, steps, choice, time.perf_counter() - started))
    if key is not None:
        _measured[key] = dict(rates)
    return choice, rates
