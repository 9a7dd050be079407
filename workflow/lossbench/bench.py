"""`lossbench bench`: throughput measured against this machine's own limit, in one run.

In:  the validated params (the training settings), an output directory, `quick` (a reduced
     run for CI), optionally a prepared-data directory and a data archive to time
     preprocessing on.
Out: a table on stdout and `<output_dir>/<device>.json` holding, per backend, batch size and
     precision: `matmul_gflops` (the device's dense matmul rate, measured in the same run),
     `train_images_per_s` (steady state, after warm-up, of the paper model with the real
     input pipeline: Keras's `fit`, or on JAX the device loop, whose former `fit` path is
     one more row), `compiled_images_per_s` and `host_share` (the compiled training step alone
     on data on the device, and the share of a step's wall time spent outside it: feeding,
     Python, copies; `lossbench.step_rates`), `train_efficiency` (achieved FLOP/s / matmul
     FLOP/s, using the model's analytic training FLOPs per image) and `epoch_efficiency` (the
     compute-bound ideal epoch time / the measured time of a whole epoch as users run it:
     augmentation, validation, logging, checkpoint), and each reduced precision's training
     images/s over float32's at the same batch size (`precision_speedups`). Also the CPU's model
     and its native bfloat16 units (`cpu`), the input pipeline alone, `snakemake -n`,
     `dvc status` and `dvc dag` on this project, and the preprocess stage where an archive is
     given. The table printed is `lossbench.bench_table`'s.

Shared machines make absolute numbers noisy, so every figure that matters is a ratio
against a baseline measured in the same run. Each backend runs in its own process (Keras
fixes its backend at import), and the parent collects their JSON.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lossbench.io.atomic import write_json

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _seconds(function, repeats: int = 1) -> float:
    """Best wall time of `repeats` calls: the least disturbed by other work on the machine."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def matmul_gflops(dtype: str = "float32", size: int = 2048, repeats: int = 5) -> float:
    """Dense square matmul rate of the active backend's device, in GFLOP/s (2 n^3 per product)."""
    import keras

    rng = np.random.default_rng(0)
    left = keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype=dtype)
    right = keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype=dtype)

    def product():
        # A float32 scalar: NumPy cannot hold a bfloat16 scalar that TensorFlow hands over.
        keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.sum(keras.ops.matmul(left, right)), "float32"))

    product()  # warm-up: kernels chosen, memory allocated
    return 2.0 * size**3 / _seconds(product, repeats) / 1e9


def input_pipeline_images_per_s(config, images: np.ndarray, batch_size: int = 256) -> float:
    """Scaling and augmentation alone (what feeds the model each step), in images/s."""
    import keras

    from lossbench.core.augment import build_augmentation

    augmentation = build_augmentation(config.shift_fraction, config.horizontal_flip, seed=0)
    rescale = keras.layers.Rescaling(1.0 / 255.0)

    def one_pass():
        for start in range(0, len(images), batch_size):
            batch = rescale(keras.ops.convert_to_tensor(images[start:start + batch_size]))
            keras.ops.convert_to_numpy(augmentation(batch, training=True))

    one_pass()
    return len(images) / _seconds(one_pass, repeats=2)


def epoch_seconds(config, train_count: int, validation_count: int, data=None) -> float:
    """Wall time of one whole epoch as users run it (train_model with epochs=1)."""
    import dataclasses

    from lossbench.train.training import train_model

    if data is not None:
        train_images, train_labels = data.train_images[:train_count], data.train_labels[:train_count]
        test_images, test_labels = data.test_images[:validation_count], data.test_labels[:validation_count]
    else:
        rng = np.random.default_rng(1)
        train_images = rng.integers(0, 256, size=(train_count, 32, 32, 3), dtype=np.uint8)
        train_labels = (np.arange(train_count) % 10).astype(np.int32)
        test_images = rng.integers(0, 256, size=(validation_count, 32, 32, 3), dtype=np.uint8)
        test_labels = (np.arange(validation_count) % 10).astype(np.int32)
    config = dataclasses.replace(config, epochs=1, validation="test")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        # The first call pays for tracing and compilation, as every training job does once.
        train_model(config, "categorical_crossentropy", 0, train_images[: config.batch_size * 4],
                    train_labels[: config.batch_size * 4], test_images[: config.batch_size],
                    test_labels[: config.batch_size], 10, scratch / "warm.keras", scratch / "warm",
                    scratch / "warm-checkpoint")
        started = time.perf_counter()
        history_path = scratch / "log" / "history.json"
        train_model(config, "categorical_crossentropy", 0, train_images, train_labels, test_images,
                    test_labels, 10, scratch / "model.keras", scratch / "log", scratch / "checkpoint")
        total = time.perf_counter() - started
        epoch_only = json.loads(history_path.read_text())["epochs"][0]["seconds"]
    logger.info("Epoch: %.1f s in fit (validation included), %.1f s with setup, logs, checkpoint.",
                epoch_only, total)
    return total


