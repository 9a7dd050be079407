"""The train stage: the paper's schedule, resuming after a kill, divergence, both backends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from lossbench.pipeline.params import validate_params

PROJECT = Path(__file__).resolve().parent.parent
SHARED_ARCHIVE = PROJECT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
LOSSBENCH = [sys.executable, "-m", "lossbench.cli"]


def write_prepared(directory: Path, train_count=256, test_count=64, seed=0) -> Path:
    """A small prepared-data directory of learnable synthetic images (class = bright quadrant)."""
    from lossbench.io.prepared import Split
    from lossbench.io.prepared import write_prepared as write_arrays

    rng = np.random.default_rng(seed)
    splits = {}
    for split, count in (("train", train_count), ("test", test_count)):
        labels = np.arange(count, dtype=np.int32) % 4
        images = rng.integers(0, 80, size=(count, 32, 32, 3), dtype=np.uint8)
        for index, label in enumerate(labels):
            row, column = divmod(int(label), 2)
            images[index, row * 16:(row + 1) * 16, column * 16:(column + 1) * 16] += 150
        splits[split] = Split(images, labels)
    write_arrays(directory, splits, ["a", "b", "c", "d"])
    return directory


def write_params(path: Path, **train_changes) -> Path:
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["model"]["width"] = train_changes.pop("width", 0.1)
    params["train"].update({"epochs": 3, "batch_size": 32, **train_changes})
    validate_params(params)
    path.write_text(yaml.safe_dump(params))
    return path


def train_command(params, data, out, loss="categorical_crossentropy", seed=3):
    return [*LOSSBENCH, "--params", str(params), "train", "--loss", loss, "--seed", str(seed),
            "--data", str(data), "--model", str(out / "model.keras"),
            "--log-dir", str(out / "log"), "--checkpoint-dir", str(out / "checkpoint")]


def model_weights(path: Path) -> list[np.ndarray]:
    import keras

    return [np.asarray(weight) for weight in keras.saving.load_model(path, compile=False).get_weights()]


def test_learning_rate_follows_keras1_decay():
    """Keras 1: lr_t = lr / (1 + decay * t), t the number of steps already taken."""
    from lossbench.train.training import TrainConfig, build_training_model

    params = validate_params(yaml.safe_load((PROJECT / "params.yaml").read_text()))
    params["model"]["width"] = 0.05
    config = TrainConfig.from_params(params)
    model, _ = build_training_model(config, "hinge", seed=0, num_classes=10)
    schedule = model.optimizer._learning_rate
    for step in (0, 1, 1563, 156300):
        assert float(schedule(step)) == pytest.approx(0.01 / (1 + 1e-6 * step), rel=1e-6)
    assert model.optimizer.nesterov and model.optimizer.momentum == 0.9


def test_xla_that_keras_refuses_is_reported(caplog):
    """Keras compiles a model without XLA when a layer does not support it (RandomTranslation,
    the augmentation's shift): training must say so, not log "XLA on"."""
    from lossbench.train.device import Runtime
    from lossbench.train.training import TrainConfig, build_training_model

    params = validate_params(yaml.safe_load((PROJECT / "params.yaml").read_text()))
    params["model"]["width"] = 0.05
    runtime = Runtime(device="gpu", description="GPU: test", precision="float32",
                      steps_per_execution=1, jit_compile=True, deterministic=False)
    with caplog.at_level("WARNING", logger="lossbench.train.training"):
        model, _ = build_training_model(TrainConfig.from_params(params), "hinge", 0, 10, runtime)
    assert model.jit_compile is False
    assert "Keras compiles this model without it" in caplog.text


def test_without_shuffling_every_epoch_sees_the_same_order():
    """The paper's Keras 1.0.3 `flow` did not shuffle: each epoch, the stored order."""
    from lossbench.core.batches import epoch_permutation
    from lossbench.train.training import TrainConfig

    params = validate_params(yaml.safe_load((PROJECT / "params.yaml").read_text()))
    assert TrainConfig.from_params(params).shuffle is False  # the paper's setting is the default
    orders = [epoch_permutation(1000, seed=3, epoch=epoch, shuffle=False) for epoch in range(5)]
    for order in orders:
        np.testing.assert_array_equal(order, np.arange(1000))
    shuffled = [epoch_permutation(1000, seed=3, epoch=epoch, shuffle=True) for epoch in range(3)]
    assert not np.array_equal(shuffled[0], shuffled[1])
    assert sorted(shuffled[0]) == list(range(1000))
    # A function of (seed, epoch) only, so a resumed run sees the same orders.
    np.testing.assert_array_equal(shuffled[1], epoch_permutation(1000, seed=3, epoch=1, shuffle=True))


def test_each_epochs_order_is_drawn_when_the_epoch_starts():
    """Issue 20, D8: `train.epochs: 1000000000` built an order list for every epoch before
    the first step (20.9 GB at 48 s). The stream asks for an epoch's order only when it
    reaches that epoch, and gives exactly the batches of a per-epoch pass."""
    import tensorflow as tf

    from lossbench.core.batches import epoch_permutation, training_batches

    images = np.arange(10 * 32 * 32 * 3, dtype=np.uint8).reshape(10, 32, 32, 3)
    labels = np.arange(10, dtype=np.int32)
    drawn = []

    def order_of_epoch(epoch):
        drawn.append(epoch)
        return epoch_permutation(10, 3, epoch, shuffle=True)

    stream = training_batches(images, labels, 4, range(7, 10**9), order_of_epoch)
    batches = [labels_batch.numpy() for _images, labels_batch in stream.take(7)]

    # Epochs 7 and 8 (3 batches each: 4, 4, 2) and the first batch of 9, in their orders.
    expected = [order[start:start + 4] for epoch in (7, 8, 9)
                for order in [epoch_permutation(10, 3, epoch, shuffle=True)]
                for start in (0, 4, 8)][:7]
    for batch, indices in zip(batches, expected):
        np.testing.assert_array_equal(batch, labels[indices])
    assert drawn[:3] == [7, 8, 9] and len(drawn) <= 5  # the prefetch may run a little ahead
    assert isinstance(stream, tf.data.Dataset)


def test_holdout_split_is_stratified_and_seeded():
    from lossbench.core.batches import split_validation

    labels = np.repeat(np.arange(10), 100)
    keep, held_out = split_validation(labels, "holdout", 0.1, seed=5)
    assert len(held_out) == 100 and np.all(np.bincount(labels[held_out]) == 10)
    assert not set(keep) & set(held_out) and len(keep) + len(held_out) == 1000
    assert np.array_equal(held_out, split_validation(labels, "holdout", 0.1, seed=5)[1])
    assert not np.array_equal(held_out, split_validation(labels, "holdout", 0.1, seed=6)[1])
    keep, none = split_validation(labels, "test", 0.1, seed=5)
    assert none is None and len(keep) == 1000


def test_kill_and_resume_gives_the_uninterrupted_result(tmp_path):
    data = write_prepared(tmp_path / "data", train_count=1024, test_count=128)
    params = write_params(tmp_path / "params.yaml", epochs=3)
    uninterrupted = tmp_path / "uninterrupted"
    subprocess.run(train_command(params, data, uninterrupted), check=True, capture_output=True)

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(train_command(params, data, interrupted),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = interrupted / "checkpoint" / "checkpoint.npz"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the job ended before it could be killed"
    assert not (interrupted / "model.keras").exists()
    with np.load(checkpoint) as stored:
        epochs_done = len(json.loads(str(stored["state"]))["history"])
    assert 1 <= epochs_done < 3

    result = subprocess.run(train_command(params, data, interrupted), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" in result.stderr
    for resumed, reference in zip(model_weights(interrupted / "model.keras"),
                                  model_weights(uninterrupted / "model.keras")):
        np.testing.assert_array_equal(resumed, reference)
    history = json.loads((interrupted / "log" / "history.json").read_text())["epochs"]
    reference = json.loads((uninterrupted / "log" / "history.json").read_text())["epochs"]
    assert [record["epoch"] for record in history] == [1, 2, 3]
    for mine, theirs in zip(history, reference):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
            assert mine[key] == theirs[key], key
    assert sorted(path.name for path in (interrupted / "log").iterdir()) == ["history.json", "run.json"]


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    data = write_prepared(tmp_path / "data", train_count=128, test_count=32)
    out = tmp_path / "run"
    subprocess.run(train_command(write_params(tmp_path / "a.yaml", epochs=1), data, out), check=True,
                   capture_output=True)
    result = subprocess.run(train_command(write_params(tmp_path / "b.yaml", epochs=2, learning_rate=0.02),
                                          data, out), capture_output=True, text=True)
    assert result.returncode == 0 and "Resuming" not in result.stderr
    assert "other settings" in result.stderr


def test_divergence_is_recorded_and_the_job_succeeds(tmp_path):
    data = write_prepared(tmp_path / "data", train_count=128, test_count=32)
    params = write_params(tmp_path / "params.yaml", epochs=3, learning_rate=1e12, decay=0.0)
    out = tmp_path / "run"
    result = subprocess.run(train_command(params, data, out, loss="ova_squared_hinge"),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    run_info = json.loads((out / "log" / "run.json").read_text())
    assert run_info["diverged"] is True and run_info["diverged_epoch"] == 1
    assert run_info["epochs_completed"] == 1 and (out / "model.keras").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason=f"{SHARED_ARCHIVE} (real CIFAR-10 images) is absent")
def test_two_epochs_on_real_images_beat_chance(tmp_path):
    from archives import prepare_with_defaults as prepare
    from lossbench.io.prepared import load_prepared
    from lossbench.train.training import TrainConfig, train_model

    prepare(SHARED_ARCHIVE, dataset="image_folder", output_dir=tmp_path / "prepared",
            counts_path=tmp_path / "counts.json", train_size=6000, test_size=1000, subset_seed=0)
    data = load_prepared(tmp_path / "prepared")
    params = validate_params(yaml.safe_load((PROJECT / "params.yaml").read_text()))
    params["model"]["width"] = 0.25
    params["train"]["epochs"] = 2
    run_info = train_model(
        TrainConfig.from_params(params), "categorical_crossentropy", 0,
        data.train_images, data.train_labels, data.test_images, data.test_labels, 10,
        tmp_path / "model.keras", tmp_path / "log", tmp_path / "checkpoint",
    )
    history = json.loads((tmp_path / "log" / "history.json").read_text())["epochs"]
    assert run_info["epochs_completed"] == 2
    # Beating chance means an accuracy that guessing (10 %) reaches with probability < 0.1 %.
    from scipy.stats import binom

    correct = round(history[-1]["val_accuracy"] * len(data.test_labels))
    assert binom.sf(correct - 1, len(data.test_labels), 0.1) < 1e-3, history


# ---------------------------------------------------------------------------------------
# A checkpoint is resumed only by the same unfinished run (issue 12)
# ---------------------------------------------------------------------------------------


def copy_package(root: Path) -> dict:
    """A copy of workflow/ (the package and its schema) and the environment that imports it."""
    import shutil

    shutil.copytree(PROJECT / "workflow", root / "workflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dict(os.environ, PYTHONPATH=str(root / "workflow"))


def mark_unfinished(checkpoint: Path, epochs_done: int) -> None:
    """Rewrite a checkpoint's history as if the run had stopped after `epochs_done` epochs."""
    with np.load(checkpoint) as stored:
        arrays = {name: stored[name] for name in stored.files}
    state = json.loads(str(arrays["state"]))
    state["history"] = state["history"][:epochs_done]
    arrays["state"] = np.array(json.dumps(state))
    np.savez(checkpoint, **arrays)


def test_editing_the_code_retrains_instead_of_resuming(tmp_path):
    data = write_prepared(tmp_path / "data", train_count=128, test_count=32)
    params = write_params(tmp_path / "params.yaml", epochs=2)
    environment = copy_package(tmp_path / "code")
    out = tmp_path / "run"
    checkpoint = out / "checkpoint" / "checkpoint.npz"
    command = train_command(params, data, out)
    subprocess.run(command, check=True, capture_output=True, env=environment)
    before = json.loads((out / "log" / "history.json").read_text())["epochs"]

    # The same code resumes an unfinished checkpoint...
    mark_unfinished(checkpoint, 1)
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming categorical_crossentropy seed 3 after epoch 1" in result.stderr

    # ...but after an edit to a loss, training starts again and the edited loss shows.
    mark_unfinished(checkpoint, 1)
    losses = tmp_path / "code" / "workflow" / "lossbench" / "core" / "losses.py"
    original = "return -ops.sum(one_hot * ops.log(probabilities), axis=-1)"
    assert original in losses.read_text()
    losses.write_text(losses.read_text().replace(original, "return -50.0 * " + original[8:]))
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" not in result.stderr
    assert "other settings, data or code" in result.stderr
    after = json.loads((out / "log" / "history.json").read_text())["epochs"]
    assert [record["epoch"] for record in after] == [1, 2]
    assert after[0]["loss"] > 10 * before[0]["loss"]


def test_a_finished_run_is_trained_again(tmp_path):
    """`snakemake --forcerun train`, `dvc repro -f` or a rerun after a dependency changed."""
    data = write_prepared(tmp_path / "data", train_count=128, test_count=32)
    params = write_params(tmp_path / "params.yaml", epochs=1)
    out = tmp_path / "run"
    subprocess.run(train_command(params, data, out), check=True, capture_output=True)
    first_model = (out / "model.keras").stat().st_mtime_ns

    result = subprocess.run(train_command(params, data, out), capture_output=True, text=True)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" not in result.stderr
    assert "records a finished run" in result.stderr
    history = json.loads((out / "log" / "history.json").read_text())["epochs"]
    assert [record["epoch"] for record in history] == [1]
    assert (out / "model.keras").stat().st_mtime_ns != first_model


# ---------------------------------------------------------------------------------------
# Unreadable checkpoints are set aside; no temporary file outlives a failed write (issue 12)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    from lossbench.train.training import TrainConfig, build_training_model

    params = validate_params(yaml.safe_load((PROJECT / "params.yaml").read_text()))
    params["model"]["width"] = 0.05
    model, _ = build_training_model(TrainConfig.from_params(params), "hinge", seed=0, num_classes=4)
    model.optimizer.build(model.trainable_variables)
    return model


def damage(path: Path, kind: str, model) -> None:
    from lossbench.train.checkpoint import save_checkpoint

    state = {"fingerprint": "f", "history": [{"epoch": 1}], "diverged_epoch": None}
    if kind == "truncated":
        save_checkpoint(path, model, state, background=False)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_a_zip":
        path.write_text("this is not a checkpoint\n")
    elif kind == "wrong_keys":
        np.savez(path, state=np.array(json.dumps(state)), unrelated=np.zeros(3))
    elif kind == "wrong_shapes":
        np.savez(path, state=np.array(json.dumps(state)),
                 **{f"model_{index}": np.zeros(1) for index in range(len(model.variables))},
                 **{f"optimizer_{index}": np.zeros(1)
                    for index in range(len(model.optimizer.variables))})


@pytest.mark.parametrize("kind", ["truncated", "empty", "not_a_zip", "wrong_keys", "wrong_shapes"])
def test_an_unreadable_checkpoint_is_set_aside(tmp_path, tiny_model, kind, caplog):
    from lossbench.train.checkpoint import load_checkpoint

    path = tmp_path / "checkpoint.npz"
    damage(path, kind, tiny_model)
    before = [variable.numpy().copy() for variable in tiny_model.variables]

    assert load_checkpoint(path, tiny_model, "f") is None

    assert not path.exists()
    assert (tmp_path / "checkpoint.npz.unreadable").is_file()
    assert "unreadable" in caplog.text and "starting afresh" in caplog.text
    for variable, array in zip(tiny_model.variables, before):
        np.testing.assert_array_equal(variable.numpy(), array)


def test_training_starts_afresh_over_a_truncated_checkpoint(tmp_path, tiny_model):
    data = write_prepared(tmp_path / "data", train_count=128, test_count=32)
    params = write_params(tmp_path / "params.yaml", epochs=1)
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    damage(out / "checkpoint" / "checkpoint.npz", "truncated", tiny_model)

    result = subprocess.run(train_command(params, data, out), capture_output=True, text=True)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "unreadable" in result.stderr and "starting afresh" in result.stderr
    assert (out / "model.keras").is_file()
    assert (out / "checkpoint" / "checkpoint.npz.unreadable").is_file()
    with np.load(out / "checkpoint" / "checkpoint.npz") as stored:
        assert len(json.loads(str(stored["state"]))["history"]) == 1


def test_a_failed_checkpoint_write_leaves_no_temporary_file(tmp_path, tiny_model, monkeypatch):
    import errno

    from lossbench.train import checkpoint

    def disk_full(path, **arrays):
        Path(path).write_bytes(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint.np, "savez", disk_full)
    path = tmp_path / "checkpoint.npz"
    # Written beside training: the error reaches the run when it next waits for its writes
    # (at the next read of a checkpoint, or at the end of the run).
    checkpoint.save_checkpoint(path, tiny_model, {"history": []})
    with pytest.raises(OSError, match="No space left"):
        checkpoint.wait_for_checkpoints()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_checkpoint(path, tiny_model, {"history": []}, background=False)


@pytest.mark.parametrize("blocked", ["checkpoint", "model", "log_dir"])
def test_a_directory_where_a_file_goes_is_refused_before_training(tmp_path, monkeypatch, blocked):
    """Issue 20, D2: a directory at checkpoint.npz trained an epoch, then failed with "Is a
    directory" naming a temporary file."""
    from lossbench.train import training

    def no_training(*args, **kwargs):
        raise AssertionError("training began before the paths were checked")

    monkeypatch.setattr(training, "build_training_model", no_training)
    monkeypatch.setattr(training, "resolve_runtime", no_training)
    out = tmp_path / "run"
    path = {"checkpoint": out / "checkpoint" / "checkpoint.npz", "model": out / "model.keras",
            "log_dir": out / "log"}[blocked]
    if blocked == "log_dir":
        path.parent.mkdir(parents=True)
        path.write_text("a file where the log directory goes")
    else:
        path.mkdir(parents=True)
    config = training.TrainConfig.from_params(
        validate_params(yaml.safe_load((PROJECT / "params.yaml").read_text())))
    images, labels = np.zeros((8, 32, 32, 3), np.uint8), np.arange(8, dtype=np.int32) % 2

    with pytest.raises(ValueError) as error:
        training.train_model(config, "hinge", 0, images, labels, images, labels, 2,
                             out / "model.keras", out / "log", out / "checkpoint")

    kind = "a file" if blocked == "log_dir" else "a directory"
    assert str(error.value).startswith(f"{path} is {kind}, where training keeps")
    assert f"rm -r '{path}'" in str(error.value)


@pytest.mark.parametrize(
    ("sent", "status", "line"),
    # SIGTERM's mechanism is tested in seconds in test_cli.py; this is the real training (~20 s).
    [(signal.SIGINT, 130, "interrupted."),
     pytest.param(signal.SIGTERM, 143, "terminated (SIGTERM).", marks=pytest.mark.slow)],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_and_sigterm_end_training_with_one_line(tmp_path, sent, status, line):
    data = write_prepared(tmp_path / "data", train_count=128, test_count=32)
    params = write_params(tmp_path / "params.yaml", epochs=50)
    out = tmp_path / "run"
    # Ctrl-C's default action in the job, whatever this test process inherited or was left
    # with: an ignored SIGINT would be ignored by the child too (exec keeps SIG_IGN).
    process = subprocess.Popen(train_command(params, data, out), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoint = out / "checkpoint" / "checkpoint.npz"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(sent)
    _, err = process.communicate(timeout=120)

    assert process.returncode == status, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"lossbench train: {line}")
    assert not list(out.rglob(".*.tmp*"))
    assert checkpoint.is_file()  # a rerun resumes from it (test_kill_and_resume_...)


def test_an_interrupt_during_a_write_waits_for_the_rename(tmp_path):
    """Ctrl-C while a small output is being written: the file is complete, no temporary is
    left, and the interrupt still arrives once the write is done."""
    import signal as signals

    from lossbench.io import atomic

    target = tmp_path / "run.json"
    # Python's own Ctrl-C handler, whatever an earlier test or library left installed.
    previous = signals.signal(signals.SIGINT, signals.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with atomic.signals_deferred():
                os.kill(os.getpid(), signals.SIGINT)  # delivered only when the block ends
                atomic.write_json(target, {"complete": True})
    finally:
        signals.signal(signals.SIGINT, previous)
    assert json.loads(target.read_text()) == {"complete": True}
    assert not list(tmp_path.glob(".*.tmp*"))


def test_the_typed_config_has_one_field_per_training_key_in_order():
    """Issue 29: TrainConfig is a plain dataclass a reader (or an IDE) can follow from
    params.yaml to where each value is used; its fields are TRAIN_KEYS, in order, and a field's
    type admits the value the schema's default gives."""
    import dataclasses
    import typing

    from lossbench.pipeline.params import TRAIN_KEYS, load_params
    from lossbench.train.training import TrainConfig

    fields = dataclasses.fields(TrainConfig)
    assert [field.name for field in fields] == [key.split(".")[-1] for key in TRAIN_KEYS]
    config = TrainConfig.from_params(load_params(PROJECT / "params.yaml"))
    hints = typing.get_type_hints(TrainConfig)
    for field in fields:
        value = getattr(config, field.name)
        allowed = typing.get_args(hints[field.name]) or (hints[field.name],)
        assert isinstance(value, allowed) or (float in allowed and isinstance(value, int)), field.name
