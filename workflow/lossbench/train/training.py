"""Training one model: the paper's net, one loss, one seed (shared by `train` and `tune`).

In:  prepared arrays, a `TrainConfig` (params.yaml's `model.*` and `train.*`), a loss name
     and a seed.
Out: the trained model (`<model_path>`, a `.keras` file taking uint8 images), and a log
     directory holding `history.json` (per-epoch loss, accuracy, val_loss, val_accuracy,
     learning rate and seconds) and `run.json` (device, backend, precision and, for `auto`
     on a CPU, the training images/s measured in each candidate precision, versions,
     whether the run diverged).

What the paper's Keras 1 code did, and how it is reproduced here (README, "What the paper's
code did", cites the authors' script line by line):
- The model of `lossbench.core.model` with Keras 1.0.3's initialisation and Theano's symmetric
  stride-2 padding (`model.init`, `model.stride2_padding`).
- No shuffling (`train.shuffle: false`): Keras 1.0.3's `flow` kept the stored order, so every
  epoch sees the same batches.
- SGD with Nesterov momentum 0.9 and Keras 1's `decay`: the step size at step t is
  learning_rate / (1 + decay * t), t counted from 0. `keras.optimizers.schedules.
  InverseTimeDecay(learning_rate, decay_steps=1, decay_rate=decay)` is exactly that formula.
- Inputs scaled to [0, 1]; random shifts of up to 10 % with nearest fill and horizontal flips,
  run as Keras preprocessing layers inside the training graph (`lossbench.core.augment`), or
  on JAX on the device, by `lossbench.train.device_loop`, which there takes `fit`'s place.
- The test set as validation data each epoch (`train.validation: test`), or a seeded hold-out.

One job is one Keras `fit` over all remaining epochs (its log reads "Epoch k/N"); the
callbacks of `lossbench.train.callbacks` reseed the augmentation before each epoch, record each
finished epoch (checkpoint and logs) and stop on a non-finite loss. `lossbench.train.device` says
where it runs and resolves the `auto` settings, but for `train.precision: auto` on a CPU,
which is measured here before the job's model is built (`measured_precision`,
`lossbench.train.precision`).

Reproducibility and interruptions: everything random is a function of (seed, epoch) — the
weights' initialisation of the seed, each epoch's shuffling and augmentation of (seed, epoch) —
and after each epoch a checkpoint (weights, optimizer state, history) is written atomically.
Rerunning an interrupted job resumes from the last finished epoch and reaches the same weights
as an uninterrupted run. A checkpoint is resumed only by the same unfinished run: one made
with other settings, other data or other code (any source file of this package) is ignored,
one that records a finished run (every epoch done, or diverged) is deleted so that a rerun
trains afresh, and an unreadable one is set aside as `checkpoint.npz.unreadable`.

The pieces live in modules of their own: `lossbench.core.batches` (validation split, epoch orders,
batches), `lossbench.train.checkpoint` (the checkpoint and its fingerprint) and
`lossbench.train.training_logs` (history.json and run.json).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from pathlib import Path

import numpy as np

from lossbench.core.batches import (
    epoch_permutation,
    make_batches,
    training_and_validation,
    training_batches,
)
from lossbench.pipeline.params import TRAIN_KEYS, get_key
from lossbench.train.checkpoint import (
    CHECKPOINT_NAME,
    config_fingerprint,
    save_checkpoint,
    unfinished_fingerprint,
)
from lossbench.train.training_logs import progress, write_training_logs

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training settings of one job, read from params.yaml: one field per key of
    `lossbench.pipeline.params.TRAIN_KEYS`, named by the key's last part (`train.batch_size` is
    `config.batch_size`), typed as workflow/schemas/params.schema.yaml allows (which also holds
    each default and `params.yaml` each meaning). `learning_rate` is "tuned" until
    lossbench.train resolves it; "auto" values are resolved per machine (lossbench.train.device).
    tests/test_train.py checks that the fields are exactly TRAIN_KEYS, in order."""

    width: float                          # model.width
    init: str                             # model.init: keras1 | keras3
    stride2_padding: str                  # model.stride2_padding: theano | tensorflow
    final_convolution_activation: str     # model.final_convolution_activation: relu | linear
    epochs: int                           # train.epochs
    batch_size: int                       # train.batch_size
    learning_rate: float | str            # train.learning_rate: a rate per step, or "tuned"
    decay: float                          # train.decay
    momentum: float                       # train.momentum
    nesterov: bool                        # train.nesterov
    shift_fraction: float                 # train.shift_fraction
    horizontal_flip: bool                 # train.horizontal_flip
    shuffle: bool                         # train.shuffle
    validation: str                       # train.validation: test | holdout
    holdout_fraction: float               # train.holdout_fraction
    precision: str                        # train.precision
    steps_per_execution: int | str        # train.steps_per_execution: a count, or "auto"
    device: str                           # train.device: auto | gpu | cpu
    jit_compile: bool | str               # train.jit_compile: true/false, or "auto"
    deterministic: bool                   # train.deterministic

    @classmethod
    def from_params(cls, params: dict) -> "TrainConfig":
        """The job's settings: the value of every key of `TRAIN_KEYS` in validated params."""
        return cls(**{key.split(".")[-1]: get_key(params, key) for key in TRAIN_KEYS})


