"""The train stage's log directory: what one run did, epoch by epoch, and where it ran.

In:  the run's history (one record per finished epoch, from `lossbench.train.callbacks.
     EpochRecorder`: epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, seconds)
     and its run information (`run_information`).
Out: in the log directory, rewritten whole after every epoch:
     - `history.json`: {"epochs": [record, ...]}, read by evaluate and figures (figures turns
       every run's history into reports/epochs.csv, which `dvc plots` draws);
     - `run.json`: the run information (loss, seed, epochs planned and completed, whether
       and when it diverged, training seconds, device, backend, precision, versions, the
       code's commit, command; `started`, the UTC time it was prepared, and `pack_size`).
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np

from lossbench.io.atomic import write_json


def library_versions() -> dict[str, str]:
    """Python's, Keras's, lossbench's, NumPy's and the active backend's versions."""
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


def progress(state: dict) -> dict:
    """The run information that changes each epoch, from the run's state (its history and
    the epoch it diverged at, or None)."""
    return {
        "epochs_completed": len(state["history"]),
        "diverged": state["diverged_epoch"] is not None,
        "diverged_epoch": state["diverged_epoch"],
        "train_seconds": float(sum(record["seconds"] for record in state["history"])),
    }


def code_version() -> dict:
    """{"commit", "dirty"} of the code that trains: LOSSBENCH_COMMIT where it is set (a copy
    without git, such as the lent GPU machine's), else git's HEAD of the checkout holding the
    package and whether its workflow/ has uncommitted changes; None where neither is known."""
    import os
    import subprocess

    if os.environ.get("LOSSBENCH_COMMIT"):
        return {"commit": os.environ["LOSSBENCH_COMMIT"], "dirty": None}
    folder = Path(__file__).resolve().parents[2]  # workflow/
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        changes = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--", "."],
                                 check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(changes.strip())}


def run_information(config, loss_name: str, seed: int, runtime, state: dict,
                    train_size: int, validation_size: int) -> dict:
    """run.json's content: `config` is the job's `TrainConfig`, `runtime` its resolved
    `lossbench.train.device.Runtime`, `state` the checkpoint state it starts from."""
    import keras

    return {
        "loss": loss_name,
        "seed": seed,
        "epochs_planned": config.epochs,
        "learning_rate": config.learning_rate,
        **progress(state),
        "device": runtime.description,
        "backend": keras.backend.backend(),
        "precision": runtime.precision,
        "precision_setting": config.precision,
        # Training images/s of each precision `auto` timed on a CPU (None: nothing measured).
        "precision_measured": state.get("precision_measured"),
        "steps_per_execution": runtime.steps_per_execution,
        "jit_compile": runtime.jit_compile,
        "deterministic": runtime.deterministic,
        "validation": config.validation,
        "train_size": int(train_size),
        "validation_size": int(validation_size),
        "versions": library_versions(),
        # The code's commit, so a study can check its runs against its pre-registration.
        "code": code_version(),
        "command": " ".join(["lossbench", *sys.argv[1:]]) if sys.argv else "",
    }


def write_training_logs(log_dir: Path, history: list[dict], run_info: dict) -> None:
    """history.json and run.json, rebuilt from the full history.

    Both files are written afresh from the whole history each time, so a resumed run leaves
    exactly the logs an uninterrupted one would.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    write_json(log_dir / "history.json", {"epochs": history})
    write_json(log_dir / "run.json", run_info)
