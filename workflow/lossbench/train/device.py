"""Where a training job runs and how: the device, the precision and the compiled step.

In:  the `train.device`, `train.precision`, `train.steps_per_execution`, `train.jit_compile`
     and `train.deterministic` values of params.yaml (each may be `auto`), the CPU's flags
     (/proc/cpuinfo) and the GPUs the Keras backend sees.
Out: `Runtime`, the settings a job actually uses (device kind, precision, steps per
     execution, XLA), each `auto` resolved for this machine; or a ValueError, raised in
     seconds and before any data is loaded, when `train.device: gpu` finds no GPU.

Why `auto` resolves as it does (measured, see README "Performance"):
- precision: on a CPU it stays `auto` here and training measures it (`lossbench.train.precision`
  times a few steps in float32 and in mixed_bfloat16 and takes the faster): the CPU's flags
  do not predict the winner (bfloat16 was 1.7x faster with AVX512_BF16 on one EPYC, 0.6x on
  a Xeon with the same flag). On a GPU, mixed_bfloat16 for compute capability 8.0 or newer
  (tensor cores compute it natively), float32 elsewhere. It is a rule, since timing each
  precision would cost an XLA compilation per candidate; on the one GPU measured (an H200,
  reports/benchmarks/gpu/) the compiled step ran 1.25x faster in mixed_bfloat16 than in
  float32 at batch 32, and bfloat16's accuracy at full size has not been checked there. The
  paper trained in float32, the default of params.yaml.
- steps_per_execution: 1 on a CPU, where the host is not the bottleneck. On a GPU, several
  steps per call hide the host's per-step overhead at batch 32; the value must divide the
  epoch's step count, or Keras would run the last call of an epoch into the next epoch's
  batches and every epoch boundary would shift.
- jit_compile (XLA): off on a CPU, where it measured 20-30 % slower; on on a GPU.
On the JAX backend training runs `lossbench.train.device_loop`, which always compiles and
fuses its own number of steps per call (`device_loop.loop_runtime`).

This module imports no backend at import time: `select_device` must be able to hide the GPUs
before TensorFlow or JAX starts.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEVICES = ("auto", "gpu", "cpu")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# The largest number of steps one call into the compiled step runs when left to `auto`.
MAX_AUTO_STEPS_PER_EXECUTION = 64

GPU_INSTALL_HINT = (
    "Install the GPU build: `pip install -e \".[gpu]\"` (JAX with CUDA, jax[cuda12]==0.10.2, "
    "Linux x86_64; then KERAS_BACKEND=jax) or `conda env create -f environment-gpu.yml`; for "
    "TensorFlow's CUDA build, `pip install -e \".[gpu-tensorflow]\"`. Check with "
    "`python -c \"import jax; print(jax.devices())\"`. "
    "To train on this CPU instead, set train.device: cpu (or auto) and a CPU-sized "
    "configuration (README, \"A CPU-sized run\")."
)


@dataclass(frozen=True)
class Runtime:
    """The settings a training job runs with, every `auto` resolved."""

    device: str  # "gpu" or "cpu"
    description: str  # e.g. "GPU: NVIDIA H100" or "CPU: AMD EPYC (2 cores)"
    precision: str  # `auto` on a CPU until training has measured the faster precision
    steps_per_execution: int
    jit_compile: bool
    deterministic: bool


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where unreadable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bf16_units(flags: set[str] | None = None) -> list[str]:
    """Which native bfloat16 units this CPU has: any of "amx_bf16", "avx512_bf16"."""
    flags = cpu_flags() if flags is None else flags
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def _hide_gpus() -> None:
    """Make the backend see no GPU: environment variables before it starts, else its API."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    os.environ["JAX_PLATFORMS"] = "cpu"
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            # TensorFlow refuses once it has initialised its devices; a GPU it already uses
            # stays visible, and `visible_gpus` reports it, so the caller can say so.
            logger.warning("TensorFlow had already started; its GPUs stay visible.")


