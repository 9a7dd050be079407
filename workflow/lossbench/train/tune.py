"""The `tune` stage: choose one loss's learning rate on a hold-out split of the training set.

In:  prepared data, the validated params (`model.*`, the `train.*` settings other than the
     learning rate, epochs and validation, and `tune.*`), a loss name.
Out: `reports/tune/<loss>.json`, small and diffable:

     {"loss": "hinge", "epochs": 6, "seeds": [100], "holdout_fraction": 0.1,
      "learning_rates": [0.003, 0.01, ...],
      "runs": [{"learning_rate", "seed", "holdout_accuracy", "diverged",
                "holdout_accuracy_per_epoch": [...]}, ...],
      "mean_holdout_accuracy": {"0.003": 0.31, ...},
      "selected_learning_rate": 0.3, "selection_rule": "..."}

For every rate of `tune.learning_rates` and seed of `tune.seeds`, the model trains for
`tune.epochs` epochs on the training set minus a seeded, stratified hold-out of
`tune.holdout_fraction`, and is scored on that hold-out: the test set is never seen, so the
rate it chooses cannot overfit the test set the comparison reports. The rule, fixed in advance:
the rate with the highest mean final-epoch hold-out accuracy over the tuning seeds; a rate with
a diverged run is not selectable; ties go to the smaller rate.

Each tuning run keeps its state under `--work-dir` (not an output: a rerun of an interrupted
stage resumes there, and a finished run's result is reused while its settings are unchanged).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from lossbench.io.atomic import write_json
from lossbench.pipeline.runs import tuning_run_name
from lossbench.train.packs import resolve_pack_size
from lossbench.train.training import TrainConfig

logger = logging.getLogger(__name__)

SELECTION_RULE = (
    "highest mean final-epoch hold-out accuracy over the tuning seeds; rates with a diverged "
    "run are not selectable; ties go to the smaller rate"
)


def tuning_config(config: TrainConfig, tune_params: dict, learning_rate: float) -> TrainConfig:
    """The training settings of one tuning run: the study's, with this rate, the tuning epochs
    and a hold-out split of the training set as validation."""
    return dataclasses.replace(
        config, learning_rate=float(learning_rate), epochs=int(tune_params["epochs"]),
        validation="holdout", holdout_fraction=float(tune_params["holdout_fraction"]),
    )


def select_learning_rate(runs: list[dict]) -> tuple[float | None, dict[str, float]]:
    """(the chosen rate or None, {rate as text: mean final hold-out accuracy}) by SELECTION_RULE."""
    by_rate: dict[float, list[dict]] = {}
    for run in runs:
        by_rate.setdefault(float(run["learning_rate"]), []).append(run)
    means = {}
    for rate, rate_runs in sorted(by_rate.items()):
        if all(not run["diverged"] and run["holdout_accuracy"] is not None for run in rate_runs):
            means[rate] = sum(run["holdout_accuracy"] for run in rate_runs) / len(rate_runs)
    chosen = max(sorted(means), key=lambda rate: means[rate]) if means else None
    return chosen, {f"{rate:g}": value for rate, value in means.items()}


def tuning_result(loss_name: str, tune_params: dict, runs: list[dict]) -> dict:
    """The stage's output (layout in the module docstring) from its runs' results."""
    chosen, means = select_learning_rate(runs)
    return {
        "loss": loss_name, "epochs": tune_params["epochs"], "seeds": tune_params["seeds"],
        "holdout_fraction": tune_params["holdout_fraction"],
        "learning_rates": tune_params["learning_rates"],
        "runs": [{key: value for key, value in run.items() if key not in ("settings", "loss")}
                 for run in runs],
        "mean_holdout_accuracy": means, "selected_learning_rate": chosen,
        "selection_rule": SELECTION_RULE,
    }


def _run_result(config: TrainConfig, loss_name: str, seed: int, run_info: dict, log_dir: Path) -> dict:
    history = json.loads((log_dir / "history.json").read_text())
    epochs = history["epochs"] if isinstance(history, dict) else history
    accuracies = [epoch.get("val_accuracy") for epoch in epochs]
    return {
        "learning_rate": config.learning_rate, "seed": seed,
        "holdout_accuracy": accuracies[-1] if accuracies else None,
        "diverged": bool(run_info.get("diverged")),
        "holdout_accuracy_per_epoch": accuracies,
        "settings": dataclasses.asdict(config), "loss": loss_name,
    }


def _reusable(config: TrainConfig, seed: int, work_dir: Path) -> dict | None:
    """A finished tuning run's result, when it was made with exactly these settings."""
    result_path = work_dir / f"{tuning_run_name(config.learning_rate, seed)}.json"
    if result_path.is_file():
        previous = json.loads(result_path.read_text())
        if previous.get("settings") == json.loads(json.dumps(dataclasses.asdict(config))):
            return previous
    return None


