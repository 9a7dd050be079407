"""The `compare` stage: aggregate the per-run metrics over seeds and compare the losses.

In:  the full evaluation JSON of every (loss, seed) run (`reports/evaluation/`, written by
     `lossbench evaluate`) and `compare.confidence_level` from params.yaml.
Out: `reports/headline.json`, the study's one DVC metric (`cache: false`): each loss's mean
     test accuracy over seeds, rounded to 4 decimals (`lossbench.io.review`), keyed by the
     loss's name (`headline`):

     {"categorical_crossentropy": 0.53, "hinge": 0.256, "squared_hinge": 0.387}

     One number per loss, under the loss's own name, so that every DVC table fits a screen:
     `dvc metrics show` prints one row with a column per loss, `dvc metrics diff` a row per
     loss, and `dvc exp show` a column per loss headed by its name alone (DVC prefixes a
     column with its file only when another file has a key of that name). Intervals, run
     counts and collapsed runs are in the summary and the report (and each run's numbers in
     evaluate's review files, `dvc metrics diff --targets reports/metrics`);

     and `reports/summary.json`, every statistic, a plain output (`cache: false`; its
     hundreds of values, strings and lists would swamp `dvc metrics diff`):

     {
       "confidence_level": 0.95, "alpha": 0.05, "runs": 18,
       "thresholds": [0.5, 0.7, 0.8],
       "losses": {
         "<loss>": {
           "seeds": [0, 1, 2], "runs": 3, "diverged_runs": 0, "diverged_seeds": [],
           "dead_final_layer_runs": 1, "dead_final_layer_seeds": [0],
           "collapsed_runs": 1, "collapsed_seeds": [0],
           "calibration_probabilities": ["the model's softmax outputs"],
           "test_accuracy": {"n", "mean", "std", "ci_low", "ci_high"},
           "test_accuracy_alive": {...}, "test_accuracy_not_collapsed": {...},
           "test_loss", "train_accuracy", "generalization_gap", "best_val_accuracy",
           "best_val_epoch", "final_val_accuracy", "train_seconds",
           "final_conv_active_fraction": {...},
           "test_ece", "test_nll", "test_brier", "temperature", "test_ece_after_temperature",
           "test_nll_after_temperature": {...}, and every other metric registered in
           `lossbench.core.metric_registry` with `summarise=True`,
           "convergence": {"80%": {"threshold": 0.8, "reached": 2,
                                   "epoch": {...}, "seconds": {...}}, ...}
         }, ...
       },
       "comparisons": {
         "<loss a> vs <loss b>": {
           "loss_a", "loss_b", "metric": "test_accuracy", "n": 3, "seeds": [0, 1, 2],
           "tested": true, "mean_difference", "ci_low", "ci_high", "t_statistic",
           "p_value", "p_value_holm", "significant"
         }, ...
       },
       "setup": {"devices": [...], "backends": [...], "precisions": [...], "validation": [...],
                 "train_size": [...], "validation_size": [...], "test_size": [...],
                 "epochs_planned": [...], "model_parameters": [...], "num_classes": [...],
                 "label_noise": [...], "temperature_split": [...],
                 "versions": {"python": [...], "keras": [...], ...}}
     }

Statistics:
- Each `{"n", "mean", "std", "ci_low", "ci_high"}` summarises the runs with a finite value:
  `std` is the sample standard deviation (ddof=1) and the interval is the Student-t interval
  of the mean at `confidence_level`. With one run, `std` and the interval are null; with
  none, everything but `n` is null. Epochs and seconds to a threshold are summarised over the
  runs that reached it (`reached` says how many).
- Pairs of losses are compared on test accuracy by a paired t-test over the seeds both have
  (scipy.stats.ttest_rel): seed s of both losses shares its initial weights' seed, shuffling
  and augmentation, so pairing removes that shared variation. A pair with fewer than 3 shared
  seeds is listed with `tested: false` and null statistics. `mean_difference` is a - b, with
  its t interval. p-values are also adjusted for the number of tested pairs by Holm's method
  (`p_value_holm`); `significant` is `p_value_holm < alpha`, alpha = 1 - confidence_level.
- A run's final layer is dead when at least `evaluate.dead_layer_share` of its last
  convolution's activations (`conv_9`, the class-score layer) were 0 on the test set (its
  metrics' `final_layer_dead`; `lossbench.io.evaluation.final_layer_dead`): such a model
  predicts (nearly) one class for every image, so its accuracy says nothing about the loss.
  `dead_final_layer_zero_fraction` summarises the zero share over the dead runs.
- `train_accuracy` is measured by evaluate on un-augmented training images (a sample of
  `train_accuracy_images`); `running_accuracy` is Keras's running accuracy on augmented batches
  in the last epoch, kept under its own name; `generalization_gap` = train - test accuracy. `dead_final_layer_runs`
  and `dead_final_layer_seeds` count and name them (`dead_final_layer_unknown_runs`: runs whose
  metrics do not say, neither dead nor alive); `test_accuracy_alive` summarises test
  accuracy over the other runs (runs whose metrics lack the `final_conv_*` values, or hold
  null there, count as alive). `test_accuracy` still includes every run.
- A run is collapsed when it predicted one class for at least `evaluate.collapse_share` of
  the test images (its metrics' `collapsed`), whatever the cause (a dead final layer is one).
  `collapsed_runs` and `collapsed_seeds` count and name them; `test_accuracy_not_collapsed`
  summarises the other runs. `test_accuracy` still includes every run.
- `setup` lists the distinct values seen across the runs (one value when all runs agree), so
  the report can say what the numbers were measured on.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from lossbench.compare.hypotheses import family_of, holm, pair_key, primary_family_verdicts
from lossbench.compare.seed_statistics import check_confidence_level, describe, paired_comparison
from lossbench.core.metric_registry import summarised_names
from lossbench.io.atomic import write_json
from lossbench.io.evaluation import final_layer_dead
from lossbench.io.review import review_number
from lossbench.pipeline.params import with_defaults

logger = logging.getLogger(__name__)


REQUIRED_KEYS = ("loss", "seed", "test_accuracy")


def _distinct(values: Iterable[Any]) -> list[Any]:
    """The distinct non-null values, in order of first appearance."""
    seen: list[Any] = []
    for value in values:
        if value is not None and value not in seen:
            seen.append(value)
    return seen


def collect_setup(runs: Sequence[dict]) -> dict[str, Any]:
    """The distinct setup values across runs (device, backend, data sizes, versions...)."""
    setups = [run.get("setup", {}) for run in runs]
    version_names = _distinct(name for setup in setups for name in setup.get("versions", {}))
    return {
        "devices": _distinct(setup.get("device") for setup in setups),
        "backends": _distinct(setup.get("backend") for setup in setups),
        "precisions": _distinct(setup.get("precision") for setup in setups),
        "validation": _distinct(setup.get("validation") for setup in setups),
        "train_size": _distinct(setup.get("train_size") for setup in setups),
        "validation_size": _distinct(setup.get("validation_size") for setup in setups),
        "test_size": _distinct(run.get("test_size") for run in runs),
        "epochs_planned": _distinct(run.get("epochs_planned") for run in runs),
        "model_parameters": _distinct(run.get("model_parameters") for run in runs),
        "num_classes": _distinct(len(run["class_names"]) for run in runs if run.get("class_names")),
        "train_accuracy_images": _distinct(run.get("train_accuracy_images") for run in runs),
        "label_noise": _distinct(setup.get("label_noise") for setup in setups),
        "temperature_split": _distinct((run.get("calibration") or {}).get("temperature_split") for run in runs),
        "versions": {
            name: _distinct(setup.get("versions", {}).get(name) for setup in setups)
            for name in version_names
        },
    }


def runs_by_loss(runs: Sequence[dict]) -> dict[str, dict[int, dict]]:
    """{loss: {seed: run}}, refusing a (loss, seed) given twice."""
    by_loss: dict[str, dict[int, dict]] = {}
    for run in runs:
        seeds = by_loss.setdefault(run["loss"], {})
        if run["seed"] in seeds:
            raise ValueError(
                f"Two metrics files hold loss {run['loss']!r}, seed {run['seed']}. Pass each "
                "run's metrics file once."
            )
        seeds[run["seed"]] = run
    return by_loss


def convergence_thresholds(runs: Sequence[dict]) -> dict[float, str]:
    """{threshold: key}, sorted: every run keys its thresholds the same way ("80%"), as
    `lossbench evaluate` wrote them."""
    threshold_keys: dict[float, str] = {}
    for run in runs:
        for key, value in run.get("convergence", {}).items():
            threshold_keys.setdefault(float(value["threshold"]), key)
    return dict(sorted(threshold_keys.items()))


def chance_entries(ordered: list[dict], alpha: float) -> dict[str, Any]:
    """How many runs are above chance by their own exact binomial test (the metrics'
    `above_chance_p_value`, None when no run has one), and a one-sided one-sample t-test of
    the seeds' accuracies against chance (None with fewer than 2 runs or no spread)."""
    from scipy import stats

    p_values = [run.get("above_chance_p_value") for run in ordered]
    known = [value for value in p_values if value is not None]
    accuracies = [run["test_accuracy"] for run in ordered if run.get("test_accuracy") is not None]
    classes = {len(run["class_names"]) for run in ordered if run.get("class_names")}
    across = None
    if len(accuracies) >= 2 and len(set(accuracies)) > 1 and len(classes) == 1:
        across = float(stats.ttest_1samp(accuracies, 1.0 / classes.pop(), alternative="greater").pvalue)
    return {
        "above_chance_runs": sum(value < alpha for value in known) if known else None,
        "above_chance_across_seeds": {"p_value": across},
    }