def build_training_model(config: TrainConfig, loss_name: str, seed: int, num_classes: int,
                         runtime=None, device_loop: bool | None = None):
    """(the paper's net behind scaling and augmentation, compiled with the paper's SGD, the
    augmentation). For the device loop (`device_loop`; by default on JAX) the model holds no
    augmentation (None: `lossbench.train.device_loop` augments) and is compiled with XLA.

    `runtime` (`lossbench.train.device.Runtime`) gives the precision, steps per execution and XLA
    setting with every `auto` resolved; without one they are resolved for a CPU.
    """
    import keras
    from keras import layers

    from lossbench.core.augment import build_augmentation
    from lossbench.core.losses import get_loss
    from lossbench.core.model import build_model
    from lossbench.train.device_loop import uses_device_loop

    loss = get_loss(loss_name)
    precision, steps_per_execution, jit_compile = _compile_settings(config, runtime)
    device_loop = uses_device_loop() if device_loop is None else device_loop
    # JAX without XLA runs every op from Python: the device loop always compiles.
    jit_compile = jit_compile or device_loop
    keras.mixed_precision.set_dtype_policy(precision)
    # One call seeds Python, NumPy and the backend, so the initial weights depend on the seed.
    keras.utils.set_random_seed(seed)
    classifier = build_model(
        num_classes=num_classes,
        width=config.width,
        output_activation=loss.output_activation,
        init=config.init,
        stride2_padding=config.stride2_padding,
        final_convolution_activation=config.final_convolution_activation,
    )
    augmentation = (None if device_loop else
                    build_augmentation(config.shift_fraction, config.horizontal_flip, seed))
    inputs = keras.Input(shape=classifier.input_shape[1:], dtype="uint8", name="images")
    scaled = layers.Rescaling(1.0 / 255.0, name="scale_to_unit_range")(inputs)
    outputs = classifier(scaled if augmentation is None else augmentation(scaled))
    model = keras.Model(inputs, outputs, name=f"lossbench_{loss_name}")
    schedule = keras.optimizers.schedules.InverseTimeDecay(
        initial_learning_rate=config.learning_rate, decay_steps=1, decay_rate=config.decay
    )
    optimizer = keras.optimizers.SGD(
        learning_rate=schedule, momentum=config.momentum, nesterov=config.nesterov
    )
    model.compile(
        optimizer=optimizer,
        loss=loss.function,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    if jit_compile and not model.jit_compile:
        logger.warning(
            "XLA was asked for (train.jit_compile), but Keras compiles this model without it: a "
            "layer does not support XLA (Keras 3.15's RandomTranslation, the augmentation's "
            "shift), so every step runs op by op, which is slow with JAX, above all on a GPU."
        )
    return model, augmentation


def _compile_settings(config: TrainConfig, runtime) -> tuple[str, int, bool]:
    """(precision, steps per execution, XLA) from `runtime`, or resolved for a CPU without one."""
    from lossbench.train import device

    if runtime is None:
        precision = device.resolve_precision(config.precision, "cpu")
        steps_per_execution = 1 if config.steps_per_execution == "auto" else config.steps_per_execution
        jit_compile = device.resolve_jit_compile(config.jit_compile, "cpu")
    else:
        precision = runtime.precision
        steps_per_execution, jit_compile = runtime.steps_per_execution, runtime.jit_compile
    if precision == "auto":
        raise ValueError(
            "train.precision is auto, which on a CPU is measured when a job starts: train with "
            "`train_model`, or build the model with a runtime whose precision is resolved "
            "(`measured_precision`)."
        )
    return precision, steps_per_execution, jit_compile


def resolve_runtime(config: TrainConfig, fit_count: int, selected: tuple[str, str] | None = None):
    """`lossbench.train.device.Runtime` for training on `fit_count` images: `train.device` applied
    (unless `selected`, `device.select_device`'s answer, says it already was) and every
    `auto` resolved for this machine and this epoch length."""
    from lossbench.train import device, device_loop

    if selected is None:
        selected = device.select_device(config.device, config.deterministic)
    runtime = device.runtime_for(config, math.ceil(fit_count / config.batch_size), *selected)
    return device_loop.loop_runtime(runtime, config, fit_count)


def measured_precision(config: TrainConfig, runtime, loss_name: str, seed: int, num_classes: int,
                       images: np.ndarray, labels: np.ndarray, signature: str,
                       checkpoint_path: Path):
    """(`runtime` with a CPU's `auto` precision resolved, the measured images/s or None).

    `images`, `labels` are the images the job fits, `signature` its data's `data_signature`.
    A run whose unfinished checkpoint is at `checkpoint_path` resumes in the precision it
    began in (the one whose fingerprint the checkpoint holds), unmeasured, so that it reaches
    the weights of an uninterrupted run. Otherwise each candidate precision trains a few
    steps on the job's first batch, in the job's own model, and the faster is taken
    (`lossbench.train.precision`). A runtime without `auto` is returned as it is.
    """
    import keras

    from lossbench.train import device, precision

    if runtime.precision != "auto":
        return runtime, None
    candidates = precision.candidate_precisions(device.cpu_flags())
    begun = unfinished_fingerprint(checkpoint_path, config.epochs)
    for name in candidates:
        if begun is not None and begun == job_fingerprint(config, name, loss_name, seed, signature):
            logger.info("train.precision auto: resuming in %s, the precision this run measured "
                        "and began in.", name)
            return dataclasses.replace(runtime, precision=name), None
    count = min(config.batch_size, len(labels))

    def build(name: str):
        # One step per call, whatever the job uses: the step's arithmetic is what is compared.
        measuring = dataclasses.replace(runtime, precision=name, steps_per_execution=1)
        return build_training_model(config, loss_name, seed, num_classes, measuring)[0]

    key = (keras.backend.backend(), runtime.device, runtime.jit_compile, config.width,
           config.init, config.stride2_padding, config.final_convolution_activation,
           config.shift_fraction, config.horizontal_flip,
           count, num_classes, loss_name, tuple(candidates))
    choice, rates = precision.measure(build, images[:count], labels[:count], candidates, key)
    return dataclasses.replace(runtime, precision=choice), rates


def job_fingerprint(config: TrainConfig, precision: str, loss_name: str, seed: int,
                    signature: str) -> str:
    """The checkpoint fingerprint of a job trained in `precision` (`auto` resolved: it may
    mean bf16 on one machine and float32 on another, and a checkpoint of one must not be
    resumed as the other)."""
    return config_fingerprint(dataclasses.replace(config, precision=precision), loss_name, seed,
                              signature)


def epoch_recorder(model, state: dict, run_info: dict, checkpoint_path: Path, log_dir: Path):
    """What to do once an epoch is finished (`EpochRecorder`'s `on_epoch_done`): add its
    record to the history, note a divergence, then write the checkpoint and the logs."""

    def epoch_done(record: dict, diverged: bool) -> None:
        state["history"].append(record)
        if diverged:
            # A NaN or infinite loss ends this job cleanly; the rest of the DAG still runs and
            # the run is recorded as diverged instead of failing the whole pipeline.
            state["diverged_epoch"] = record["epoch"]
            logger.warning("%s seed %d diverged at epoch %d (loss %s).", run_info["loss"],
                           run_info["seed"], record["epoch"], record["loss"])
        save_checkpoint(checkpoint_path, model, state)
        run_info.update(progress(state))
        write_training_logs(log_dir, state["history"], run_info)

    return epoch_done


def _fit_remaining_epochs(model, augmentation, config: TrainConfig, runtime, seed: int,
                          fit_data: tuple, validation_data: tuple, first_epoch: int,
                          on_epoch_done, study=None) -> None:
    """Train epochs `first_epoch + 1` to `config.epochs` in one `fit` call; early in it, the
    projected cost of `study` (of this run alone, and only as a warning, without one)."""
    from lossbench.train.callbacks import EpochRecorder, EpochSeed, ProjectedTime
    from lossbench.train.device_loop import fit_on_device
    from lossbench.train.study_cost import RunGroup, StudyCost

    (fit_images, fit_labels), (validation_images, validation_labels) = fit_data, validation_data
    steps_per_epoch = math.ceil(len(fit_labels) / config.batch_size)
    validation_batches = make_batches(validation_images, validation_labels, config.batch_size)
    callbacks = [EpochRecorder(on_epoch_done)]
    callbacks += [] if augmentation is None else [EpochSeed(augmentation, seed)]
    advise = runtime.device == "cpu" and config.device == "auto"
    if study is not None or advise:
        this_run = StudyCost([RunGroup("training", 1, "this run", config.epochs - first_epoch,
                                       len(fit_labels), len(validation_labels))],
                             config.batch_size, subject="This run")
        callbacks.append(ProjectedTime(study or this_run, steps_per_epoch, runtime.description,
                                       advise, always=study is not None))
    verbose = 1 if sys.stdout.isatty() else 2
    if augmentation is None:  # the device loop: augmentation and batches on the device
        return fit_on_device(model, config, seed, fit_data, validation_data, first_epoch,
                             callbacks, runtime.steps_per_execution, verbose)
    # One `fit` for the whole run, so Keras prints "Epoch k/N" with its ETA; in a log file
    # (Snakemake and DVC pipe the output) one line per epoch, not a redrawn progress bar.
    model.fit(
        # Each epoch's order is drawn when the epoch starts: memory does not grow with epochs.
        training_batches(fit_images, fit_labels, config.batch_size,
                         range(first_epoch, config.epochs),
                         lambda epoch: epoch_permutation(len(fit_labels), seed, epoch, config.shuffle)),
        steps_per_epoch=steps_per_epoch,
        initial_epoch=first_epoch,
        epochs=config.epochs,
        validation_data=(
            validation_batches["x"] if "y" not in validation_batches
            else (validation_batches["x"], validation_batches["y"])
        ),
        validation_batch_size=config.batch_size if "y" in validation_batches else None,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the order is `epoch_permutation`'s
    )


def check_output_paths(model_path: Path, log_dir: Path, checkpoint_dir: Path) -> None:
    """Raise ValueError, before anything is trained, for a model path not ending in .keras,
    a directory where training writes a file (the model, the checkpoint) or a file where it
    makes a directory: found only when the first epoch was written, it would waste that epoch
    and name a temporary file."""
    if model_path.suffix != ".keras":
        raise ValueError(f"The model path {model_path} must end in .keras (Keras 3's format).")
    blocked = [
        (path, what, "a directory")
        for path, what in ((model_path, "the trained model"),
                           (checkpoint_dir / CHECKPOINT_NAME, "the checkpoint"))
        if path.is_dir()
    ] + [
        (path, what, "a file")
        for path, what in ((log_dir, "the training logs"), (checkpoint_dir, "checkpoints"))
        if path.exists() and not path.is_dir()
    ]
    if blocked:
        path, what, kind = blocked[0]
        raise ValueError(
            f"{path} is {kind}, where training keeps {what}. Move it away or delete it "
            f"(`rm -r '{path}'`), then run the same command again."
        )


# Images of the fixed batch on which the gradient scale at initialisation is measured.
GRADIENT_SCALE_IMAGES = 256


def initial_gradient_scale(model, loss_name: str, images: np.ndarray, labels: np.ndarray) -> float:
    """Mean |dL/d output| of `model` on its first GRADIENT_SCALE_IMAGES training images,
    un-augmented (inference mode), with the per-sample loss (`lossbench.train.gradient_scale`)."""
    from lossbench.train.gradient_scale import output_gradient_scale

    count = min(GRADIENT_SCALE_IMAGES, len(labels))
    outputs = np.asarray(model.predict_on_batch(images[:count]), dtype=np.float32)
    return output_gradient_scale(loss_name, outputs, labels[:count])


def train_model(
    config: TrainConfig,
    loss_name: str,
    seed: int,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    model_path: Path,
    log_dir: Path,
    checkpoint_dir: Path,
    runtime=None,
    study=None,
) -> dict:
    """Train one (loss, seed) job, resuming from `checkpoint_dir` if it holds this job's state.

    `runtime` (`lossbench.train.device.Runtime`) says where and how; without it `train.device`
    and every `auto` are resolved here. `study` (`lossbench.train.study_cost.StudyCost`) gets its
    projected cost logged early. Returns the run information also in `<log_dir>/run.json`.
    """
    from lossbench.train.packs import log_start, prepare_run

    check_output_paths(Path(model_path), Path(log_dir), Path(checkpoint_dir))
    data = (train_images, train_labels, test_images, test_labels)
    fit_images, fit_labels, validation_images, validation_labels = training_and_validation(
        *data, config.validation, config.holdout_fraction, seed)
    if runtime is None:
        runtime = resolve_runtime(config, len(fit_labels))
    run = prepare_run(config, loss_name, seed, data, num_classes, model_path, log_dir,
                      checkpoint_dir, runtime)
    log_start(run, "")
    if run.unfinished:
        _fit_remaining_epochs(
            run.model, run.augmentation, config, run.runtime, seed, (fit_images, fit_labels),
            (validation_images, validation_labels), run.first_epoch, run.epoch_done(), study,
        )
    return run.finish()
