"""Assemble the cpu-fair-lr study's committed files from its worktree's raw outputs.

Usage (from the project root, with lossbench installed):
    python reports/studies/cpu-fair-lr/assemble.py /path/to/worktree/study

The trainings ran from a fixed commit in their own git worktree (by `run_study.py`, a
driver since replaced by the pipeline: README, "Reproduce"; in git history until 9d31ba7). This script, run from the commit that assembles the study:
1. copies each run's training logs (history.json, run.json) here, adding to run.json the
   gradient scale at initialisation (`initial_output_gradient_scale`, recomputed from the seed
   with `lossbench.train.training`: the same initial weights, as they depend on the seed only);
2. writes each loss's tuning result in the format of `lossbench tune` (`tuning/tune/<loss>.json`,
   selected by `lossbench.train.tune.select_learning_rate`, the rule the driver used);
3. evaluates every saved model with this commit's `lossbench evaluate` on the whole test set;
4. runs compare, figures, report per arm and `lossbench verdicts` across the arms.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[2]
LOSSES = ["categorical_crossentropy", "hinge", "squared_hinge"]
ARMS = {"paper-lr": 0.01, "tuned-lr": "tuned"}


def relative_paths(text: str, source: Path) -> str:
    """`text` with the worktree's absolute paths (in the recorded commands) made relative to
    the worktree's root, so that no committed file names this machine."""
    return text.replace(f"{source.parent}/", "")


def study_params(source: Path, learning_rate) -> dict:
    """The study's params: the driver's base params, this commit's defaults for keys added
    since, and the tuning settings the driver used."""
    from lossbench.pipeline.params import validate_params

    params = yaml.safe_load((source / "base-params.yaml").read_text())
    params["train"]["learning_rate"] = learning_rate
    params["tune"] = {"learning_rates": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0], "seeds": [100],
                      "epochs": 6, "holdout_fraction": params["train"]["holdout_fraction"]}
    return validate_params(params)


def tuning_results(source: Path, params: dict) -> list[Path]:
    from lossbench.io.atomic import write_json
    from lossbench.train import tune

    paths = []
    for loss in LOSSES:
        runs = []
        for rate in params["tune"]["learning_rates"]:
            for seed in params["tune"]["seeds"]:
                name = f"{loss}-lr{rate:g}-seed{seed}"
                logs = source / "tuning" / "training" / name
                if not (logs / "run.json").is_file():
                    continue
                target = HERE / "tuning" / "training" / name
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(logs / "history.json", target / "history.json")
                (target / "run.json").write_text(relative_paths((logs / "run.json").read_text(), source))
                history = json.loads((logs / "history.json").read_text())["epochs"]
                info = json.loads((logs / "run.json").read_text())
                runs.append({"learning_rate": rate, "seed": seed,
                             "holdout_accuracy": history[-1]["val_accuracy"] if history else None,
                             "diverged": bool(info.get("diverged")),
                             "holdout_accuracy_per_epoch": [epoch["val_accuracy"] for epoch in history]})
        path = HERE / "tuning" / "tune" / f"{loss}.json"
        write_json(path, tune.tuning_result(loss, params["tune"], runs))
        paths.append(path)
    return paths


def gradient_scale(params: dict, loss: str, seed: int, data) -> float:
    import keras

    from lossbench.train.training import TrainConfig, build_training_model, initial_gradient_scale

    config = TrainConfig.from_params({**params, "train": {**params["train"], "learning_rate": 0.01}})
    model, _ = build_training_model(config, loss, seed, len(data.class_names))
    value = initial_gradient_scale(model, loss, data.train_images, data.train_labels)
    keras.backend.clear_session()
    return value