def judge_untrainable_losses(by_loss: dict[str, dict[int, dict]]) -> dict[str, str]:
    """{loss: reason} for the losses of which at least half the runs collapsed to one class:
    their accuracy measures the collapse, not the loss, so they stay out of the rankings and
    of the exploratory tests (the report says so and why)."""
    untrainable = {}
    for loss, runs in by_loss.items():
        collapsed = sum(bool(run.get("collapsed")) for run in runs.values())
        if runs and 2 * collapsed >= len(runs):
            untrainable[loss] = (f"{collapsed} of {len(runs)} runs collapsed to predicting one "
                                 "class")
    return untrainable


def loss_entry(ordered: list[dict], thresholds: dict[float, str], confidence_level: float) -> dict:
    """One loss's summary over its runs (in seed order): counts, statistics, convergence."""
    entry: dict[str, Any] = {
        "seeds": [run["seed"] for run in ordered],
        "runs": len(ordered),
        "diverged_runs": sum(bool(run.get("diverged")) for run in ordered),
        "diverged_seeds": [run["seed"] for run in ordered if run.get("diverged")],
        "dead_final_layer_runs": sum(final_layer_dead(run) is True for run in ordered),
        "dead_final_layer_seeds": [run["seed"] for run in ordered if final_layer_dead(run)],
        "dead_final_layer_unknown_runs": sum(final_layer_dead(run) is None for run in ordered),
        "collapsed_runs": sum(bool(run.get("collapsed")) for run in ordered),
        "collapsed_seeds": [run["seed"] for run in ordered if run.get("collapsed")],
        "calibration_probabilities": _distinct((run.get("calibration") or {}).get("probabilities") for run in ordered),
    }
    alpha = significance_level(confidence_level)
    # The registry's summarised metrics (lossbench.core.metric_registry), so that a metric
    # registered there is summarised without an edit here.
    for name in summarised_names():
        entry[name] = describe((run.get(name) for run in ordered), confidence_level)
    entry["dead_final_layer_zero_fraction"] = describe(
        (1.0 - run["final_conv_active_fraction"] for run in ordered
         if final_layer_dead(run) and run.get("final_conv_active_fraction") is not None),
        confidence_level,
    )
    entry["test_accuracy_alive"] = describe(
        (run.get("test_accuracy") for run in ordered if not final_layer_dead(run)), confidence_level
    )
    entry["test_accuracy_not_collapsed"] = describe(
        (run.get("test_accuracy") for run in ordered if not run.get("collapsed")), confidence_level
    )
    entry.update(chance_entries(ordered, alpha))
    entry["convergence"] = {}
    for threshold, key in thresholds.items():
        reached = [
            run["convergence"][key] for run in ordered
            if run.get("convergence", {}).get(key, {}).get("epoch") is not None
        ]
        entry["convergence"][key] = {
            "threshold": threshold,
            "reached": len(reached),
            "epoch": describe((value["epoch"] for value in reached), confidence_level),
            "seconds": describe((value.get("seconds") for value in reached), confidence_level),
        }
    return entry


