"""Assemble the cpu-label-noise study's committed files from its worktree's raw outputs.

Usage (from the project root, with lossbench installed):
    python reports/studies/cpu-label-noise/assemble.py /path/to/wt-noise/study

The trainings ran from a fixed commit in their own git worktree (by `run_study.py`, a
driver since replaced by the pipeline: README, "Reproduce"; in git history until 9d31ba7), and
each run was evaluated there on the whole clean test set right after it trained. This script,
run from the commit that assembles the study:
1. copies each finished run's evaluation, review metrics and training logs (history.json,
   run.json) into noise<rate>/, the worktree's paths in their recorded commands made relative;
2. re-evaluates the first run of each noise rate with this commit's `lossbench evaluate` and
   stops unless the result equals the copied evaluation (the worktree's code and this one
   evaluate alike; predictions stay in the worktree: made from CIFAR, never committed);
3. runs compare, figures and report per noise rate;
4. writes analysis.md (`analysis_markdown`: the pre-registered families and the descriptive
   tables) and accuracy-vs-noise.png (`accuracy_figure`), both from the committed per-run
   files alone, so that tests/test_studies.py can recompute them.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[2]
RATES = [0.0, 0.2, 0.4]
# R1-R3 of the README: each loss's change in clean test accuracy from noise 0 to 0.4, paired
# by seed; "a > b" reads "a loses less accuracy than b" (a larger, i.e. less negative, change).
ROBUSTNESS_PAIRS = [["mae", "categorical_crossentropy"], ["hinge", "categorical_crossentropy"],
                    ["generalized_cross_entropy", "categorical_crossentropy"]]
CHANCE = 0.1  # ten classes
CALIBRATION = [("test_ece", "ECE"), ("test_ece_after_temperature", "ECE after T"),
               ("test_nll", "NLL"), ("test_nll_after_temperature", "NLL after T"),
               ("test_brier", "Brier"), ("test_brier_after_temperature", "Brier after T")]


def arm(rate: float) -> str:
    return f"noise{rate:g}"


def relative_paths(text: str, source: Path) -> str:
    """`text` with the worktree's absolute paths made relative to its root."""
    return text.replace(f"{source.parent}/", "")


def study_params(source: Path, rate: float) -> dict:
    """The study's params at one noise rate: the driver's base params (as run_study.py writes
    them), validated by this commit (which fills keys added since)."""
    from lossbench.pipeline.params import validate_params

    params = yaml.safe_load((source / "base-params.yaml").read_text())
    params["preprocess"]["label_noise"] = rate
    return validate_params(params)


def copy_arm(source: Path, rate: float, params: dict) -> list[Path]:
    """Copy every finished run of one noise rate; returns the copied evaluation files."""
    evaluations = []
    origin, target = source / arm(rate), HERE / arm(rate)
    for seed in params["train"]["seeds"]:
        for loss in params["train"]["losses"]:
            run = f"{loss}-seed{seed}"
            if not (origin / "metrics" / f"{run}.json").is_file():
                continue  # not trained (yet)
            for folder in ("evaluation", "metrics"):
                (target / folder).mkdir(parents=True, exist_ok=True)
                text = relative_paths((origin / folder / f"{run}.json").read_text(), source)
                (target / folder / f"{run}.json").write_text(text)
            logs = target / "training" / run
            logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(origin / "training" / run / "history.json", logs / "history.json")
            (logs / "run.json").write_text(relative_paths((origin / "training" / run / "run.json").read_text(), source))
            evaluations.append(target / "evaluation" / f"{run}.json")
    return evaluations


def check_evaluation_again(source: Path, rate: float, params: dict, evaluation: Path) -> None:
    """Evaluate `evaluation`'s model with this commit and require the same JSON."""
    from lossbench import evaluate

    run = json.loads(evaluation.read_text())
    scratch = source / "evaluated-again"
    name = f"{run['loss']}-seed{run['seed']}"
    again = scratch / f"{arm(rate)}-{name}.json"
    evaluate.run(params["evaluate"], run["loss"], run["seed"], source / "data" / arm(rate),
                 source / arm(rate) / "models" / f"{name}.keras", HERE / arm(rate) / "training" / name,
                 again, scratch / f"{arm(rate)}-{name}-metrics.json",
                 predictions_output=scratch / f"{arm(rate)}-{name}.npz")
    if json.loads(again.read_text()) != run:
        raise ValueError(f"{evaluation} differs from this commit's evaluation of the same model ({again}).")


def load_runs(folder: Path) -> dict[float, list[dict]]:
    """{noise rate: [evaluation]} of the committed study in `folder`, read as compare reads them."""
    from lossbench import compare

    return {rate: compare.read_metrics(sorted((folder / arm(rate) / "evaluation").glob("*.json")))
            for rate in RATES if (folder / arm(rate) / "evaluation").is_dir()}


