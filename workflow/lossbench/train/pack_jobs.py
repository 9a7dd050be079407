"""A train job of the DAG that trains its run's whole pack, so that both front ends pack runs
with the DAG they already have: one job per (loss, seed), the same files per run.

In:  the job's settings, loss, seed, data and its own paths (`data/models/<run>.keras`,
     `reports/training/<run>`, `data/checkpoints/<run>`, from the stage table), the study's
     seeds (`train.seeds`) and the pack size.
Out: the job's own outputs, exactly as a lone run writes them; and, for the other runs of its
     pack, their finished results kept beside their checkpoints
     (`data/checkpoints/<run>/finished/`: model.keras and logs/), which their own jobs then
     move into their outputs instead of training.

Why this shape: DVC's templating cannot group runs by a computed key (a `matrix` item is one
value of a list in params.yaml, and a stage's outputs cannot be a list), so a job per pack
cannot be written in dvc.yaml without naming each pack's files by hand. Here the DAG keeps one
job per run under both tools, and packs form at run time from the stage table's own naming:
seeds in `train.seeds` order, `train.pack_size` at a time, per loss (`pack_seeds`). The first
job of a pack to run trains every run of it that has neither a current output nor a finished
result; the others find theirs (`take_finished`), checked against the fingerprint of their own
settings, data and code (the checkpoint's), and move it into place in a second. Snakemake
and `dvc repro` run the same jobs, so they train the same packs. Jobs of one pack that run at
the same time (a cluster) take the pack's lock in turn, so a pack trains once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from pathlib import Path

from lossbench.pipeline.runs import run_name

logger = logging.getLogger(__name__)

FINISHED = "finished"


def pack_seeds(seeds: list[int], seed: int, size: int) -> list[int]:
    """The seeds of `seed`'s pack: `seeds` (train.seeds, in order) cut into packs of `size`;
    [seed] alone when it is not among them."""
    if seed not in seeds:
        return [seed]
    start = seeds.index(seed) // size * size
    return list(seeds[start:start + size])


def member_paths(own: tuple[Path, Path, Path], own_run: str, run: str) -> tuple[Path, Path, Path]:
    """(model, log dir, checkpoint dir) of `run`, made from the job's own paths by putting its
    run name in place of the job's (the stage table names every per-run path after the run)."""
    model, log_dir, checkpoint_dir = own
    return (model.with_name(model.name.replace(own_run, run)),
            log_dir.with_name(log_dir.name.replace(own_run, run)), checkpoint_dir.parent / run)


def _finished_record(log_dir: Path, model: Path, fingerprints: set[str], epochs: int) -> dict | None:
    """run.json of a finished run at (`log_dir`, `model`) made with one of `fingerprints`."""
    try:
        info = json.loads((log_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    done = info.get("epochs_completed") == epochs or info.get("diverged")
    if info.get("fingerprint") in fingerprints and done and model.is_file():
        return info
    return None


def finished_paths(checkpoint_dir: Path) -> tuple[Path, Path]:
    """(model, log dir) where a run trained by another job of its pack is kept for its own."""
    return checkpoint_dir / FINISHED / "model.keras", checkpoint_dir / FINISHED / "logs"


def take_finished(paths: tuple[Path, Path, Path], fingerprints: set[str], epochs: int) -> dict | None:
    """Move a finished result kept for this run into its outputs; its run information, or
    None when there is none made with these settings, data and code (one made otherwise is
    deleted: it can never be taken)."""
    model, log_dir, checkpoint_dir = paths
    kept_model, kept_logs = finished_paths(checkpoint_dir)
    if not kept_logs.is_dir():
        return None
    info = _finished_record(kept_logs, kept_model, fingerprints, epochs)
    if info is None:
        logger.warning("Ignoring %s: made with other settings, data or code.", kept_logs.parent)
        shutil.rmtree(kept_logs.parent)
        return None
    model.parent.mkdir(parents=True, exist_ok=True)
    log_dir.parent.mkdir(parents=True, exist_ok=True)
    if log_dir.exists():
        shutil.rmtree(log_dir)
    os.replace(kept_model, model)
    os.replace(kept_logs, log_dir)
    shutil.rmtree(kept_logs.parent, ignore_errors=True)
    logger.info("%s was trained in its pack by another job; its results moved into place.",
                log_dir.name)
    return info


def needs_training(paths: tuple[Path, Path, Path], fingerprints: set[str], epochs: int) -> bool:
    """Whether a pack member has neither a current output nor a finished result kept."""
    model, log_dir, checkpoint_dir = paths
    kept_model, kept_logs = finished_paths(checkpoint_dir)
    return (_finished_record(log_dir, model, fingerprints, epochs) is None
            and _finished_record(kept_logs, kept_model, fingerprints, epochs) is None)


@contextlib.contextmanager
def pack_lock(checkpoint_root: Path, loss: str, first_seed: int):
    """Hold the pack's lock (a file beside its checkpoints) while the block runs."""
    checkpoint_root.mkdir(parents=True, exist_ok=True)
    with open(checkpoint_root / f".pack-{run_name(loss, first_seed)}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