def loss_comparisons(by_loss: dict[str, dict[int, dict]], compare_params: dict,
                     untrainable: dict[str, str]) -> dict[str, Any]:
    """Every pair of losses compared on test accuracy over their shared seeds.

    Each pair is in the "primary" family (`compare.primary_pairs`, fixed before the runs) or
    the "exploratory" one; Holm's adjustment runs within each family, so that the families
    cannot be chosen after the results. A pair with an untrainable loss is in the family
    "excluded" and not adjusted: its difference measures the collapse, not the loss.
    """
    confidence_level = float(compare_params["confidence_level"])
    comparisons: dict[str, Any] = {}
    for loss_a, loss_b in itertools.combinations(by_loss, 2):
        comparison = paired_comparison(
            {seed: run.get("test_accuracy") for seed, run in by_loss[loss_a].items()},
            {seed: run.get("test_accuracy") for seed, run in by_loss[loss_b].items()},
            confidence_level,
        )
        family = family_of(loss_a, loss_b, compare_params["primary_pairs"])
        if family == "exploratory" and {loss_a, loss_b} & set(untrainable):
            family = "excluded"
        comparisons[pair_key(loss_a, loss_b)] = {
            "loss_a": loss_a, "loss_b": loss_b, "metric": "test_accuracy", "family": family,
            **comparison,
        }
    alpha = significance_level(confidence_level)
    for family in ("primary", "exploratory", "excluded"):
        keys = [key for key, value in comparisons.items() if value["family"] == family]
        adjusted = holm([comparisons[key]["p_value"] for key in keys]) if family != "excluded" \
            else [None] * len(keys)
        for key, value in zip(keys, adjusted):
            comparisons[key]["p_value_holm"] = value
            comparisons[key]["significant"] = value is not None and value < alpha
    return comparisons