def by_loss_and_seed(runs: list[dict], key: str = "test_accuracy") -> dict[str, dict[int, float]]:
    table: dict[str, dict[int, float]] = {}
    for run in runs:
        table.setdefault(run["loss"], {})[run["seed"]] = run[key]
    return table


def _interval(values, confidence_level: float, scale: float = 100.0, digits: int = 1) -> str:
    """"mean ± half-width (n)" of `values` (scaled), or the mean alone where n < 2."""
    from lossbench.compare.seed_statistics import describe

    stats = describe(values, confidence_level)
    if stats["mean"] is None:
        return "—"
    if stats["ci_high"] is None:
        return f"{scale * stats['mean']:.{digits}f} (n=1)"
    return (f"{scale * stats['mean']:.{digits}f} ± {scale * (stats['ci_high'] - stats['mean']):.{digits}f}"
            f" (n={stats['n']})")


def robustness_family(clean: dict, noisy: dict, compare_params: dict, untrainable: dict) -> dict:
    """R1-R3: primary_family_verdicts on each loss's per-seed change acc(0.4) - acc(0);
    `untrainable` ({loss: reason}, compare's judgement at noise 0) is recorded beside them."""
    from lossbench.compare import significance_level
    from lossbench.compare.hypotheses import primary_family_verdicts

    changes = {loss: {seed: noisy[loss][seed] - clean[loss][seed] for seed in clean[loss] if seed in noisy.get(loss, {})}
               for loss in clean}
    params = {**compare_params, "primary_pairs": ROBUSTNESS_PAIRS}
    return primary_family_verdicts(changes, params, significance_level(compare_params["confidence_level"]),
                                   untrainable)


def confound_sentence(family: dict) -> str:
    """The pre-registered confound, for the losses of the family that compare judged
    untrainable at noise 0 (`family["untrainable_losses"]`), or "" where there are none."""
    tested = {loss for pair in family["pairs"] for loss in (pair["loss_a"], pair["loss_b"])}
    named = {loss: reason for loss, reason in family["untrainable_losses"].items() if loss in tested}
    if not named:
        return ""
    listing = "; ".join(f"`{loss}` ({reason})" for loss, reason in sorted(named.items()))
    return (f"Untrainable at noise 0 by compare's judgement: {listing}. A loss that learnt nothing "
            "has nothing to lose, so its small drop shows slowness, not robustness, and a verdict "
            "on it answers the letter of its claim only (the confound stated before the runs).")


def analysis_markdown(runs: dict[float, list[dict]], compare_params: dict) -> str:
    """The study's analysis from its evaluations ({rate: [evaluation]}): R1-R3, the paper's
    claims at noise 0 and 0.4, the retained share, accuracy by rate and calibration at 0."""
    from lossbench import compare
    from lossbench.compare.hypotheses import verdict_table, verdicts_markdown

    level = compare_params["confidence_level"]
    accuracy = {rate: by_loss_and_seed(evaluations) for rate, evaluations in runs.items()}
    losses = list(dict.fromkeys(run["loss"] for evaluations in runs.values() for run in evaluations))
    lines = ["# cpu-label-noise: the pre-registered analysis", "",
             "Written by `assemble.py` from the evaluations in `noise<rate>/evaluation/`. Accuracy",
             f"is on the clean test labels, in % of the 10,000 test images; ± is the half-width of the",
             f"{100 * level:g} % t interval over seeds.", ""]
    clean, noisy = accuracy.get(0.0, {}), accuracy.get(0.4, {})
    families = {f"noise {rate:g}": compare.summarise(runs[rate], compare_params)["hypotheses"]
                for rate in (0.0, 0.4) if rate in runs}
    robustness = robustness_family(clean, noisy, compare_params,
                                   families.get("noise 0", {}).get("untrainable_losses", {}))
    lines += ["## Primary family R1–R3: who loses less accuracy from noise 0 to 0.4", "",
              "Each row tests a loss's change in accuracy (acc(0.4) − acc(0), per seed) against",
              "cross-entropy's: `a` > `b` reads \"a loses less than b\"; the difference is in points.", "",
              *verdict_table({"noise 0 → 0.4": robustness}), ""]
    if confound_sentence(robustness):
        lines += [confound_sentence(robustness), ""]
    lines += ["## Secondary: the paper's three claims at noise 0 and at noise 0.4", "",
              verdicts_markdown(families, condition="40 % label noise").rstrip(), ""]
    lines += ["## Accuracy by noise rate, and the drop", "",
              "The retained share is (acc(0.4) − 0.1) / (acc(0) − 0.1) per seed, descriptive only; a",
              "seed at chance at noise 0 has none (left out: see its n).", "",
              "| Loss | " + " | ".join(f"noise {rate:g}" for rate in accuracy)
              + " | change 0 → 0.4 (points) | retained share of above-chance accuracy |",
              "|---|" + "---|" * (len(accuracy) + 2)]
    for loss in losses:
        cells = [_interval(accuracy[rate].get(loss, {}).values(), level) for rate in accuracy]
        seeds = [seed for seed in clean.get(loss, {}) if seed in noisy.get(loss, {})]
        change = [noisy[loss][seed] - clean[loss][seed] for seed in seeds]
        # Undefined for a seed at or below chance at noise 0 (nothing above chance to retain):
        # NaN, which the interval leaves out (its n counts the seeds that have one).
        retained = [(noisy[loss][seed] - CHANCE) / (clean[loss][seed] - CHANCE)
                    if clean[loss][seed] > CHANCE else float("nan") for seed in seeds]
        lines.append(f"| `{loss}` | " + " | ".join(cells) + f" | {_interval(change, level)} | "
                     f"{_interval(retained, level, scale=1.0, digits=2)} |")
    lines += ["", "## Calibration at noise 0 (before and after temperature scaling)", "",
              "ECE: 15 equal-width bins of the top-label confidence; NLL and Brier score per image;",
              "linear-output losses on the softmax of their scores; the temperature fitted on the",
              "run's hold-out split of the training set, never the test set.", "",
              "| Loss | " + " | ".join(title for _key, title in CALIBRATION) + " |",
              "|---|" + "---|" * len(CALIBRATION)]
    for loss in losses:
        values = [[run[key] for run in runs.get(0.0, []) if run["loss"] == loss] for key, _title in CALIBRATION]
        lines.append(f"| `{loss}` | " + " | ".join(_interval(column, level, 1.0, 3) for column in values) + " |")
    return "\n".join(lines) + "\n"


