"""Packs: several runs of one model trained at once (`train_pack`), and the pieces one run and a
pack share (`prepare_run`, `PreparedRun`).

In:  the runs' settings (`lossbench.train.training.TrainConfig`, equal but for the learning
     rate), loss, seeds, the data, and each run's model, log and checkpoint paths.
Out: each run's files, exactly those `lossbench.train.training.train_model` writes for it
     alone (model, history.json, run.json with `pack_size` and `started`, per-epoch
     checkpoints), and its run information.

On the JAX backend a pack trains in one compiled step (`lossbench.train.device_loop`, which says
how and why); elsewhere its runs train one after another. `train.pack_size` says how many runs
a job packs (`resolve_pack_size`); it is no `TrainConfig` field, so a checkpoint resumes under
another pack size (the run is the same, up to float32 rounding: tests/test_packs.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np

from lossbench.core.batches import training_and_validation
from lossbench.io.atomic import staged_file
from lossbench.io.digests import file_sha256
from lossbench.pipeline.params import get_key
from lossbench.train.checkpoint import (
    CHECKPOINT_NAME,
    data_signature,
    resume_or_start,
    wait_for_checkpoints,
)
from lossbench.train.training import (
    TrainConfig,
    build_training_model,
    check_output_paths,
    epoch_recorder,
    initial_gradient_scale,
    job_fingerprint,
    measured_precision,
    resolve_runtime,
    train_model,
)
from lossbench.train.training_logs import run_information, write_training_logs

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PreparedRun:
    """One run, ready to train: its settings, model (its seed's initial weights, or a
    checkpoint's state), the state it continues from, its run information and paths."""

    config: TrainConfig
    loss_name: str
    seed: int
    model: object
    state: dict
    run_info: dict
    runtime: object
    model_path: Path
    log_dir: Path
    checkpoint_path: Path
    # The model's augmentation layers (Keras's `fit` path), or None (the device loop augments).
    augmentation: object = None

    @property
    def first_epoch(self) -> int:
        """The epochs already trained (0 for a fresh run)."""
        return len(self.state["history"])

    @property
    def unfinished(self) -> bool:
        """Whether epochs are left to train (not all done, not diverged)."""
        return self.first_epoch < self.config.epochs and self.state["diverged_epoch"] is None

    def epoch_done(self):
        """`epoch_recorder`'s function for this run (checkpoint and logs after each epoch)."""
        return epoch_recorder(self.model, self.state, self.run_info, self.checkpoint_path,
                               self.log_dir)

    def finish(self) -> dict:
        """Write the final logs and the model (under a temporary name, then renamed: a full
        disk leaves no partial model); return the run information."""
        wait_for_checkpoints()  # the last epoch's checkpoint is on disk before the model
        with staged_file(self.model_path) as temporary:
            self.model.save(temporary)
        # The model's digest, so that evaluate refuses a model changed after training.
        self.run_info["model_sha256"] = file_sha256(self.model_path)
        write_training_logs(self.log_dir, self.state["history"], self.run_info)
        return self.run_info


def prepare_run(config: TrainConfig, loss_name: str, seed: int, data: tuple, num_classes: int,
                model_path: Path, log_dir: Path, checkpoint_dir: Path, runtime,
                pack_size: int = 1) -> PreparedRun:
    """Build one run's model and state: `data` is (train_images, train_labels, test_images,
    test_labels), `runtime` a resolved `lossbench.train.device.Runtime` (a CPU's `auto`
    precision is measured here), `pack_size` the runs it trains beside (for run.json)."""
    import datetime

    model_path, log_dir, checkpoint_dir = Path(model_path), Path(log_dir), Path(checkpoint_dir)
    check_output_paths(model_path, log_dir, checkpoint_dir)
    fit_images, fit_labels, validation_images, validation_labels = training_and_validation(
        *data, config.validation, config.holdout_fraction, seed)
    signature = data_signature(*data)
    checkpoint_path = checkpoint_dir / CHECKPOINT_NAME
    runtime, measured = measured_precision(config, runtime, loss_name, seed, num_classes,
                                           fit_images, fit_labels, signature, checkpoint_path)
    model, augmentation = build_training_model(config, loss_name, seed, num_classes, runtime)
    fingerprint = job_fingerprint(config, runtime.precision, loss_name, seed, signature)
    # Measured on the initial weights, before a checkpoint may replace them.
    gradient_scale = initial_gradient_scale(model, loss_name, fit_images, fit_labels)
    state = resume_or_start(checkpoint_path, model, fingerprint, config.epochs,
                            f"{loss_name} seed {seed}")
    if measured is not None:  # kept in the checkpoint: a resumed run's run.json shows it too
        state["precision_measured"] = measured
    run_info = run_information(config, loss_name, seed, runtime, state,
                               len(fit_labels), len(validation_labels))
    # XLA as Keras compiled the model: it refuses XLA for a model with a layer without it.
    run_info.update(initial_output_gradient_scale=gradient_scale, jit_compile=bool(model.jit_compile),
                    pack_size=pack_size, fingerprint=fingerprint,
                    started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return PreparedRun(config, loss_name, seed, model, state, run_info, runtime, model_path,
                       log_dir, checkpoint_path, augmentation)


def log_start(run: PreparedRun, pack: str) -> None:
    logger.info("Training %s, seed %d, on %s with the %s backend, %s, %d step(s) per "
                "execution, XLA %s%s.", run.loss_name, run.seed, run.runtime.description,
                run.run_info["backend"], run.runtime.precision, run.runtime.steps_per_execution,
                "on" if run.run_info["jit_compile"] else "off", pack)


# Runs per pack for `train.pack_size: auto` on a GPU. Provisional: the pack curve of issue 28
# (benchmarks/gpu_paper_scale.py --pack-curve) has not been measured yet; 8 is the size its
# goal names (>= 4x one run's images/s), and 8 full-width runs at batch 32 hold ~2 GB of
# activations, far inside an H100's 80 GB. On a CPU packing gains nothing (a 2-core CPU is busy
# with one run), so auto is 1 there.
AUTO_GPU_PACK_SIZE = 8


def resolve_pack_size(params: dict, run_count: int, device_setting: str) -> int:
    """The runs a job trains in one pack: `train.pack_size` when it is a number, else 1 on a
    CPU and AUTO_GPU_PACK_SIZE on a GPU (`train.device` applied to see which); at most
    `run_count` and at least 1."""
    setting = get_key(params, "train.pack_size")
    if setting == "auto":
        from lossbench.train import device

        kind = device.select_device(device_setting)[0]
        setting = AUTO_GPU_PACK_SIZE if kind == "gpu" else 1
    return max(1, min(int(setting), run_count))


def check_pack(configs: list[TrainConfig]) -> None:
    """Raise ValueError unless the runs' settings differ in the learning rate alone: a pack
    shares one compiled step, so its runs share the model, precision and data handling."""
    shared = {json.dumps(dataclasses.asdict(dataclasses.replace(config, learning_rate=0.0)),
                         sort_keys=True) for config in configs}
    if len(shared) > 1:
        raise ValueError("the runs of a pack must share every setting but the learning rate "
                         "and the seed (they share one compiled step).")


def train_pack(configs: list[TrainConfig], loss_name: str, seeds: list[int], data: tuple,
               num_classes: int, model_paths: list[Path], log_dirs: list[Path],
               checkpoint_dirs: list[Path], runtime=None, study=None) -> list[dict]:
    """Train the runs (`configs[i]` at `seeds[i]`, written to `model_paths[i]`, `log_dirs[i]`,
    `checkpoint_dirs[i]`) as one pack: on the JAX backend in one compiled step
    (`lossbench.train.device_loop.fit_pack_on_device`), elsewhere one after another. Each run
    writes exactly the files `train_model` writes and resumes from its own checkpoint; runs
    resumed at different epochs train as separate packs. `data` is (train_images,
    train_labels, test_images, test_labels). Returns each run's run information."""
    from lossbench.core.batches import split_validation
    from lossbench.train.device_loop import PackMember, fit_pack_on_device, uses_device_loop

    if not (len(configs) == len(seeds) == len(model_paths) == len(log_dirs) == len(checkpoint_dirs)):
        raise ValueError("a pack needs one config, seed, model path, log directory and "
                         "checkpoint directory per run.")
    check_pack(configs)
    if len(configs) == 1 or not uses_device_loop():
        return [train_model(config, loss_name, seed, *data, num_classes, model_path, log_dir,
                            checkpoint_dir, runtime, study)
                for config, seed, model_path, log_dir, checkpoint_dir
                in zip(configs, seeds, model_paths, log_dirs, checkpoint_dirs)]
    train_images, train_labels, test_images, test_labels = data
    indices = [split_validation(train_labels, config.validation, config.holdout_fraction, seed)
               for config, seed in zip(configs, seeds)]
    if runtime is None:
        runtime = resolve_runtime(configs[0], len(indices[0][0]))
    runs = [prepare_run(config, loss_name, seed, data, num_classes, model_path, log_dir,
                        checkpoint_dir, runtime, pack_size=len(configs))
            for config, seed, model_path, log_dir, checkpoint_dir
            in zip(configs, seeds, model_paths, log_dirs, checkpoint_dirs)]
    runtime = runs[0].runtime  # a CPU's `auto` precision, measured once for the pack
    images = np.concatenate([train_images, test_images])
    labels = np.concatenate([train_labels, test_labels])
    test_index = len(train_labels) + np.arange(len(test_labels))
    waiting = [index for index, run in enumerate(runs) if run.unfinished]
    for first_epoch in sorted({runs[index].first_epoch for index in waiting}):
        group = [index for index in waiting if runs[index].first_epoch == first_epoch]
        members = []
        for index in group:
            keep, held_out = indices[index]
            callbacks = [epoch_recorder_for(runs[index])]
            members.append(PackMember(runs[index].model, runs[index].seed,
                                      float(runs[index].config.learning_rate), keep,
                                      test_index if held_out is None else held_out, callbacks))
        log_start(runs[group[0]], f", a pack of {len(group)} runs (seeds "
                   f"{', '.join(str(runs[index].seed) for index in group)})")
        members[0].callbacks.extend(_pack_projection(configs[0], runtime, len(keep), members,
                                                     first_epoch, study))
        verbose = 1 if sys.stdout.isatty() else 2
        fit_pack_on_device(members, configs[0], images, labels, first_epoch,
                           runtime.steps_per_execution, verbose)
    return [run.finish() for run in runs]


def epoch_recorder_for(run: PreparedRun):
    """The `EpochRecorder` callback that records `run`'s epochs."""
    from lossbench.train.callbacks import EpochRecorder

    return EpochRecorder(run.epoch_done())


def _pack_projection(config: TrainConfig, runtime, fit_count: int, members: list,
                     first_epoch: int, study) -> list:
    """The projected-time callback of a pack: the pack's remaining epochs at its measured
    seconds per (packed) step, one line."""
    from lossbench.train.callbacks import ProjectedTime
    from lossbench.train.study_cost import RunGroup, StudyCost

    validation_count = len(members[0].validation_index)
    this_pack = StudyCost([RunGroup("training", 1, f"this pack of {len(members)} runs",
                                    config.epochs - first_epoch, fit_count, validation_count)],
                          config.batch_size, subject="This pack")
    advise = runtime.device == "cpu" and config.device == "auto"
    return [ProjectedTime(this_pack, math.ceil(fit_count / config.batch_size),
                          runtime.description, advise, always=study is not None)]
