"""The `train` stage: train the paper's model with one loss and one seed.

In:  prepared data (`lossbench.prepared.load_prepared`), the validated params (`model.*`,
     `train.*`), a loss name and a seed.
Out: the trained model (`<model_path>`, a `.keras` file taking uint8 images), and a log
     directory holding `history.json` (per-epoch loss, accuracy, val_loss, val_accuracy,
     learning rate and seconds), `run.json` (device, backend, precision, versions, whether
     the run diverged) and dvclive's per-epoch files (`plots/metrics/`).

What the paper's Keras 1 code did, and how it is reproduced here (README, "What the paper's
code did", cites the authors' script line by line):
- The model of `lossbench.model` with Keras 1.0.3's initialisation and Theano's symmetric
  stride-2 padding (`model.init`, `model.stride2_padding`).
- No shuffling (`train.shuffle: false`): Keras 1.0.3's `flow` kept the stored order, so every
  epoch sees the same batches.
- SGD with Nesterov momentum 0.9 and Keras 1's `decay`: the step size at step t is
  learning_rate / (1 + decay * t), t counted from 0. `keras.optimizers.schedules.
  InverseTimeDecay(learning_rate, decay_steps=1, decay_rate=decay)` is exactly that formula.
- Inputs scaled to [0, 1]; random shifts of up to 10 % with nearest fill and horizontal flips,
  run as Keras preprocessing layers inside the training graph (`lossbench.augment`).
- The test set as validation data each epoch (`train.validation: test`), or a seeded hold-out.

One job is one Keras `fit` over all remaining epochs (its log reads "Epoch k/N"); the
callbacks of `lossbench.callbacks` reseed the augmentation before each epoch, record each
finished epoch (checkpoint and logs) and stop on a non-finite loss. `lossbench.device` says
where it runs and resolves the `auto` settings.

Reproducibility and interruptions: everything random is a function of (seed, epoch) — the
weights' initialisation of the seed, each epoch's shuffling and augmentation of (seed, epoch) —
and after each epoch a checkpoint (weights, optimizer state, history) is written atomically.
Rerunning an interrupted job resumes from the last finished epoch and reaches the same weights
as an uninterrupted run. A checkpoint is resumed only by the same unfinished run: one made
with other settings, other data or other code (any source file of this package) is ignored,
one that records a finished run (every epoch done, or diverged) is deleted so that a rerun
trains afresh, and an unreadable one is set aside as `checkpoint.npz.unreadable`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pickle
import platform
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from lossbench.atomic import write_json
from lossbench.params import TRAIN_KEYS, get_key

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.npz"
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training settings of one job, read from params.yaml (`model.*`, `train.*`)."""

    width: float
    init: str
    stride2_padding: str
    epochs: int
    batch_size: int
    learning_rate: float
    decay: float
    momentum: float
    nesterov: bool
    shift_fraction: float
    horizontal_flip: bool
    shuffle: bool
    validation: str
    holdout_fraction: float
    precision: str
    steps_per_execution: int | str
    device: str
    jit_compile: bool | str
    deterministic: bool

    @classmethod
    def from_params(cls, params: dict) -> "TrainConfig":
        values = {key.split(".")[-1]: get_key(params, key) for key in TRAIN_KEYS}
        return cls(**values)


