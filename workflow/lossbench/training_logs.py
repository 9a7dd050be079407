"""The train stage's log directory: what one run did, epoch by epoch, and where it ran.

In:  the run's history (one record per finished epoch, from `lossbench.callbacks.
     EpochRecorder`: epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, seconds)
     and its run information (`run_information`).
Out: in the log directory, rewritten whole after every epoch:
     - `history.json`: {"epochs": [record, ...]};
     - `run.json`: the run information (loss, seed, epochs planned and completed, whether
       and when it diverged, training seconds, device, backend, precision, versions, command);
     - dvclive's file layout, for `dvc plots show` / `dvc metrics show` and DVC's VS Code
       extension: `plots/metrics/<name>.tsv` (a `step` column, the epoch, and the value, for
       train/loss, train/accuracy, val/loss, val/accuracy, learning_rate and seconds) and
       `metrics.json` (the last value of each, and the last step).

The dvclive layout is written here rather than by `dvclive.Live`: `Live()` always opens the
DVC repository of the working directory, whatever its arguments (`save_dvc_exp=False` and
`dvcyaml=None` only stop it from saving an experiment and writing dvc.yaml). In a git
repository without DVC it runs `dvc init`; in a git repository without commits it fails
("Empty git repo", dvclive 3.49), which stops training in a freshly `git init`-ed project;
under `dvc exp run` it `git add`s files of its directory. The stage declares its outputs
itself and needs none of that, only the files.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

from lossbench.atomic import staged_directory, write_json, write_text

# history.json's keys, as dvclive's metric names (the TSV files' paths under plots/metrics).
METRIC_NAMES = {
    "loss": "train/loss",
    "val_loss": "val/loss",
    "accuracy": "train/accuracy",
    "val_accuracy": "val/accuracy",
    "learning_rate": "learning_rate",
    "seconds": "seconds",
}


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


def run_information(config, loss_name: str, seed: int, runtime, state: dict,
                    train_size: int, validation_size: int) -> dict:
    """run.json's content: `config` is the job's `TrainConfig`, `runtime` its resolved
    `lossbench.device.Runtime`, `state` the checkpoint state it starts from."""
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
        "command": " ".join(["lossbench", *sys.argv[1:]]) if sys.argv else "",
    }


def _metric_files(history: list[dict]) -> tuple[dict[str, list[str]], dict]:
    """(the TSV lines of each metric, the summary of metrics.json) from the history.

    A value that is missing (null: not finite) is left out of its file, as it was never
    logged; the summary holds each metric's last logged value, nested by the name's parts.
    """
    lines: dict[str, list[str]] = {}
    summary: dict = {}
    for record in history:
        for key, name in METRIC_NAMES.items():
            value = record.get(key)
            if value is None:
                continue
            leaf = name.split("/")[-1]
            lines.setdefault(name, [f"step\t{leaf}"]).append(f"{record['epoch']}\t{value}")
            node = summary
            for part in name.split("/")[:-1]:
                node = node.setdefault(part, {})
            node[leaf] = value
    if history:
        summary["step"] = history[-1]["epoch"]
    return lines, summary


def write_training_logs(log_dir: Path, history: list[dict], run_info: dict) -> None:
    """history.json, run.json and the dvclive layout, rebuilt from the full history.

    Every file is written afresh from the whole history each time, so a resumed run leaves
    exactly the logs an uninterrupted one would.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    write_json(log_dir / "history.json", {"epochs": history})
    write_json(log_dir / "run.json", run_info)
    lines, summary = _metric_files(history)
    with staged_directory(log_dir / "plots" / "metrics") as staging:
        for name, metric_lines in lines.items():
            path = staging / f"{name}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(metric_lines) + "\n")
    # Indented as dvclive indents it, so that the logs of runs made before lossbench wrote
    # this file itself stay byte for byte the same when they are made again.
    write_text(log_dir / "metrics.json", json.dumps(summary, indent=4, allow_nan=False) + "\n")