class _Sizes(NamedTuple):
    """How long each measurement runs: the throughput probe's steps and the epoch's images."""

    max_steps: int
    warmup_steps: int
    target_seconds: float
    train_count: int
    validation_count: int


# Past this projected length a whole-epoch measurement is skipped (noted in its row).
LONGEST_EPOCH_SECONDS = 900.0


def _sizes(quick: bool, on_gpu: bool, dry_run: bool = False) -> _Sizes:
    """The dry run's tiny sizes, the quick run's small ones, or the full run's (longer
    throughput runs on a GPU)."""
    if dry_run:
        return _Sizes(2, 1, 0.5, 64, 32)
    max_steps, warmup_steps = (400, 20) if on_gpu else (60, 3)
    if quick:
        # On a CPU about 8 s per timed epoch; on a GPU the full run's steps (a step takes a
        # millisecond there, and a timed epoch needs several calls of 64 steps).
        return _Sizes(max_steps if on_gpu else 24, 2, 8.0, 128, 64)
    return _Sizes(max_steps, warmup_steps, 20.0, 50_000, 10_000)


def _epoch_fields(config, sizes: _Sizes, images_per_s: float, ceiling: float, data) -> dict:
    """A row's whole-epoch figures, or why the epoch was skipped (projected too long)."""
    from lossbench.core.model import forward_flops_per_image, training_flops_per_image

    projected = sizes.train_count / images_per_s
    if projected > LONGEST_EPOCH_SECONDS:
        return {"epoch_skipped": f"projected {projected:.0f} s > {LONGEST_EPOCH_SECONDS:.0f} s"}
    measured = epoch_seconds(config, sizes.train_count, sizes.validation_count, data)
    ideal = (sizes.train_count * training_flops_per_image(config.width, 10)
             + sizes.validation_count * forward_flops_per_image(config.width, 10)) / (ceiling * 1e9)
    return dict(epoch_images=sizes.train_count, epoch_validation_images=sizes.validation_count,
                epoch_seconds=round(measured, 3), ideal_epoch_seconds=round(ideal, 3),
                epoch_efficiency=round(ideal / measured, 4))


def _measure_row(config, sizes: _Sizes, ceiling: float, data, whole_epoch: bool,
                 kind: str = "cpu", device_loop: bool | None = None) -> dict:
    """One table row: training throughput at `config`'s precision and batch size on the
    training path (`device_loop`: the default of the backend), the host's share of a step,
    the efficiency against the matmul `ceiling`, and (if `whole_epoch`) one whole epoch."""
    import keras

    from lossbench.core.model import training_flops_per_image
    from lossbench.step_rates import training_rates

    train_flops = training_flops_per_image(config.width, 10)
    rates = training_rates(config, sizes.max_steps, sizes.warmup_steps, sizes.target_seconds,
                           device_loop, kind)
    images_per_s = rates["train_images_per_s"]
    row = {
        "backend": keras.backend.backend(),
        "path": rates["path"],
        "precision": config.precision,
        "batch_size": config.batch_size,
        "compiled_images_per_s": round(rates["compiled_images_per_s"], 2),
        "host_share": round(rates["host_share"], 4),
        "timed_steps": rates["timed_steps"],
        "matmul_gflops": round(ceiling, 2),
        "train_images_per_s": round(images_per_s, 2),
        "train_gflops": round(images_per_s * train_flops / 1e9, 2),
        "train_efficiency": round(images_per_s * train_flops / 1e9 / ceiling, 4),
    }
    if whole_epoch:
        row.update(_epoch_fields(config, sizes, images_per_s, ceiling, data))
    return row


