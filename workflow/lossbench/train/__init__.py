"""The `train` stage: train the paper's model with one loss and one seed.

In:  prepared data (`lossbench.io.prepared.load_prepared`), the validated params (`model.*`,
     `train.*`), a loss name, a seed, and the loss's tuning result (`reports/tune/<loss>.json`,
     written by `lossbench tune`), read only when `train.learning_rate` is `tuned`.
Out: the trained model (`<model_path>`, a `.keras` file taking uint8 images) and its log
     directory (`history.json`, `run.json`, per-epoch files); see `lossbench.train.training`, which
     does the work and explains how the paper's Keras 1 training is reproduced.

`train.learning_rate` is a number (the paper's 0.01 by default: the reproduction, one rate for
every loss) or `tuned`: each loss trains at the rate its `tune` stage chose on a hold-out split
of the training set (the fair comparison; the test set is never used to choose it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from lossbench.pipeline.runs import run_name
from lossbench.train.packs import resolve_pack_size, train_pack
from lossbench.train.training import TrainConfig, resolve_runtime

logger = logging.getLogger(__name__)


def tuned_learning_rate(tuning_path: Path | None, loss_name: str) -> float:
    """The learning rate `lossbench tune` chose for `loss_name`, read from its result file."""
    if tuning_path is None or not Path(tuning_path).is_file():
        raise FileNotFoundError(
            f"train.learning_rate is `tuned`, but the tuning result {tuning_path} does not exist. "
            f"Run `lossbench tune --loss {loss_name} ...` first (`snakemake` and `dvc repro` do), "
            "or set train.learning_rate to a number in params.yaml."
        )
    result = json.loads(Path(tuning_path).read_text())
    if result.get("loss") != loss_name:
        raise ValueError(f"{tuning_path} holds the tuning of {result.get('loss')!r}, not {loss_name!r}.")
    rate = result.get("selected_learning_rate")
    if rate is None:
        raise ValueError(
            f"{tuning_path} chose no learning rate for {loss_name} (tune.learning_rates empty, or "
            "every tuning run diverged). Give tune.learning_rates that train, or set "
            "train.learning_rate to a number."
        )
    return float(rate)


def run(
    params: dict,
    loss_name: str,
    seed: int,
    data_dir: Path,
    model_path: Path,
    log_dir: Path,
    checkpoint_dir: Path,
    tuning_path: Path | None = None,
) -> dict:
    """Read the prepared data and train one (loss, seed) job."""
    return run_pack(params, loss_name, [seed], data_dir, [model_path], [log_dir],
                    [checkpoint_dir], tuning_path)[0]


def _check_runs(seeds: list[int], model_paths: list, log_dirs: list, checkpoint_dirs: list) -> None:
    """Raise ValueError for seeds and paths that do not name each run once, in one order."""
    if not len(seeds) == len(model_paths) == len(log_dirs) == len(checkpoint_dirs):
        raise ValueError(
            f"train got {len(seeds)} --seed value(s), {len(model_paths)} --model, "
            f"{len(log_dirs)} --log-dir and {len(checkpoint_dirs)} --checkpoint-dir: give one of "
            "each per run, in the same order."
        )
    if any(seed < 0 for seed in seeds):
        raise ValueError(f"--seed must be non-negative integers, got {seeds}.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seed names a run twice ({seeds}): give each seed once.")


def run_pack(
    params: dict,
    loss_name: str,
    seeds: list[int],
    data_dir: Path,
    model_paths: list[Path],
    log_dirs: list[Path],
    checkpoint_dirs: list[Path],
    tuning_path: Path | None = None,
) -> list[dict]:
    """The CLI's entry point: read the prepared data and train the runs of `loss_name` at
    `seeds` (run i written to model_paths[i], log_dirs[i], checkpoint_dirs[i]), in packs of
    `train.pack_size` runs (`lossbench.train.training.train_pack`)."""
    from lossbench.core.batches import split_validation
    from lossbench.core.losses import get_loss
    from lossbench.io.prepared import load_prepared
    from lossbench.train import device
    from lossbench.train.study_cost import StudyCost, study_runs

    get_loss(loss_name)  # fail before loading data if the loss name is unknown
    _check_runs(seeds, model_paths, log_dirs, checkpoint_dirs)
    config = TrainConfig.from_params(params)
    if config.learning_rate == "tuned":
        config = dataclasses.replace(config, learning_rate=tuned_learning_rate(tuning_path, loss_name))
        logger.info("%s trains at its tuned learning rate %g (%s).", loss_name,
                    config.learning_rate, tuning_path)
    # A job that must run on a GPU stops here, in seconds, before the data is read.
    selected = device.select_device(config.device, config.deterministic)
    # One seed: a DAG job, whose pack is cut from train.seeds; several: those seeds.
    size = resolve_pack_size(params, max(len(seeds), len(params["train"]["seeds"])),
                             config.device)
    data = load_prepared(data_dir)
    fit_count = len(data.train_labels)
    if config.validation == "holdout":
        fit_count -= len(split_validation(data.train_labels, "holdout", config.holdout_fraction,
                                          seeds[0])[1])
    runtime = resolve_runtime(config, fit_count, selected)
    study = StudyCost(study_runs(params, data.train_labels, len(data.test_labels)),
                      config.batch_size)
    arrays = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    own_run = run_name(loss_name, seeds[0])
    if len(seeds) == 1 and size > 1 and Path(checkpoint_dirs[0]).name == own_run:
        # A job of the DAG: it trains its run's pack (lossbench.train.pack_jobs).
        return [train_in_pack(params, config, loss_name, seeds[0], arrays, len(data.class_names),
                              (Path(model_paths[0]), Path(log_dirs[0]), Path(checkpoint_dirs[0])),
                              size, runtime, study)]
    infos = []
    for first in range(0, len(seeds), size):
        part = slice(first, first + size)
        infos += train_pack([config] * len(seeds[part]), loss_name, list(seeds[part]), arrays,
                            len(data.class_names), list(model_paths[part]), list(log_dirs[part]),
                            list(checkpoint_dirs[part]), runtime=runtime, study=study)
    return infos


def train_in_pack(params: dict, config: TrainConfig, loss_name: str, seed: int, arrays: tuple,
                  num_classes: int, own: tuple[Path, Path, Path], size: int, runtime,
                  study) -> dict:
    """The DAG's job of run (`loss_name`, `seed`), with its (model, log dir, checkpoint dir)
    `own`: its result if another job of its pack trained it, else its pack trained now, itself
    into its outputs, the other runs that need it beside their checkpoints
    (`lossbench.train.pack_jobs`). Returns its run information."""
    from lossbench.train import pack_jobs
    from lossbench.train.checkpoint import data_signature
    from lossbench.train.training import job_fingerprint

    members = pack_jobs.pack_seeds(list(params["train"]["seeds"]), seed, size)
    signature = data_signature(*arrays)
    precisions = (["float32", "mixed_bfloat16", "mixed_float16"] if config.precision == "auto"
                  else [config.precision])

    def fingerprints(member: int) -> set[str]:
        return {job_fingerprint(config, name, loss_name, member, signature) for name in precisions}

    own_run = run_name(loss_name, seed)
    paths = {member: pack_jobs.member_paths(own, own_run, run_name(loss_name, member))
             for member in members}
    with pack_jobs.pack_lock(own[2].parent, loss_name, members[0]):
        taken = pack_jobs.take_finished(own, fingerprints(seed), config.epochs)
        if taken is not None:
            return taken
        waiting = [member for member in members if member == seed or pack_jobs.needs_training(
            paths[member], fingerprints(member), config.epochs)]
        targets = [own if member == seed else
                   (*pack_jobs.finished_paths(paths[member][2]), paths[member][2])
                   for member in waiting]
        infos = train_pack([config] * len(waiting), loss_name, waiting, arrays, num_classes,
                           *[[target[index] for target in targets] for index in range(3)],
                           runtime=runtime, study=study)
    return infos[waiting.index(seed)]

