"""The `tune` stage: choose one loss's learning rate on a hold-out split of the training set.

In:  prepared data, the validated params (`model.*`, the `train.*` settings other than the
     learning rate, epochs and validation, and `tune.*`), a loss name.
Out: `reports/tune/<loss>.json`, small and diffable:

     {"loss": "hinge", "epochs": 6, "seeds": [100, 101, 102], "holdout_fraction": 0.1,
      "learning_rates": [0.003, 0.01, ...] (the grid, with any rates it was extended by),
      "runs": [{"learning_rate", "seed", "holdout_accuracy", "diverged",
                "holdout_accuracy_per_epoch": [...]}, ...],
      "mean_holdout_accuracy": {"0.003": 0.31, ...},
      "holdout_accuracy_by_rate": {"0.003": {"n", "mean", "ci_low", "ci_high"}, ...},
      "selected_learning_rate": 0.3, "selection_rule": "...",
      "protocol": {"tuning_seeds", "tuning_epochs", "training_epochs", "chosen_inside_grid",
                   "extended_rates", "trustworthy", "reasons": [...]}}

For every rate of `tune.learning_rates` and seed of `tune.seeds`, the model trains for
`tune.epochs` epochs on the training set minus a seeded, stratified hold-out of
`tune.holdout_fraction`, and is scored on that hold-out: the test set is never seen, so the
rate it chooses cannot overfit the test set the comparison reports. The rule, fixed in advance
(SELECTION_RULE): the best mean final-epoch hold-out accuracy over the tuning seeds, a rate
with a diverged run not selectable; a rate not significantly below the best ties with it, and
of tied rates `tune.preferred_rate` (the paper's 0.01) is taken; a rate chosen at the grid's
edge extends the grid (of two rates or more) one step past it, up to
`tune.max_grid_extensions` times. The protocol
(issue 30) says whether the choice can be trusted: at least 3 tuning seeds, the horizon the
tuned runs train (`tune.epochs` = `train.epochs`) and a chosen rate inside the rates tried;
`protocol.reasons` says what is missing, and the report repeats it.

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
    "run are not selectable; a rate whose accuracy is not significantly below the best (Welch's "
    "t-test over the tuning seeds, alpha 0.05) ties with it, and among tied rates the preferred "
    "rate (tune.preferred_rate, the paper's) is taken, else the best; equal means go to the "
    "smaller rate; a rate chosen at the grid's edge extends the grid past it "
    "(tune.max_grid_extensions times at most)"
)
# The tuning protocol's conditions for a choice worth trusting (issue 30): enough tuning
# seeds to see the noise, the horizon the tuned runs train, and a rate inside the grid.
MINIMUM_TUNING_SEEDS = 3
TIE_ALPHA = 0.05


def tuning_config(config: TrainConfig, tune_params: dict, learning_rate: float) -> TrainConfig:
    """The training settings of one tuning run: the study's, with this rate, the tuning epochs
    and a hold-out split of the training set as validation."""
    return dataclasses.replace(
        config, learning_rate=float(learning_rate), epochs=int(tune_params["epochs"]),
        validation="holdout", holdout_fraction=float(tune_params["holdout_fraction"]),
    )


def _accuracies_by_rate(runs: list[dict]) -> dict[float, list[float]]:
    """{rate: final hold-out accuracies} of the selectable rates (no run diverged or unscored)."""
    by_rate: dict[float, list[dict]] = {}
    for run in runs:
        by_rate.setdefault(float(run["learning_rate"]), []).append(run)
    return {rate: [float(run["holdout_accuracy"]) for run in rate_runs]
            for rate, rate_runs in sorted(by_rate.items())
            if all(not run["diverged"] and run["holdout_accuracy"] is not None for run in rate_runs)}


def tied_with(best: list[float], other: list[float], alpha: float = TIE_ALPHA) -> bool:
    """Whether `other`'s accuracies are not significantly below `best`'s (Welch's t-test,
    two-sided); never with fewer than 2 seeds on either side (the noise is then unknown)."""
    from scipy import stats

    if len(best) < 2 or len(other) < 2:
        return sum(best) / len(best) == sum(other) / len(other)
    p_value = stats.ttest_ind(best, other, equal_var=False).pvalue
    if p_value != p_value:  # no spread on either side: tied only when equal
        return sum(best) / len(best) == sum(other) / len(other)
    return bool(p_value >= alpha)


def select_learning_rate(runs: list[dict], preferred_rate: float | None = None
                         ) -> tuple[float | None, dict[str, float]]:
    """(the chosen rate or None, {rate as text: mean final hold-out accuracy}) by SELECTION_RULE."""
    accuracies = _accuracies_by_rate(runs)
    means = {rate: sum(values) / len(values) for rate, values in accuracies.items()}
    best = max(sorted(means), key=lambda rate: means[rate]) if means else None
    chosen = best
    if (best is not None and preferred_rate is not None and preferred_rate in accuracies
            and tied_with(accuracies[best], accuracies[preferred_rate])):
        chosen = float(preferred_rate)
    return chosen, {f"{rate:g}": value for rate, value in means.items()}


def rate_summaries(runs: list[dict], confidence_level: float = 0.95) -> dict[str, dict]:
    """{rate as text: {"n", "mean", "ci_low", "ci_high"}}: each selectable rate's hold-out
    accuracy over the tuning seeds with its t interval (None with one seed)."""
    from scipy import stats

    summaries = {}
    for rate, values in _accuracies_by_rate(runs).items():
        mean, low, high = sum(values) / len(values), None, None
        if len(values) >= 2:
            low, high = stats.t.interval(confidence_level, len(values) - 1, loc=mean,
                                         scale=stats.sem(values))
            low, high = (mean, mean) if low != low else (float(low), float(high))
        summaries[f"{rate:g}"] = {"n": len(values), "mean": mean, "ci_low": low, "ci_high": high}
    return summaries


def next_rate(rates: list[float], chosen: float | None) -> float | None:
    """The rate that extends the grid past `chosen` when it is the grid's smallest or largest,
    else None: one step past the edge, the step between the two rates next to the edge (so a
    1-3-10 grid goes on 1-3-10: 0.003 -> 0.001, 3 -> 10; a geometric grid by its ratio), the
    ratio of the two rates where there are only two. One rate is a choice, not a search: it is
    never extended."""
    rates = sorted(set(rates))
    if chosen is None or len(rates) < 2 or chosen not in (rates[0], rates[-1]):
        return None
    if len(rates) == 2:
        step = rates[1] / rates[0]
    else:
        step = rates[2] / rates[1] if chosen == rates[0] else rates[-2] / rates[-3]
    return float(f"{(chosen / step if chosen == rates[0] else chosen * step):.3g}")


def protocol(tune_params: dict, training_epochs: int, runs: list[dict], chosen: float | None,
             extended: list[float]) -> dict:
    """Whether the choice meets the tuning protocol, and why not: enough tuning seeds, the
    horizon the tuned runs train, and a chosen rate inside the grid tried."""
    seeds, epochs = len(tune_params["seeds"]), int(tune_params["epochs"])
    rates = sorted({float(run["learning_rate"]) for run in runs})
    inside = chosen is not None and rates[0] < chosen < rates[-1]
    reasons = []
    if seeds < MINIMUM_TUNING_SEEDS:
        reasons.append(f"{seeds} tuning seed{'s' if seeds != 1 else ''}, fewer than "
                       f"{MINIMUM_TUNING_SEEDS}: the noise between seeds is not seen")
    if epochs != training_epochs:
        reasons.append(f"tuned for {epochs} epochs, while the tuned runs train {training_epochs}")
    if chosen is not None and not inside:
        reasons.append(f"the chosen rate {chosen:g} is at the edge of the rates tried "
                       f"({rates[0]:g} to {rates[-1]:g}) after {len(extended)} extension(s)")
    return {"tuning_seeds": seeds, "tuning_epochs": epochs, "training_epochs": training_epochs,
            "chosen_inside_grid": inside, "extended_rates": extended,
            "trustworthy": chosen is not None and not reasons, "reasons": reasons}


def tuning_result(loss_name: str, tune_params: dict, runs: list[dict],
                  training_epochs: int | None = None, extended: list[float] | None = None) -> dict:
    """The stage's output (layout in the module docstring) from its runs' results."""
    chosen, means = select_learning_rate(runs, tune_params.get("preferred_rate"))
    extended = list(extended or [])
    result = {
        "loss": loss_name, "epochs": tune_params["epochs"], "seeds": tune_params["seeds"],
        "holdout_fraction": tune_params["holdout_fraction"],
        "learning_rates": tune_params["learning_rates"] + extended,
        "runs": [{key: value for key, value in run.items() if key not in ("settings", "loss")}
                 for run in runs],
        "mean_holdout_accuracy": means, "selected_learning_rate": chosen,
        "selection_rule": SELECTION_RULE, "holdout_accuracy_by_rate": rate_summaries(runs),
    }
    if runs:
        result["protocol"] = protocol(tune_params, training_epochs or int(tune_params["epochs"]),
                                      runs, chosen, extended)
    return result


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


def _tune_rates(params: dict, base: TrainConfig, loss_name: str, rates: list[float], data,
                work_dir: Path, study) -> list[dict]:
    """Every tuning run of `rates` (rates outer, tuning seeds inner), in packs of
    `train.pack_size` runs in that order (which runs share a pack changes no run's result
    beyond float32 rounding)."""
    tune_params, runs = params["tune"], []
    planned = [(tuning_config(base, tune_params, rate), seed)
               for rate in rates for seed in tune_params["seeds"]]
    size = resolve_pack_size(params, len(planned), base.device)
    for first in range(0, len(planned), size):
        chunk = planned[first:first + size]
        runs += tune_pack([config for config, _ in chunk], loss_name,
                          [seed for _, seed in chunk], data, work_dir, study)
    return runs


def run(params: dict, loss_name: str, data_dir: Path, output: Path, work_dir: Path) -> dict:
    """The CLI's entry point: every tuning run of one loss, then the choice, in `output`."""
    from lossbench.io.prepared import load_prepared

    if loss_name not in params["train"]["losses"]:
        raise ValueError(f"--loss {loss_name!r} is not one of train.losses in params.yaml "
                         f"({', '.join(params['train']['losses'])}).")
    tune_params = params["tune"]
    base = TrainConfig.from_params(params)
    runs, extended = [], []
    # Without rates to try the stage only records that (in a second: no TensorFlow import).
    if tune_params["learning_rates"]:
        from lossbench.train.study_cost import StudyCost, study_runs

        data = load_prepared(data_dir)
        study = StudyCost(study_runs(params, data.train_labels, len(data.test_labels)),
                          base.batch_size)
        rates = list(tune_params["learning_rates"])
        runs = _tune_rates(params, base, loss_name, rates, data, Path(work_dir), study)
        # A rate chosen at the grid's edge may lie past it: one step further, and again.
        for _ in range(int(tune_params["max_grid_extensions"])):
            chosen = select_learning_rate(runs, tune_params.get("preferred_rate"))[0]
            extra = next_rate(rates, chosen)
            if extra is None:
                break
            logger.info("%s: the chosen rate %g is at the grid's edge; trying %g too.",
                        loss_name, chosen, extra)
            rates.append(extra)
            extended.append(extra)
            runs += _tune_rates(params, base, loss_name, [extra], data, Path(work_dir), study)
    result = tuning_result(loss_name, tune_params, runs, int(params["train"]["epochs"]), extended)
    chosen, means = result["selected_learning_rate"], result["mean_holdout_accuracy"]
    write_json(output, result)
    logger.info("%s: learning rate %s chosen on the hold-out split (%s).", loss_name,
                "none" if chosen is None else f"{chosen:g}",
                ", ".join(f"{rate}: {value:.4f}" for rate, value in means.items()) or "no runs")
    return result