def significance_level(confidence_level: float) -> float:
    """1 - confidence level, rounded so that 1 - 0.95 reads 0.05, not 0.050000000000000044."""
    return round(1.0 - confidence_level, 12)


def summarise(runs: Sequence[dict], compare_params: dict) -> dict[str, Any]:
    """The summary dictionary (layout in the module docstring) of per-run metrics dicts,
    given params.yaml's `compare` section (keys it lacks take the schema's defaults)."""
    compare_params = with_defaults("compare", compare_params)
    confidence_level = float(compare_params["confidence_level"])
    check_confidence_level(confidence_level)
    if not runs:
        raise ValueError("There are no runs to compare: pass at least one metrics file.")
    by_loss = runs_by_loss(runs)
    thresholds = convergence_thresholds(runs)
    losses = {
        loss: loss_entry([seeds[seed] for seed in sorted(seeds)], thresholds, confidence_level)
        for loss, seeds in by_loss.items()
    }
    untrainable = judge_untrainable_losses(by_loss)
    accuracies = {loss: {seed: run.get("test_accuracy") for seed, run in seeds.items()}
                  for loss, seeds in by_loss.items()}
    alpha = significance_level(confidence_level)
    return {
        "confidence_level": confidence_level,
        "alpha": alpha,
        "runs": len(runs),
        "thresholds": list(thresholds),
        "losses": losses,
        "hypotheses": primary_family_verdicts(accuracies, compare_params, alpha, untrainable),
        "comparisons": loss_comparisons(by_loss, compare_params, untrainable),
        "setup": collect_setup(runs),
    }


