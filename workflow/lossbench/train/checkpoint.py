"""The train stage's checkpoint: one file per job, written after every finished epoch.

In:  a compiled Keras model (weights and optimizer state), the run's state (its fingerprint,
     the history so far and the epoch it diverged at, if any) and the checkpoint's path.
Out: `<checkpoint_dir>/checkpoint.npz`, replaced atomically (`save_checkpoint`); the model
     restored from it and the stored state (`load_checkpoint`, `resume_or_start`); and the
     fingerprint a checkpoint must match to be resumed (`config_fingerprint`).

A checkpoint is resumed only by the same unfinished run: one made with other settings, other
data or other code is ignored, one that records a finished run (every epoch done, or
diverged) is deleted so that a rerun trains afresh, and an unreadable one is set aside as
`checkpoint.npz.unreadable`, kept for inspection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lossbench.io.atomic import staged_file

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.npz"

# What reading a damaged checkpoint raises: np.load and zipfile on a truncated, empty or
# foreign file (BadZipFile, EOFError, ValueError, OSError, UnpicklingError), a missing array
# (KeyError), a state that is not JSON or not a mapping (ValueError, AttributeError, TypeError).
UNREADABLE_CHECKPOINT_ERRORS = (
    zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, OSError, KeyError,
    AttributeError, TypeError,
)


def config_fingerprint(config, loss_name: str, seed: int, data_signature: str) -> str:
    """What a checkpoint must match to be resumed from: settings, loss, seed, data, backend
    and the code that decides training's results (`lossbench.pipeline.sources.source_digest`:
    the files of the train stage's code dependencies, its folder and the shared code it
    imports), so that a code change never resumes a run that older code began, while editing,
    say, the report or params.py does not restart one.

    `config` is the job's `lossbench.train.training.TrainConfig` (a dataclass).
    """
    import keras

    from lossbench.pipeline.sources import source_digest

    text = json.dumps(
        {"config": dataclasses.asdict(config), "loss": loss_name, "seed": seed,
         "data": data_signature, "backend": keras.backend.backend(), "code": source_digest("train")},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def data_signature(*arrays: np.ndarray) -> str:
    """A SHA-256 over the arrays' shapes and contents."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _variables_to_arrays(variables) -> list[np.ndarray]:
    import keras

    return [keras.ops.convert_to_numpy(variable.value) for variable in variables]


# Checkpoints are written to disk by one thread beside training, in the order they were made:
# the arrays are copied off the device first (milliseconds), and the file (tens of megabytes
# for a pack of full-width runs) is written while the next epoch trains, so the step never
# waits for the disk. Reading a checkpoint, and the end of a run, wait for the writes first.
_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
_PENDING: list[Future] = []


def wait_for_checkpoints() -> None:
    """Return once every checkpoint handed to `save_checkpoint` is on disk (re-raising a
    write's error, such as a full disk)."""
    while _PENDING:
        _PENDING.pop(0).result()


def save_checkpoint(path: Path, model, state: dict, background: bool = True) -> None:
    """Weights, optimizer state and the run's history in one file, replaced atomically, written
    by the checkpoint thread unless `background` is False (then before returning).

    A full disk or a Ctrl-C mid-write leaves the previous checkpoint and no partial file.
    """
    arrays = {}
    for index, array in enumerate(_variables_to_arrays(model.variables)):
        arrays[f"model_{index}"] = array
    for index, array in enumerate(_variables_to_arrays(model.optimizer.variables)):
        arrays[f"optimizer_{index}"] = array
    arrays["state"] = np.array(json.dumps(state))

    def write() -> None:
        with staged_file(path) as temporary:
            np.savez(temporary, **arrays)

    if background:
        _PENDING.append(_WRITER.submit(write))
    else:
        wait_for_checkpoints()
        write()


def set_aside(path: Path, reason: str) -> None:
    """Rename an unusable checkpoint to `<name>.unreadable`, kept for inspection, and warn."""
    aside = path.with_name(f"{path.name}.unreadable")
    logger.warning("Checkpoint %s is unreadable (%s); moved it to %s and starting afresh.",
                   path, reason, aside)
    os.replace(path, aside)


def _is_finished(path: Path, state: dict, epochs: int | None) -> bool:
    """Whether `state` records a finished run; if so, say so and delete the checkpoint."""
    done = len(state["history"])
    diverged = state.get("diverged_epoch") is not None
    if not diverged and (epochs is None or done < epochs):
        return False
    logger.info("Checkpoint %s records a finished run (after epoch %d%s); deleting it and "
                "training afresh.", path, done, ", diverged" if diverged else "")
    path.unlink()
    return True


def unfinished_fingerprint(path: Path, epochs: int) -> str | None:
    """The fingerprint of the unfinished run whose checkpoint is at `path`, or None where
    there is none, it is unreadable, or it records a finished run. Reads only; what is done
    with the checkpoint is `load_checkpoint`'s to decide."""
    wait_for_checkpoints()
    try:
        with np.load(path) as stored:
            state = json.loads(str(stored["state"]))
        if state.get("diverged_epoch") is None and len(state["history"]) < epochs:
            return state.get("fingerprint")
    except UNREADABLE_CHECKPOINT_ERRORS:
        return None
    return None


def load_checkpoint(path: Path, model, fingerprint: str, epochs: int | None = None) -> dict | None:
    """Restore weights and optimizer state if `path` holds an unfinished checkpoint of this job.

    Returns the stored state, or None to train afresh: when there is no checkpoint, when it
    was made with other settings, data or code, when it records a finished run (`epochs`
    done, or diverged; it is deleted, since resuming it would train nothing), and when it is
    unreadable (it is set aside as `<name>.unreadable`).
    """
    wait_for_checkpoints()
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
            if _is_finished(path, state, epochs):
                return None
            model_arrays = [stored[f"model_{i}"] for i in range(len(model.variables))]
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            optimizer_arrays = [
                stored[f"optimizer_{i}"] for i in range(len(model.optimizer.variables))
            ]
        variables = [*model.variables, *model.optimizer.variables]
        arrays = [*model_arrays, *optimizer_arrays]
        # Every shape is checked before any variable is assigned, so a checkpoint of another
        # model leaves this one as it was.
        for variable, array in zip(variables, arrays):
            if tuple(variable.shape) != array.shape:
                raise ValueError(f"{variable.path} has shape {array.shape}, not {variable.shape}")
    except UNREADABLE_CHECKPOINT_ERRORS as error:
        set_aside(path, f"{type(error).__name__}: {error}")
        return None
    for variable, array in zip(variables, arrays):
        variable.assign(array)
    return state


def resume_or_start(path: Path, model, fingerprint: str, epochs: int, job: str) -> dict:
    """The state to continue from: the checkpoint's if it is this job's and unfinished (the
    model then holds its weights and optimizer state), else a fresh one. `job` names the
    job in the log ("hinge seed 0")."""
    state = load_checkpoint(path, model, fingerprint, epochs=epochs)
    if state is None:
        return {"fingerprint": fingerprint, "history": [], "diverged_epoch": None}
    logger.info("Resuming %s after epoch %d from %s.", job, len(state["history"]), path)
    return state