def split_validation(
    labels: np.ndarray, validation: str, holdout_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices of the training images to train on and, for `holdout`, to validate on.

    For `test` every training image is trained on and validation uses the test set (None).
    For `holdout` a stratified fraction of each class is held out, drawn from the seed.
    """
    if validation == "test":
        return np.arange(len(labels)), None
    if validation != "holdout":
        raise ValueError(f"train.validation is {validation!r}; use `test` or `holdout`.")
    rng = np.random.default_rng([seed, 7919])
    held_out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(len(members) * holdout_fraction))
        held_out.append(rng.choice(members, size=count, replace=False))
    held_out = np.sort(np.concatenate(held_out))
    if len(held_out) == 0 or len(held_out) == len(labels):
        raise ValueError(
            f"train.holdout_fraction {holdout_fraction} leaves no images to "
            f"{'validate' if len(held_out) == 0 else 'train'} on from {len(labels)} training images."
        )
    keep = np.setdiff1d(np.arange(len(labels)), held_out)
    return keep, held_out


def epoch_permutation(count: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of epoch `epoch`'s training images.

    With `shuffle` a permutation that is a function of (seed, epoch) only, so a resumed run
    sees the orders an uninterrupted one would. Without it the stored order, the same every
    epoch: what the paper's Keras <= 1.0.3 `ImageDataGenerator.flow` did by default
    (authors' script, cifar_classifier.py line 119, passes no `shuffle`).
    """
    if not shuffle:
        return np.arange(count)
    return np.random.default_rng([seed, epoch, 104729]).permutation(count)


def make_batches(images: np.ndarray, labels: np.ndarray, batch_size: int):
    """What `fit`/`evaluate` iterate over, in the given order, for the active backend.

    For TensorFlow a tf.data pipeline with autotuning off: with it on, we measured `fit`
    stalling for 3 to 15 s with the CPU idle. Other backends take the arrays themselves.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return {"x": images, "y": labels, "batch_size": batch_size, "shuffle": False}
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    dataset = dataset.with_options(options).prefetch(2)
    return {"x": dataset, "shuffle": False}


def training_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, orders):
    """All remaining epochs' training batches as one stream, for one `fit` call.

    `orders` holds one index array per remaining epoch (`epoch_permutation`); each epoch is
    batched on its own, so its last batch may be short, exactly as a per-epoch pass would be.
    `fit` is given `steps_per_epoch`, so it draws each epoch's batches from this one stream
    in order. For TensorFlow a tf.data pipeline that gathers each batch from the arrays
    (autotuning off, as in `make_batches`); other backends get a Python generator.
    """
    import keras

    lengths = [len(order) for order in orders]
    boundaries = [
        (start, min(start + batch_size, length))
        for length in lengths for start in range(0, length, batch_size)
    ]
    if keras.backend.backend() != "tensorflow":
        def generate():
            for order in orders:
                for start in range(0, len(order), batch_size):
                    batch = order[start:start + batch_size]
                    yield images[batch], labels[batch]

        return generate()
    import tensorflow as tf

    row_lengths = [end - start for start, end in boundaries]
    index_batches = tf.RaggedTensor.from_row_lengths(
        np.concatenate(orders).astype(np.int64), np.asarray(row_lengths, dtype=np.int64)
    )
    images_tensor, labels_tensor = tf.constant(images), tf.constant(labels)
    dataset = tf.data.Dataset.from_tensor_slices(index_batches).map(
        lambda batch: (tf.gather(images_tensor, batch), tf.gather(labels_tensor, batch))
    )
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    return dataset.with_options(options).prefetch(2)


def describe_device() -> str:
    """Which device trains: the first GPU if the backend sees one, else the CPU's model name."""
    from lossbench import device

    gpus = device.visible_gpus()
    if gpus:
        return f"GPU: {gpus[0]}"
    return f"CPU: {device.cpu_model_name()} ({os.cpu_count()} cores)"


def library_versions() -> dict[str, str]:
    import keras

    import lossbench

    versions = {"python": platform.python_version(), "keras": keras.__version__,
                "lossbench": lossbench.__version__, "numpy": np.__version__}
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    elif backend == "jax":
        import jax

        versions["jax"] = jax.__version__
    return versions


def config_fingerprint(config: TrainConfig, loss_name: str, seed: int, data_signature: str) -> str:
    """What a checkpoint must match to be resumed from: settings, loss, seed, data, backend
    and the code training runs (`lossbench.sources.source_digest("train")`: train.py and
    every lossbench module it imports, read from the imports), so that a code change never
    resumes a run that older code began, while editing, say, report.py does not restart one."""
    import keras

    from lossbench.sources import source_digest

    text = json.dumps(
        {"config": dataclasses.asdict(config), "loss": loss_name, "seed": seed,
         "data": data_signature, "backend": keras.backend.backend(), "code": source_digest("train")},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def data_signature(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def build_training_model(
    config: TrainConfig, loss_name: str, seed: int, num_classes: int, runtime=None
):
    """The paper's net behind scaling and augmentation, compiled with the paper's SGD.

    `runtime` (`lossbench.device.Runtime`) gives the precision, steps per execution and XLA
    setting with every `auto` resolved; without one they are resolved for a CPU.
    """
    import keras
    from keras import layers

    from lossbench import device
    from lossbench.augment import build_augmentation
    from lossbench.losses import get_loss
    from lossbench.model import build_model

    loss = get_loss(loss_name)
    if runtime is None:
        precision = device.resolve_precision(config.precision, "cpu")
        steps_per_execution = 1 if config.steps_per_execution == "auto" else config.steps_per_execution
        jit_compile = device.resolve_jit_compile(config.jit_compile, "cpu")
    else:
        precision = runtime.precision
        steps_per_execution, jit_compile = runtime.steps_per_execution, runtime.jit_compile
    keras.mixed_precision.set_dtype_policy(precision)
    # One call seeds Python, NumPy and the backend, so the initial weights depend on the seed.
    keras.utils.set_random_seed(seed)
    classifier = build_model(
        num_classes=num_classes,
        width=config.width,
        output_activation=loss.output_activation,
        init=config.init,
        stride2_padding=config.stride2_padding,
    )
    augmentation = build_augmentation(config.shift_fraction, config.horizontal_flip, seed)
    inputs = keras.Input(shape=classifier.input_shape[1:], dtype="uint8", name="images")
    scaled = layers.Rescaling(1.0 / 255.0, name="scale_to_unit_range")(inputs)
    outputs = classifier(augmentation(scaled))
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
    return model, augmentation


def _variables_to_arrays(variables) -> list[np.ndarray]:
    import keras

    return [keras.ops.convert_to_numpy(variable.value) for variable in variables]


def save_checkpoint(path: Path, model, state: dict) -> None:
    """Weights, optimizer state and the run's history in one file, replaced atomically."""
    arrays = {}
    for index, array in enumerate(_variables_to_arrays(model.variables)):
        arrays[f"model_{index}"] = array
    for index, array in enumerate(_variables_to_arrays(model.optimizer.variables)):
        arrays[f"optimizer_{index}"] = array
    arrays["state"] = np.array(json.dumps(state))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp.npz")
    try:
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    except BaseException:
        # A full disk or a Ctrl-C mid-write must not leave a partial file behind.
        temporary.unlink(missing_ok=True)
        raise


# What reading a damaged checkpoint raises: np.load and zipfile on a truncated, empty or
# foreign file (BadZipFile, EOFError, ValueError, OSError, UnpicklingError), a missing array
# (KeyError), a state that is not JSON or not a mapping (ValueError, AttributeError, TypeError).
UNREADABLE_CHECKPOINT_ERRORS = (
    zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, OSError, KeyError,
    AttributeError, TypeError,
)


def set_aside(path: Path, reason: str) -> None:
    """Rename an unusable checkpoint to `<name>.unreadable`, kept for inspection, and warn."""
    aside = path.with_name(f"{path.name}.unreadable")
    logger.warning("Checkpoint %s is unreadable (%s); moved it to %s and starting afresh.",
                   path, reason, aside)
    os.replace(path, aside)


def load_checkpoint(path: Path, model, fingerprint: str, epochs: int | None = None) -> dict | None:
    """Restore weights and optimizer state if `path` holds an unfinished checkpoint of this job.

    Returns the stored state, or None to train afresh: when there is no checkpoint, when it
    was made with other settings, data or code, when it records a finished run (`epochs`
    done, or diverged; it is deleted, since resuming it would train nothing), and when it is
    unreadable (it is set aside as `<name>.unreadable`).
    """
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            state = json.loads(str(stored["state"]))
            if state.get("fingerprint") != fingerprint:
                logger.warning(
                    "Ignoring checkpoint %s: it was made with other settings, data or code.", path
                )
                return None
            done = len(state["history"])
            if state.get("diverged_epoch") is not None or (epochs is not None and done >= epochs):
                logger.info("Checkpoint %s records a finished run (after epoch %d%s); deleting it "
                            "and training afresh.", path, done,
                            ", diverged" if state.get("diverged_epoch") is not None else "")
                path.unlink()
                return None
            model_arrays = [stored[f"model_{i}"] for i in range(len(model.variables))]
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            optimizer_arrays = [
                stored[f"optimizer_{i}"] for i in range(len(model.optimizer.variables))
            ]
        variables = [*model.variables, *model.optimizer.variables]
        for variable, array in zip(variables, [*model_arrays, *optimizer_arrays]):
            if tuple(variable.shape) != array.shape:
                raise ValueError(f"{variable.path} has shape {array.shape}, not {variable.shape}")
    except UNREADABLE_CHECKPOINT_ERRORS as error:
        set_aside(path, f"{type(error).__name__}: {error}")
        return None
    for variable, array in zip(model.variables, model_arrays):
        variable.assign(array)
    for variable, array in zip(model.optimizer.variables, optimizer_arrays):
        variable.assign(array)
    return state


def write_training_logs(log_dir: Path, history: list[dict], run_info: dict) -> None:
    """history.json, run.json and dvclive's files, rebuilt from the full history.

    dvclive's files are written afresh from the whole history each time, so a resumed run
    leaves exactly the logs an uninterrupted one would.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    write_json(log_dir / "history.json", {"epochs": history})
    write_json(log_dir / "run.json", run_info)
    try:
        from dvclive import Live
    except ImportError:
        # Machines that only train (a lent GPU with no DVC) still get history.json and run.json.
        logger.warning("dvclive is not installed: %s gets no files for `dvc plots`.", log_dir)
        return

    class FilesOnlyLive(Live):
        """dvclive's files without its DVC integration, which this pipeline does not need.

        The stage declares these files as its outputs itself. Left alone, `Live()` opens the
        DVC repository, runs `dvc init` in a git repository that has none, and fails in a
        git repository without commits (dvclive 3.49: "Empty git repo").
        """

        def _init_dvc(self):
            self._dvc_repo = None

    with FilesOnlyLive(
        dir=str(log_dir), resume=False, save_dvc_exp=False, dvcyaml=None, report=None
    ) as live:
        for record in history:
            live.step = record["epoch"]
            for name in ("loss", "accuracy"):
                if record.get(name) is not None:
                    live.log_metric(f"train/{name}", record[name])
                if record.get(f"val_{name}") is not None:
                    live.log_metric(f"val/{name}", record[f"val_{name}"])
            live.log_metric("learning_rate", record["learning_rate"])
            live.log_metric("seconds", record["seconds"])


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
) -> dict:
    """Train one (loss, seed) job, resuming from `checkpoint_dir` if it holds this job's state.

    `runtime` (`lossbench.device.Runtime`) says where and how; without it `train.device`
    and every `auto` are resolved here. Returns the run information also written to
    `<log_dir>/run.json`.
    """
    import keras

    model_path, log_dir, checkpoint_dir = Path(model_path), Path(log_dir), Path(checkpoint_dir)
    if model_path.suffix != ".keras":
        raise ValueError(f"The model path {model_path} must end in .keras (Keras 3's format).")
    train_indices, holdout_indices = split_validation(
        train_labels, config.validation, config.holdout_fraction, seed
    )
    if holdout_indices is None:
        fit_images, fit_labels = train_images, train_labels
        validation_images, validation_labels = test_images, test_labels
    else:
        fit_images, fit_labels = train_images[train_indices], train_labels[train_indices]
        validation_images = train_images[holdout_indices]
        validation_labels = train_labels[holdout_indices]

    from lossbench import device
    from lossbench.callbacks import EpochRecorder, EpochSeed, ProjectedTimeWarning

    if runtime is None:
        runtime = device.resolve_runtime(
            config, math.ceil(len(fit_labels) / config.batch_size),
            *device.select_device(config.device, config.deterministic),
        )
    model, augmentation = build_training_model(config, loss_name, seed, num_classes, runtime)
    # The fingerprint holds the resolved precision: `auto` may mean bf16 on one machine and
    # float32 on another, and a checkpoint of one must not be resumed as the other.
    fingerprint = config_fingerprint(
        dataclasses.replace(config, precision=runtime.precision), loss_name, seed,
        data_signature(train_images, train_labels, test_images, test_labels),
    )
    checkpoint_path = checkpoint_dir / CHECKPOINT_NAME
    state = load_checkpoint(checkpoint_path, model, fingerprint, epochs=config.epochs)
    if state is None:
        state = {"fingerprint": fingerprint, "history": [], "diverged_epoch": None}
    else:
        logger.info("Resuming %s seed %d after epoch %d from %s.", loss_name, seed,
                    len(state["history"]), checkpoint_path)
    history: list[dict] = state["history"]

    run_info = {
        "loss": loss_name,
        "seed": seed,
        "epochs_planned": config.epochs,
        "epochs_completed": len(history),
        "diverged": state["diverged_epoch"] is not None,
        "diverged_epoch": state["diverged_epoch"],
        "train_seconds": float(sum(record["seconds"] for record in history)),
        "device": runtime.description,
        "backend": keras.backend.backend(),
        "precision": runtime.precision,
        "precision_setting": config.precision,
        "steps_per_execution": runtime.steps_per_execution,
        "jit_compile": runtime.jit_compile,
        "deterministic": runtime.deterministic,
        "validation": config.validation,
        "train_size": int(len(fit_labels)),
        "validation_size": int(len(validation_labels)),
        "versions": library_versions(),
        "command": " ".join(["lossbench", *sys.argv[1:]]) if sys.argv else "",
    }
    logger.info("Training %s, seed %d, on %s with the %s backend, %s, %d step(s) per "
                "execution, XLA %s.", loss_name, seed, runtime.description, run_info["backend"],
                runtime.precision, runtime.steps_per_execution,
                "on" if runtime.jit_compile else "off")

    def epoch_done(record: dict, diverged: bool) -> None:
        history.append(record)
        if diverged:
            # A NaN or infinite loss ends this job cleanly; the rest of the DAG still runs and
            # the run is recorded as diverged instead of failing the whole pipeline.
            state["diverged_epoch"] = record["epoch"]
            logger.warning("%s seed %d diverged at epoch %d (loss %s).", loss_name, seed,
                           record["epoch"], record["loss"])
        save_checkpoint(checkpoint_path, model, state)
        run_info.update(
            epochs_completed=len(history),
            diverged=state["diverged_epoch"] is not None,
            diverged_epoch=state["diverged_epoch"],
            train_seconds=float(sum(item["seconds"] for item in history)),
        )
        write_training_logs(log_dir, history, run_info)

    first_epoch = len(history)
    if first_epoch < config.epochs and state["diverged_epoch"] is None:
        steps_per_epoch = math.ceil(len(fit_labels) / config.batch_size)
        orders = [epoch_permutation(len(fit_labels), seed, epoch, config.shuffle)
                  for epoch in range(first_epoch, config.epochs)]
        validation_batches = make_batches(validation_images, validation_labels, config.batch_size)
        callbacks = [EpochSeed(augmentation, seed), EpochRecorder(epoch_done)]
        if runtime.device == "cpu" and config.device == "auto":
            callbacks.append(ProjectedTimeWarning(
                steps_per_epoch, config.epochs - first_epoch,
                math.ceil(len(validation_labels) / config.batch_size),
            ))
        # One `fit` for the whole run, so Keras prints "Epoch k/N" with its ETA. In a log
        # file (Snakemake and DVC pipe the output) one line per epoch, not a progress bar
        # redrawn with carriage returns.
        model.fit(
            training_batches(fit_images, fit_labels, config.batch_size, orders),
            steps_per_epoch=steps_per_epoch,
            initial_epoch=first_epoch,
            epochs=config.epochs,
            validation_data=(
                validation_batches["x"] if "y" not in validation_batches
                else (validation_batches["x"], validation_batches["y"])
            ),
            validation_batch_size=config.batch_size if "y" in validation_batches else None,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
            shuffle=False,  # the order is `orders`, chosen above
        )

    write_training_logs(log_dir, history, run_info)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = model_path.with_name(f".{model_path.stem}.tmp.keras")
    try:
        model.save(temporary)
        os.replace(temporary, model_path)
    except BaseException:
        temporary.unlink(missing_ok=True)  # No partial model left behind by a full disk.
        raise
    return run_info


def run(
    params: dict,
    loss_name: str,
    seed: int,
    data_dir: Path,
    model_path: Path,
    log_dir: Path,
    checkpoint_dir: Path,
) -> dict:
    """The CLI's entry point: read the prepared data and train one (loss, seed) job."""
    from lossbench.losses import get_loss
    from lossbench.prepared import load_prepared

    get_loss(loss_name)  # fail before loading data if the loss name is unknown
    if seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed}.")
    from lossbench import device

    config = TrainConfig.from_params(params)
    # A job that must run on a GPU stops here, in seconds, before the data is read.
    kind, description = device.select_device(config.device, config.deterministic)
    data = load_prepared(data_dir)
    fit_count = len(data.train_labels)
    if config.validation == "holdout":
        fit_count -= len(split_validation(data.train_labels, "holdout", config.holdout_fraction, seed)[1])
    runtime = device.resolve_runtime(
        config, math.ceil(fit_count / config.batch_size), kind, description
    )
    return train_model(
        config,
        loss_name,
        seed,
        data.train_images,
        data.train_labels,
        data.test_images,
        data.test_labels,
        num_classes=len(data.class_names),
        model_path=model_path,
        log_dir=log_dir,
        checkpoint_dir=checkpoint_dir,
        runtime=runtime,
    )