def precision_speedups(rows: list[dict]) -> dict:
    """Each reduced precision's training images/s over float32's at the same batch size."""
    speedups = {}
    for row in rows:
        baseline = next((other for other in rows if other["precision"] == "float32"
                         and other["batch_size"] == row["batch_size"]), None)
        if row["precision"] != "float32" and baseline is not None:
            speedups[f"{row['precision']}/float32 batch {row['batch_size']}"] = round(
                row["train_images_per_s"] / baseline["train_images_per_s"], 3)
    return speedups


def backend_measurements(params: dict, quick: bool, data_dir: Path | None,
                         dry_run: bool = False) -> dict:
    """Everything measured under the active Keras backend (run once per backend). The full
    and quick runs measure the paper's full-width model; a dry run (which only shows that
    every measurement works) the width of `params`, at tiny sizes."""
    import dataclasses

    import keras

    from lossbench.core.model import forward_flops_per_image, training_flops_per_image
    from lossbench.train.device import select_device
    from lossbench.train.training import TrainConfig
    from lossbench.train.training_logs import library_versions

    config = TrainConfig.from_params(params)
    config, quick = (config if dry_run else dataclasses.replace(config, width=1.0)), quick or dry_run
    data = None
    if data_dir is not None:
        from lossbench.io.prepared import load_prepared

        data = load_prepared(data_dir)
    kind, device_description = select_device("auto")  # `auto` changes no setting: it only looks
    on_gpu = kind == "gpu"
    sizes = _sizes(quick, on_gpu, dry_run)
    matrix_size = 256 if dry_run else 1024 if quick else 2048
    matmul = {dtype: matmul_gflops(dtype, matrix_size) for dtype in ("float32", "bfloat16")}
    if on_gpu:
        matmul["float16"] = matmul_gflops("float16", matrix_size)
    rows = []
    for precision in ["float32", "mixed_bfloat16"] + (["mixed_float16"] if on_gpu else []):
        # The matmul ceiling that applies: float32 for float32 training, else the half type.
        ceiling = matmul["float32" if precision == "float32" else precision.removeprefix("mixed_")]
        for batch_size in [32, 512 if on_gpu else 128]:
            if quick and precision != "float32" and batch_size != 32:
                continue  # the quick and dry runs keep one row per reduced precision
            # A whole epoch costs minutes on a CPU, so there only the paper's setting (batch
            # 32, float32) runs one, and only if it is projected to end in reasonable time.
            whole_epoch = on_gpu or (batch_size == 32 and precision == "float32")
            row_config = dataclasses.replace(config, precision=precision, batch_size=batch_size)
            rows.append(_measure_row(row_config, sizes, ceiling, data, whole_epoch, kind))
            logger.info("%s", rows[-1])
    if keras.backend.backend() == "jax" and not dry_run:  # JAX's former path: Keras's `fit`
        rows.append(_measure_row(dataclasses.replace(config, precision="float32", batch_size=32),
                                 sizes, matmul["float32"], data, False, kind, False))
    count = 256 if dry_run else 2048
    sample = (data.train_images[:count] if data is not None else
              np.random.default_rng(2).integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8))
    return {
        "backend": keras.backend.backend(),
        "device": device_description,
        # Reduced precision's training throughput over float32's, measured in this run.
        "precision_speedups": precision_speedups(rows),
        "versions": library_versions(),
        "matmul_gflops": {key: round(value, 2) for key, value in matmul.items()},
        "width": config.width,
        "training_gflop_per_image": training_flops_per_image(config.width, 10) / 1e9,
        "forward_gflop_per_image": forward_flops_per_image(config.width, 10) / 1e9,
        "input_pipeline_images_per_s": round(input_pipeline_images_per_s(config, sample), 1),
        "rows": rows,
    }