def tune_pack(configs: list[TrainConfig], loss_name: str, seeds: list[int], data, work_dir: Path,
              study=None) -> list[dict]:
    """Train (or reuse) tuning runs (`configs[i]` at `seeds[i]`) as one pack
    (`lossbench.train.training.train_pack`: one compiled step on JAX) and return their
    results; `study` (`lossbench.train.study_cost.StudyCost`) gets its projected cost logged
    by the first pack that trains."""
    from lossbench.train.packs import train_pack

    results = [_reusable(config, seed, work_dir) for config, seed in zip(configs, seeds)]
    waiting = [index for index, result in enumerate(results) if result is None]
    if waiting:
        names = [tuning_run_name(configs[i].learning_rate, seeds[i]) for i in waiting]
        arrays = (data.train_images, data.train_labels, data.test_images, data.test_labels)
        infos = train_pack([configs[i] for i in waiting], loss_name, [seeds[i] for i in waiting],
                           arrays, len(data.class_names),
                           [work_dir / name / "model.keras" for name in names],
                           [work_dir / name / "logs" for name in names],
                           [work_dir / name for name in names], study=study)
        for index, name, run_info in zip(waiting, names, infos):
            results[index] = _run_result(configs[index], loss_name, seeds[index], run_info,
                                         work_dir / name / "logs")
            write_json(work_dir / f"{name}.json", results[index])
    return results


def tune_one(config: TrainConfig, loss_name: str, seed: int, data, work_dir: Path,
             study=None) -> dict:
    """Train (or reuse) one tuning run and return its result (a pack of one)."""
    return tune_pack([config], loss_name, [seed], data, work_dir, study)[0]


def run(params: dict, loss_name: str, data_dir: Path, output: Path, work_dir: Path) -> dict:
    """The CLI's entry point: every tuning run of one loss, then the choice, in `output`."""
    from lossbench.io.prepared import load_prepared

    if loss_name not in params["train"]["losses"]:
        raise ValueError(f"--loss {loss_name!r} is not one of train.losses in params.yaml "
                         f"({', '.join(params['train']['losses'])}).")
    tune_params = params["tune"]
    base = TrainConfig.from_params(params)
    runs = []
    # Without rates to try the stage only records that (in a second: no TensorFlow import).
    if tune_params["learning_rates"]:
        from lossbench.train.study_cost import StudyCost, study_runs

        data = load_prepared(data_dir)
        study = StudyCost(study_runs(params, data.train_labels, len(data.test_labels)),
                          base.batch_size)
        planned = [(tuning_config(base, tune_params, rate), seed)
                   for rate in tune_params["learning_rates"] for seed in tune_params["seeds"]]
        size = resolve_pack_size(params, len(planned), base.device)
        # Packs of `train.pack_size` runs in the planned order (rates outer, seeds inner):
        # which runs share a pack changes no run's result beyond float32 rounding.
        for first in range(0, len(planned), size):
            chunk = planned[first:first + size]
            runs += tune_pack([config for config, _ in chunk], loss_name,
                              [seed for _, seed in chunk], data, Path(work_dir), study)
    result = tuning_result(loss_name, tune_params, runs)
    chosen, means = result["selected_learning_rate"], result["mean_holdout_accuracy"]
    write_json(output, result)
    logger.info("%s: learning rate %s chosen on the hold-out split (%s).", loss_name,
                "none" if chosen is None else f"{chosen:g}",
                ", ".join(f"{rate}: {value:.4f}" for rate, value in means.items()) or "no runs")
    return result