def accuracy_figure(runs: dict[float, list[dict]], confidence_level: float, path: Path) -> Path:
    """Clean test accuracy against the training-label noise rate, one line per loss: the mean
    over seeds with its t interval (a point alone where one seed exists)."""
    from lossbench.compare.seed_statistics import describe
    from lossbench.presentation import figure_style

    figure, axis = figure_style.new_figure(9.0, 5.0)
    losses = list(dict.fromkeys(run["loss"] for evaluations in runs.values() for run in evaluations))
    for index, loss in enumerate(losses):
        points = []
        for rate, evaluations in runs.items():
            stats = describe([run["test_accuracy"] for run in evaluations if run["loss"] == loss], confidence_level)
            if stats["mean"] is not None:
                half = 0.0 if stats["ci_high"] is None else stats["ci_high"] - stats["mean"]
                points.append((rate + (index - len(losses) / 2) * 0.004, stats["mean"], half))
        x, mean, half = zip(*points)
        axis.errorbar(x, mean, yerr=half, marker="o", capsize=3, linewidth=1.6, label=loss)
    axis.set_xlabel("share of training labels replaced by another class (symmetric noise)")
    axis.set_ylabel(f"test accuracy, clean labels ({figure_style.ACCURACY_UNIT})")
    axis.set_xticks(list(runs))
    figure_style.percent_axis(axis)
    figure_style.legend_beside(axis, title="loss (mean, 95 % t interval)")
    return figure_style.save(figure, path)


def main(source: Path) -> None:
    import os

    from lossbench import compare, figures, report

    # Paths relative to the project root from here on: the report records where its summary
    # came from, and a committed file must not name this machine's directories.
    os.chdir(PROJECT)
    global HERE
    HERE = HERE.relative_to(PROJECT)
    for rate in RATES:
        params = study_params(source, rate)
        evaluations = copy_arm(source, rate, params)
        if not evaluations:
            continue
        check_evaluation_again(source, rate, params, evaluations[0])
        out = HERE / arm(rate)
        (out / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        shutil.copy(source / arm(rate) / "counts.json", out / "counts.json")
        compare.run(params["compare"], evaluations, out / "summary.json", out / "headline.json")
        figures.run(out / "summary.json", evaluations, [out / "training" / p.stem for p in evaluations],
                    out / "figures", out / "epochs.csv")
        report.run(params["report"], out / "summary.json", out / "figures", out / "report.md", params)
    compare_params = study_params(source, 0.0)["compare"]
    runs = load_runs(HERE)
    (HERE / "analysis.md").write_text(analysis_markdown(runs, compare_params))
    accuracy_figure(runs, compare_params["confidence_level"], HERE / "accuracy-vs-noise.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