def evaluate_arm(source: Path, arm: str, params: dict, rates: dict, data, scales: dict,
                 prepared: Path) -> list[Path]:
    """Copy the arm's training logs, evaluate its models here; returns the evaluation files."""
    from lossbench import evaluate

    evaluations = []
    for seed in params["train"]["seeds"]:
        for loss in LOSSES:
            run = f"{loss}-seed{seed}"
            # Where the tuned rate is the paper's, the tuned arm is the paper arm's run.
            origin = "paper-lr" if arm == "paper-lr" or rates[loss] == 0.01 else "tuned-lr"
            model = source / origin / "models" / f"{run}.keras"
            output = HERE / arm / "evaluation" / f"{run}.json"
            if output.is_file() and not model.is_file():
                evaluations.append(output)  # assembled before, from a model no longer here
                continue
            if not (source / origin / "metrics" / f"{run}.json").is_file():
                continue
            logs = HERE / arm / "training" / run
            logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / origin / "training" / run / "history.json", logs / "history.json")
            info = json.loads(relative_paths((source / origin / "training" / run / "run.json").read_text(), source))
            if (loss, seed) not in scales:
                scales[(loss, seed)] = gradient_scale(params, loss, seed, data)
            info["initial_output_gradient_scale"] = scales[(loss, seed)]
            (logs / "run.json").write_text(json.dumps(info, indent=2) + "\n")
            evaluate.run(params["evaluate"], loss, seed, prepared, model, logs,
                         output, HERE / arm / "metrics" / f"{run}.json")
            evaluations.append(output)
    return evaluations


def prepare_again(source: Path, params: dict) -> Path:
    """The study's arrays prepared by this commit's preprocess (with its manifest, which the
    readers now check), after checking that they equal those the trainings used."""
    import numpy as np

    from lossbench import preprocess

    output = source / "data" / "prepared-again"
    if not (output / "manifest.json").is_file():
        preprocess.run(params["preprocess"], archive=source / "data" / "raw" / "archive",
                       output_dir=output, counts_path=HERE / "counts.json",
                       max_archive_bytes=params["download"]["max_archive_bytes"])
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        if not np.array_equal(np.load(output / f"{name}.npy"),
                              np.load(source / "data" / "prepared" / f"{name}.npy")):
            raise ValueError(f"{name} prepared now differs from the arrays the study trained on.")
    return output


def main(source: Path) -> None:
    import os

    from lossbench import compare, figures, report

    # Paths relative to the project root from here on: the report records where its summary
    # came from, and a committed file must not name this machine's directories.
    os.chdir(PROJECT)
    global HERE
    HERE = HERE.relative_to(PROJECT)
    from lossbench.io.prepared import load_prepared

    shutil.copy(source / "base-params.yaml", HERE / "base-params.yaml")
    tuning = tuning_results(source, study_params(source, 0.01))
    rates = {path.stem: json.loads(path.read_text())["selected_learning_rate"] for path in tuning}
    prepared = prepare_again(source, study_params(source, 0.01))
    data = load_prepared(prepared)
    scales: dict = {}
    for arm, rate in ARMS.items():
        params = study_params(source, rate)
        evaluations = evaluate_arm(source, arm, params, rates, data, scales, prepared)
        if not evaluations:
            continue
        (HERE / arm / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        compare.run(params["compare"], evaluations, HERE / arm / "summary.json", HERE / arm / "headline.json")
        log_dirs = [HERE / arm / "training" / path.stem for path in evaluations]
        figures.run(HERE / arm / "summary.json", evaluations, log_dirs, HERE / arm / "figures",
                    HERE / arm / "epochs.csv", tuning)
        report.run(params["report"], HERE / arm / "summary.json", HERE / arm / "figures",
                   HERE / arm / "report.md", params, tuning)
    from lossbench import cli

    cli.main(["--params", str(PROJECT / "params.yaml"), "verdicts",
              "--arm", f"paper lr={HERE / 'paper-lr' / 'summary.json'}",
              "--arm", f"tuned lr={HERE / 'tuned-lr' / 'summary.json'}",
              "--output", str(HERE / "verdicts.md")])


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