def headline(summary: dict[str, Any]) -> dict[str, float | None]:
    """The study's DVC metric: {loss: its mean test accuracy over seeds, rounded to 4
    decimals}, in the summary's order of losses (null where the summary has no mean)."""
    return {loss: review_number(entry["test_accuracy"]["mean"])
            for loss, entry in summary["losses"].items()}


def read_metrics(paths: Sequence[str | os.PathLike]) -> list[dict]:
    """Load per-run metrics files, checking that each is one `lossbench evaluate` wrote."""
    runs = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(
                f"The metrics file {path} does not exist. Run `lossbench evaluate` for that run "
                "first (or `dvc repro` / `snakemake`), or remove its loss or seed from "
                "train.losses / train.seeds in params.yaml."
            )
        try:
            metrics = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); rerun `lossbench evaluate`.") from error
        missing = [key for key in REQUIRED_KEYS if not isinstance(metrics, dict) or key not in metrics]
        if missing:
            raise ValueError(
                f"{path} lacks {', '.join(missing)}: it is not a metrics file from "
                "`lossbench evaluate`. Rerun that stage."
            )
        _check_accuracy(path, metrics["test_accuracy"])
        runs.append(_with_measured_training_accuracy(metrics))
    return runs


def _check_accuracy(path: Path, value) -> None:
    """Raise ValueError unless `value` is an accuracy evaluate could have written: a finite
    number in [0, 1] (not text, NaN or -5.0, which a hand edit could leave)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(
            f"{path}: test_accuracy is {value!r}, not an accuracy (a number from 0 to 1): the "
            "file was edited or damaged after `lossbench evaluate` wrote it. Restore it "
            f"(`git checkout {path}` or `dvc checkout`) or evaluate the run again."
        )


def _with_measured_training_accuracy(metrics: dict) -> dict:
    """Metrics written before evaluate measured training accuracy (no `train_accuracy_images`)
    hold Keras's running accuracy on augmented batches as `train_accuracy`: name it so, and
    leave the measured accuracy and the gap unknown rather than compare unlike numbers."""
    if "train_accuracy_images" in metrics or "train_accuracy" not in metrics:
        return metrics
    moved = dict(metrics, running_accuracy=metrics.get("running_accuracy", metrics["train_accuracy"]))
    moved.update(train_accuracy=None, generalization_gap=None)
    return moved


def run(
    compare_params: dict,
    metrics_paths: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    headline_output: str | os.PathLike | None = None,
) -> dict:
    """The CLI's entry point: read the evaluation files, write the summary JSON (and, when
    `headline_output` is given, the headline metrics), return the summary."""
    summary = summarise(read_metrics(metrics_paths), compare_params)
    write_json(output, summary)
    if headline_output is not None:
        write_json(headline_output, headline(summary))
    for loss, entry in summary["losses"].items():
        accuracy = entry["test_accuracy"]
        logger.info("%s: test accuracy %s over %d run(s).", loss,
                    "n/a" if accuracy["mean"] is None else f"{accuracy['mean']:.4f}", entry["runs"])
    return summary
