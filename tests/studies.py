"""A synthetic study of 3 losses x 3 seeds, for the figures and report stages' tests.

The synthetic metrics are built by `lossbench.evaluate.build_metrics` from constructed scores,
so they have exactly the layout the evaluate stage writes; the summary comes from the real
`lossbench.compare.run`. The fixture `rendered` (tests/conftest.py) is the study with its figures.
"""

import json
from pathlib import Path

import numpy as np

from lossbench import compare, evaluate, report
from lossbench.evaluate.calibration import calibration_fields
from lossbench.pipeline.params import load_params, with_defaults

PROJECT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# params.yaml's `evaluate:` defaults (the shares that make a run collapsed or its conv_9 dead).
EVALUATE = with_defaults("evaluate", {})
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TEST_SIZE = 200
EPOCHS = 6

# Final test accuracies per loss and seed: cross-entropy clearly best, hinge clearly worst.
STUDY = {
    "categorical_crossentropy": [0.86, 0.85, 0.875],
    "hinge": [0.53, 0.56, 0.545],
    "squared_hinge": [0.80, 0.82, 0.805],
}


def synthetic_history(final_accuracy: float, seed: int) -> list[dict]:
    """Validation accuracy rising linearly to `final_accuracy`; training a little above it.

    Runs ending at 85 % or more get there by epoch 2, the others only at the last epoch, so
    the fastest loss to 80 % is known in advance.
    """
    reach_epoch = 2 if final_accuracy >= 0.85 else EPOCHS
    history = []
    for epoch in range(1, EPOCHS + 1):
        fraction = min(1.0, epoch / reach_epoch)
        history.append({
            "epoch": epoch,
            "loss": 2.0 - 1.5 * fraction + 0.01 * seed,
            "accuracy": min(1.0, final_accuracy * fraction + 0.04),
            "val_loss": 2.1 - 1.4 * fraction,
            "val_accuracy": final_accuracy * fraction,
            "learning_rate": 0.01,
            "seconds": 10.0 + seed,
        })
    return history


def write_study(
    root: Path, study: dict[str, list[float]], diverged: tuple[str, int] | None = None,
    dead: frozenset[tuple[str, int]] = frozenset(),
) -> tuple[Path, list[Path], list[Path]]:
    """Metrics files, training logs and the summary of a synthetic study under `root`.

    The run `diverged` = (loss, seed), if given, turns NaN from epoch 3 on, as a diverged
    run's history and scores do. The runs in `dead` have every conv_9 channel dead (the
    others 30 % of conv_9's activations positive, no dead channel).
    """
    labels = np.arange(TEST_SIZE) % len(CLASS_NAMES)
    metrics_paths, log_dirs = [], []
    for loss, accuracies in study.items():
        for seed, accuracy in enumerate(accuracies):
            run_name = f"{loss}-seed{seed}"
            history = synthetic_history(accuracy, seed)
            is_diverged = diverged == (loss, seed)
            if is_diverged:
                history = history[:3]
                history[2].update(loss=float("nan"), accuracy=float("nan"),
                                  val_loss=float("nan"), val_accuracy=float("nan"))
            run_info = {
                "loss": loss, "seed": seed, "epochs_planned": EPOCHS, "epochs_completed": EPOCHS,
                "diverged": is_diverged, "diverged_epoch": 3 if is_diverged else None,
                "train_seconds": sum(record["seconds"] for record in history),
                "device": "CPU: synthetic", "backend": "tensorflow", "precision": "float32",
                "validation": "test", "train_size": 400, "validation_size": TEST_SIZE,
                "versions": {"python": "3.11", "keras": "3.15.1", "lossbench": "0.1.0"},
                "command": f"lossbench train --loss {loss} --seed {seed}",
            }
            log_dir = root / "training" / run_name
            log_dir.mkdir(parents=True)
            (log_dir / "history.json").write_text(json.dumps({"epochs": history}, allow_nan=True))
            (log_dir / "run.json").write_text(json.dumps(run_info))
            # The first round(accuracy * N) images are right, the rest predicted as the next class.
            correct = round(accuracy * TEST_SIZE)
            predicted = labels.copy()
            predicted[correct:] = (labels[correct:] + 1) % len(CLASS_NAMES)
            # Softmax-like rows: 73 % on the predicted class, so the runs are over-confident.
            scores = 0.7 * np.eye(len(CLASS_NAMES))[predicted] + 0.03
            if is_diverged:
                scores[:] = np.nan
            # The temperature is fitted on the test rows themselves here: only the layout matters.
            fitted = calibration_fields(scores, labels, "softmax", scores, labels, "training")
            metrics = evaluate.build_metrics(
                loss, seed, labels, scores, CLASS_NAMES,
                test_loss=1.0, history=history, run_info=run_info,
                thresholds=[0.5, 0.7, 0.8], model_parameters=13_000,
                collapse_share=EVALUATE["collapse_share"], dead_layer_share=EVALUATE["dead_layer_share"],
                final_conv=(
                    {"final_conv_active_fraction": 0.0, "final_conv_dead_channels": 10, "final_conv_channels": 10}
                    if (loss, seed) in dead else
                    {"final_conv_active_fraction": 0.3, "final_conv_dead_channels": 0, "final_conv_channels": 10}
                ),
                calibration=fitted,
            )
            path = root / "metrics" / f"{run_name}.json"
            evaluate.write_json(path, metrics)
            metrics_paths.append(path)
            log_dirs.append(log_dir)
    summary_path = root / "summary.json"
    compare.run({"confidence_level": 0.95}, metrics_paths, summary_path)
    return summary_path, metrics_paths, log_dirs


def study_params(**data_changes) -> dict:
    params = load_params(PROJECT / "params.yaml")
    params["model"]["width"] = 0.1
    params["train"]["epochs"] = EPOCHS
    for key, value in data_changes.items():
        section = "download" if key in ("url", "md5", "sha256", "source") else "preprocess"
        params[section][key] = value
    return params


def write_report(
    root: Path, study: dict, figures_dir: Path | None = None, dead=frozenset(), **data_changes
) -> str:
    summary_path, _, _ = write_study(root, study, dead=dead)
    if figures_dir is None:
        figures_dir = root / "figures"
        figures_dir.mkdir()
    params = study_params(**data_changes)
    return report.run(params["report"], summary_path, figures_dir, root / "report.md", params)