def _enable_determinism() -> None:
    """Deterministic GPU kernels (slower): TensorFlow's op determinism and XLA's flag."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_gpu_deterministic_ops" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()
    os.environ["TF_DETERMINISTIC_OPS"] = "1"
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def visible_gpus() -> list[str]:
    """Names of the GPUs the active Keras backend sees (empty on a CPU-only machine)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        names = []
        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
        return names
    if backend == "jax":
        import jax

        return [getattr(device, "device_kind", device.platform)
                for device in jax.devices() if device.platform == "gpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    return []


def gpu_supports_bf16() -> bool:
    """Whether the first GPU computes bfloat16 natively (NVIDIA compute capability >= 8.0)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpu = tf.config.list_physical_devices("GPU")[0]
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
            return capability is not None and tuple(capability) >= (8, 0)
        if backend == "jax":
            import jax

            device = next(device for device in jax.devices() if device.platform == "gpu")
            return float(getattr(device, "compute_capability", "0")) >= 8.0
    except (IndexError, StopIteration, ValueError, TypeError):
        return False
    return False


def select_device(device: str, deterministic: bool = False) -> tuple[str, str]:
    """Apply `train.device` before any data is loaded; return (kind, description).

    "gpu" raises ValueError, with what to install, when the backend sees no GPU; "cpu" hides
    the GPUs; "auto" takes a GPU when there is one.
    """
    if device not in DEVICES:
        raise ValueError(f"train.device is {device!r}; use one of {', '.join(DEVICES)}.")
    if device == "cpu":
        _hide_gpus()
    if deterministic:
        _enable_determinism()
    import keras

    gpus = [] if device == "cpu" else visible_gpus()
    if device == "gpu" and not gpus:
        raise ValueError(
            f"train.device is gpu, but the {keras.backend.backend()} backend sees no GPU on this "
            f"machine ({cpu_model_name()}). {GPU_INSTALL_HINT}"
        )
    if gpus:
        return "gpu", f"GPU: {gpus[0]}"
    return "cpu", f"CPU: {cpu_model_name()} ({os.cpu_count()} cores)"


def resolve_precision(precision: str, kind: str) -> str:
    """`train.precision` as far as it is known before training: an explicit value as it is;
    `auto` on a GPU mixed_bfloat16 where it computes bfloat16 natively, else float32; `auto`
    on a CPU stays `auto`, to be measured by `lossbench.train.training`
    (`lossbench.train.precision`)."""
    if precision != "auto":
        return precision
    if kind == "gpu":
        return "mixed_bfloat16" if gpu_supports_bf16() else "float32"
    return "auto"


def divisors_up_to(number: int, limit: int) -> list[int]:
    return [value for value in range(1, min(number, limit) + 1) if number % value == 0]


def resolve_steps_per_execution(value, kind: str, steps_per_epoch: int) -> int:
    """`train.steps_per_execution`: `auto` is 1 on a CPU, else the largest divisor of the
    epoch's step count up to 64; an explicit value must divide that count."""
    if value == "auto":
        if kind == "cpu":
            return 1
        return max(divisors_up_to(steps_per_epoch, MAX_AUTO_STEPS_PER_EXECUTION))
    value = int(value)
    if steps_per_epoch % value:
        choices = ", ".join(map(str, divisors_up_to(steps_per_epoch, 10_000)))
        raise ValueError(
            f"train.steps_per_execution is {value}, which does not divide the {steps_per_epoch} "
            f"steps of an epoch, so epochs would run into each other. Use one of {choices}, "
            "or auto."
        )
    return value


def resolve_jit_compile(value, kind: str) -> bool:
    """`train.jit_compile`: `auto` compiles with XLA on a GPU only."""
    if value == "auto":
        return kind == "gpu"
    return bool(value)


def runtime_for(config, steps_per_epoch: int, kind: str, description: str) -> Runtime:
    """Every `auto` of a `TrainConfig` resolved for this machine and this epoch length."""
    return Runtime(
        device=kind,
        description=description,
        precision=resolve_precision(config.precision, kind),
        steps_per_execution=resolve_steps_per_execution(
            config.steps_per_execution, kind, steps_per_epoch
        ),
        jit_compile=resolve_jit_compile(config.jit_compile, kind),
        deterministic=bool(config.deterministic),
    )