def orchestration_seconds(project_dir: Path, repeats: int = 3) -> dict:
    """Parsing the DAG: `snakemake -n`, `dvc status`, `dvc dag` (best of `repeats`); all work
    on a fresh clone, unlike `dvc repro --dry` (it hashes the absent data/raw/archive: exit 255)."""
    binaries = Path(sys.executable).parent
    environment = dict(os.environ, PATH=f"{binaries}:{os.environ.get('PATH', '')}")
    timings = {}
    for name, command in (
        ("snakemake_dry_run_s", ["snakemake", "-n", "--quiet"]),
        ("dvc_status_s", ["dvc", "status"]),
        ("dvc_dag_s", ["dvc", "dag"]),
    ):
        def call():
            subprocess.run(command, cwd=project_dir, env=environment, capture_output=True, check=True)

        try:
            timings[name] = round(_seconds(call, repeats), 3)
        except (OSError, subprocess.CalledProcessError) as error:
            # A machine that only trains (a lent GPU) may have neither tool installed.
            logger.warning("Could not time `%s`: %s", " ".join(command), error)
            timings[name] = None
    return timings


def preprocess_seconds(archive: Path) -> float:
    from lossbench import preprocess
    from lossbench.pipeline.params import with_defaults

    # The whole archive, with the schema's defaults for the rest (its one source of them).
    settings = with_defaults("preprocess", {"dataset": "image_folder", "train_size": None, "test_size": None})
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        preprocess.run(settings, archive, Path(scratch) / "prepared", Path(scratch) / "counts.json",
                       max_archive_bytes=with_defaults("download", {})["max_archive_bytes"])
        return time.perf_counter() - started


def _child(backend: str, params_path: Path, quick: bool, data_dir: Path | None,
           dry_run: bool = False) -> dict:
    command = [sys.executable, "-m", "lossbench.bench", "--params", str(params_path)]
    command += ["--quick"] if quick else []
    command += ["--dry-run"] if dry_run else []
    command += ["--data", str(data_dir)] if data_dir else []
    environment = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        logger.warning("The %s backend could not be measured:\n%s", backend, result.stderr[-2000:])
        return {"backend": backend, "error": result.stderr.strip().splitlines()[-1:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(params: dict, output_dir: Path, quick: bool = False, data_dir: Path | None = None,
        archive: Path | None = None, backends: tuple[str, ...] = ("tensorflow", "jax"),
        params_path: Path = Path("params.yaml"), name: str | None = None,
        dry_run: bool = False) -> dict:
    """Measure every backend in its own process, then the orchestrators; write the JSON.

    `dry_run` only shows that every measurement works (benchmarks/gpu_check.sh --dry-run,
    tests/test_bench.py): the width of `params` at tiny sizes, each orchestrator timed once.
    """
    from lossbench.bench_table import format_table
    from lossbench.train import device as device_module

    results = {
        "quick": quick,
        "dry_run": dry_run,
        "command": " ".join(["lossbench", *sys.argv[1:]]),
        # Which CPU this ran on, and whether it computes bfloat16 natively (AMX or
        # AVX512_BF16): without such units mixed_bfloat16 is emulated and far slower.
        "cpu": {"model": device_module.cpu_model_name(), "cores": os.cpu_count(),
                "bf16_units": device_module.cpu_bf16_units()},
        "backends": [_child(backend, params_path, quick, data_dir, dry_run) for backend in backends],
        # One timing each in a dry run: it only shows that the commands work on this checkout.
        "orchestration": orchestration_seconds(PROJECT_ROOT, repeats=1 if dry_run else 3),
    }
    if archive is not None:
        results["preprocess_archive"] = str(archive)
        results["preprocess_seconds"] = round(preprocess_seconds(archive), 2)
    device = next((item["device"] for item in results["backends"] if "device" in item), "unknown")
    results["device"] = device
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    suffix = "-dry-run" if dry_run else "-quick" if quick else ""
    path = Path(output_dir) / f"{name or slug}{suffix}.json"
    write_json(path, results)
    print(format_table(results))
    print(f"Wrote {path}")
    return results


def _main() -> None:
    """The per-backend child: measure under KERAS_BACKEND and print one JSON line."""
    import argparse

    from lossbench.pipeline.params import load_params

    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    result = backend_measurements(load_params(args.params), args.quick, args.data, args.dry_run)
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
