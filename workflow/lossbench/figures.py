"""The `figures` stage: render the comparison figures as PNG files.

In:  `reports/summary.json` (compare), the per-run evaluation files (evaluate), the runs'
     log directories (train), the tuning results (tune) and the loss registry.
Out: a directory of PNG files (`reports/figures/`):

- `loss_shapes.png`: the losses as functions of one quantity, as in the paper's Fig. 1,
  computed by calling the registry's loss functions on constructed outputs for one image:
  (a) the softmax losses (the paper's Keras 1 versions) against the true class's probability
      p_true, the other classes sharing 1 - p_true equally;
  (b) the raw-score losses against the true class's score s_true, every other score fixed
      at -1 (where a one-vs-all hinge is satisfied for it);
  (c) the raw-score losses against the margin s_true - max_{k != true} s_k, every other
      score fixed at 0.
- `curves_<loss>.png`: per loss, training (red) and validation (blue) loss and accuracy per
  epoch, as in the paper's Figs. 4-6: the mean over seeds, with a band of one standard
  deviation when there are several seeds.
- `validation_accuracy.png`: every loss's validation accuracy per epoch (mean, ±1 SD band).
- `test_accuracy.png`: each loss's final test accuracy: the mean with its confidence
  interval (from the summary) and one dot per seed; the dashed line is chance.
- `confusion_<loss>.png`: the confusion matrix summed over seeds, each row divided by its
  total, so that the diagonal reads as per-class accuracy.
- `tuning_learning_rates.png`: hold-out accuracy per learning rate (`lossbench.tuning_report`).
- `reliability_<loss>.png`: the reliability diagram per loss (`lossbench.calibration_figures`).

The stage also writes the study's per-epoch table (`reports/epochs.csv`), one row per
(loss, seed, epoch), columns `loss, seed, run, epoch, train_loss, train_accuracy, val_loss,
val_accuracy` (an empty cell where a value is missing or not finite). dvc.yaml plots it:
one table for the whole study, so that `dvc plots` needs no pattern over run directories,
which DVC does not expand.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lossbench.atomic import staged_directory, write_text
from lossbench.calibration_figures import plot_reliability_diagrams
from lossbench.runs import parse_run_name, run_name

logger = logging.getLogger(__name__)

# The paper's colours: training in red, validation in blue.
SPLIT_COLOURS = {"training": "tab:red", "validation": "tab:blue"}
DOTS_PER_INCH = 120


def _pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def _save(figure, path: Path) -> None:
    pyplot = _pyplot()
    figure.tight_layout()
    # No creation time or software version is stored, so reruns give identical files.
    figure.savefig(path, dpi=DOTS_PER_INCH, metadata={"Software": None})
    pyplot.close(figure)


def _read_json(path: Path, producer: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. Run `lossbench {producer}` first.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); rerun `lossbench {producer}`.") from error


# ---------------------------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------------------------


def read_histories(log_dirs: Sequence[str | os.PathLike]):
    """The training histories as one long table.

    Returns a pandas DataFrame with columns loss, seed, epoch, split ("training" or
    "validation"), metric ("loss" or "accuracy"), value (NaN where missing) and
    validation_data ("test" or "holdout", what the validation split was).
    """
    import pandas

    rows = []
    for log_dir in map(Path, log_dirs):
        history = _read_json(log_dir / "history.json", "train")
        run_path = log_dir / "run.json"
        run_info = _read_json(run_path, "train") if run_path.is_file() else {}
        parsed = parse_run_name(log_dir.name)
        loss = run_info.get("loss") or (parsed[0] if parsed else None)
        seed = run_info.get("seed", parsed[1] if parsed else None)
        if loss is None or seed is None:
            raise ValueError(
                f"Cannot tell which loss and seed {log_dir} belongs to: it has no run.json and "
                "its name is not <loss>-seed<seed>. Pass the log directories `lossbench train` wrote."
            )
        for record in history.get("epochs", []):
            for split, prefix in (("training", ""), ("validation", "val_")):
                for metric in ("loss", "accuracy"):
                    value = record.get(prefix + metric)
                    rows.append({
                        "loss": loss,
                        "seed": int(seed),
                        "epoch": int(record["epoch"]),
                        "split": split,
                        "metric": metric,
                        "value": float("nan") if value is None else float(value),
                        "validation_data": run_info.get("validation", "validation"),
                        "diverged_epoch": run_info.get("diverged_epoch"),
                    })
    columns = ["loss", "seed", "epoch", "split", "metric", "value", "validation_data", "diverged_epoch"]
    frame = pandas.DataFrame(rows, columns=columns)
    # Infinite values (a diverged epoch) would stretch the axes to nothing; they are missing.
    frame["value"] = frame["value"].replace([np.inf, -np.inf], np.nan)
    return frame


EPOCH_COLUMNS = ("loss", "seed", "run", "epoch", "train_loss", "train_accuracy", "val_loss",
                 "val_accuracy")


def epochs_table(histories) -> str:
    """The per-epoch table (module docstring) as CSV text, from `read_histories`' frame."""
    import pandas

    frame = histories.copy()
    frame["column"] = frame["split"].map({"training": "train_", "validation": "val_"}) + frame["metric"]
    wide = frame.pivot_table(index=["loss", "seed", "epoch"], columns="column", values="value",
                             aggfunc="first", dropna=False).reset_index()
    # Rows in the order of the study (losses as given, then seed and epoch).
    order = {loss: index for index, loss in enumerate(dict.fromkeys(histories["loss"]))}
    wide = wide.sort_values(["loss", "seed", "epoch"], key=lambda column: (
        column.map(order) if column.name == "loss" else column))
    wide["run"] = [run_name(loss, seed) for loss, seed in zip(wide["loss"], wide["seed"])]
    for column in EPOCH_COLUMNS:
        if column not in wide:
            wide[column] = float("nan")
    return pandas.DataFrame(wide, columns=list(EPOCH_COLUMNS)).to_csv(index=False, lineterminator="\n")


def _band(seed_count: int):
    """seaborn's `errorbar`: ±1 standard deviation over seeds, or none for a single seed."""
    return "sd" if seed_count > 1 else None


# ---------------------------------------------------------------------------------------------
# Figures.
# ---------------------------------------------------------------------------------------------


def loss_shape_curves(num_classes: int = 10, points: int = 301) -> dict[str, dict[str, Any]]:
    """The three panels of `loss_shapes.png` as numbers, from the registry's functions.

    Returns {panel: {"x": array, "xlabel": str, "curves": {loss name: array}}} for panels
    "probability", "score" and "margin" (see the module docstring for the constructions).
    """
    from keras import ops

    from lossbench.losses import LOSSES

    if num_classes < 2:
        raise ValueError(f"Loss shapes need at least 2 classes, got {num_classes}.")
    labels = np.zeros(points, dtype=np.int32)  # class 0 is the true class of every row
    probability = np.linspace(0.01, 1.0, points)
    probabilities = np.repeat(((1.0 - probability) / (num_classes - 1))[:, None], num_classes, axis=1)
    probabilities[:, 0] = probability
    score = np.linspace(-3.0, 3.0, points)
    scores_others_low = np.full((points, num_classes), -1.0)
    scores_others_low[:, 0] = score
    scores_others_zero = np.zeros((points, num_classes))
    scores_others_zero[:, 0] = score

    panels = {
        "probability": {"x": probability, "xlabel": "probability of the true class, p_true",
                        "title": "(a) softmax outputs (paper, Keras 1)", "curves": {}},
        "score": {"x": score, "xlabel": "true-class score s_true (other scores -1)",
                  "title": "(b) raw scores: one class's score", "curves": {}},
        "margin": {"x": score, "xlabel": "margin s_true - max other score (other scores 0)",
                   "title": "(c) raw scores: margin over the runner-up", "curves": {}},
    }
    for name, spec in LOSSES.items():
        if spec.output_activation == "softmax":
            inputs = {"probability": probabilities}
        else:
            inputs = {"score": scores_others_low, "margin": scores_others_zero}
        for panel, outputs in inputs.items():
            values = spec.function(labels, outputs.astype(np.float32))
            panels[panel]["curves"][name] = np.asarray(ops.convert_to_numpy(values), dtype=np.float64)
    return panels


def plot_loss_shapes(path: Path, num_classes: int = 10) -> None:
    pyplot = _pyplot()
    panels = loss_shape_curves(num_classes)
    figure, axes = pyplot.subplots(1, 3, figsize=(15, 4.5))
    for axis, panel in zip(axes, panels.values()):
        for name, values in panel["curves"].items():
            axis.plot(panel["x"], values, label=name, linewidth=2)
        axis.set_xlabel(panel["xlabel"])
        axis.set_ylabel("loss of one image")
        axis.set_title(panel["title"])
        axis.grid(alpha=0.3)
        if panel["curves"]:
            axis.legend(fontsize="small")
    figure.suptitle(f"Loss functions from lossbench.losses, {num_classes} classes")
    _save(figure, path)


def plot_curves(histories, loss: str, path: Path) -> None:
    """Training and validation loss and accuracy per epoch of one loss (paper Figs. 4-6)."""
    import seaborn

    pyplot = _pyplot()
    frame = histories[histories["loss"] == loss]
    seed_count = frame["seed"].nunique()
    validation_data = sorted(set(frame["validation_data"]))
    figure, axes = pyplot.subplots(1, 2, figsize=(12, 4.5))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        seaborn.lineplot(
            data=frame[frame["metric"] == metric], x="epoch", y="value", hue="split",
            hue_order=list(SPLIT_COLOURS), palette=SPLIT_COLOURS,
            errorbar=_band(seed_count), ax=axis,
        )
        axis.set_ylabel(metric)
        axis.set_title(f"{loss}: {metric}")
        axis.grid(alpha=0.3)
    band = "band: ±1 SD over seeds" if seed_count > 1 else "one seed"
    title = (
        f"{loss}: mean over {seed_count} seed(s), {band}; validation data: "
        f"{', '.join(validation_data)} set; training values on augmented images"
    )
    diverged = frame.dropna(subset=["diverged_epoch"]).groupby("seed")["diverged_epoch"].first()
    if len(diverged):
        # After a divergence the mean runs over the remaining seeds only; the title says so.
        title += "\ndiverged: " + ", ".join(
            f"seed {seed} at epoch {int(epoch)}" for seed, epoch in diverged.items()
        )
    figure.suptitle(title)
    _save(figure, path)


def plot_validation_accuracy(histories, losses: Sequence[str], path: Path) -> None:
    import seaborn

    pyplot = _pyplot()
    frame = histories[(histories["split"] == "validation") & (histories["metric"] == "accuracy")]
    seed_count = int(frame.groupby("loss")["seed"].nunique().max()) if len(frame) else 0
    figure, axis = pyplot.subplots(figsize=(9, 5.5))
    seaborn.lineplot(
        data=frame, x="epoch", y="value", hue="loss",
        hue_order=[loss for loss in losses if loss in set(frame["loss"])],
        errorbar=_band(seed_count), ax=axis,
    )
    axis.set_ylabel("validation accuracy")
    axis.set_title(
        "Validation accuracy per epoch (mean over seeds"
        + (", band: ±1 SD)" if seed_count > 1 else ")")
    )
    axis.grid(alpha=0.3)
    _save(figure, path)


def plot_test_accuracy(summary: dict, runs: Sequence[dict], path: Path) -> None:
    pyplot = _pyplot()
    losses = list(summary["losses"])
    level = summary.get("confidence_level", 0.95)
    figure, axis = pyplot.subplots(figsize=(max(7.5, 1.6 * len(losses)), 5))
    for position, loss in enumerate(losses):
        accuracy = summary["losses"][loss]["test_accuracy"]
        if accuracy["mean"] is None:
            continue
        if accuracy["ci_low"] is not None:
            error = [[accuracy["mean"] - accuracy["ci_low"]], [accuracy["ci_high"] - accuracy["mean"]]]
        else:
            error = None
        axis.errorbar(position, accuracy["mean"], yerr=error, fmt="o", color="black",
                      markersize=8, capsize=8, linewidth=2, zorder=3,
                      label=f"mean, {100 * level:g} % t interval" if position == 0 else None)
        seeds = [run["test_accuracy"] for run in runs
                 if run["loss"] == loss and run.get("test_accuracy") is not None]
        # A small fixed horizontal offset keeps each seed's dot visible beside the mean.
        offsets = np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else np.zeros(len(seeds))
        axis.scatter(position + 0.25 + offsets, seeds, color="tab:blue", alpha=0.7, s=25, zorder=2,
                     label="one seed" if position == 0 else None)
    class_count = next((len(run["class_names"]) for run in runs if run.get("class_names")), None)
    if class_count:
        axis.axhline(1.0 / class_count, color="grey", linestyle="--", linewidth=1, label="chance")
    axis.legend(loc="lower right", fontsize="small")
    axis.set_xticks(range(len(losses)), losses, rotation=20, ha="right")
    # Accuracies lie in [0, 1]; a t interval of a few seeds can reach past that, and its
    # exact ends are in the report's table.
    axis.set_ylim(0.0, 1.02)
    axis.set_ylabel("test accuracy")
    axis.set_title("Final test accuracy per loss")
    axis.grid(axis="y", alpha=0.3)
    _save(figure, path)


def summed_confusion(runs: Sequence[dict], loss: str) -> tuple[np.ndarray, list[str], int]:
    """(confusion matrix summed over the loss's runs, class names, number of runs)."""
    selected = [run for run in runs if run["loss"] == loss and run.get("confusion_matrix")]
    if not selected:
        return np.zeros((0, 0), dtype=np.int64), [], 0
    total = np.sum([np.asarray(run["confusion_matrix"], dtype=np.int64) for run in selected], axis=0)
    names = selected[0].get("class_names") or [str(index) for index in range(total.shape[0])]
    return total, list(names), len(selected)


def plot_confusion(runs: Sequence[dict], loss: str, path: Path) -> None:
    import seaborn

    pyplot = _pyplot()
    matrix, names, run_count = summed_confusion(runs, loss)
    row_totals = matrix.sum(axis=1, keepdims=True)
    # A row without any finite prediction (all its runs diverged) stays zero instead of NaN.
    fractions = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)
    size = max(5.0, 0.7 * len(names) + 2)
    figure, axis = pyplot.subplots(figsize=(size + 1, size))
    seaborn.heatmap(fractions, annot=len(names) <= 20, fmt=".2f", cmap="Blues", vmin=0, vmax=1,
                    xticklabels=names, yticklabels=names, square=True, ax=axis,
                    cbar_kws={"label": "fraction of the true class"})
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    unscored = sum(run.get("non_finite_predictions", 0) for run in runs if run["loss"] == loss)
    note = f"; {unscored} images without a finite prediction left out" if unscored else ""
    axis.set_title(f"{loss}: test confusion matrix, summed over {run_count} seed(s){note}")
    _save(figure, path)


def render_figures(summary: dict, runs: Sequence[dict], histories, output_dir: Path) -> list[Path]:
    """Render every figure into `output_dir` (which must exist); return the files written."""
    import matplotlib

    losses = list(summary["losses"])
    class_count = next((len(run["class_names"]) for run in runs if run.get("class_names")), 10)
    written = []
    with matplotlib.rc_context({"figure.max_open_warning": 0}):
        plot_loss_shapes(output_dir / "loss_shapes.png", num_classes=class_count)
        written.append(output_dir / "loss_shapes.png")
        for loss in losses:
            if (histories["loss"] == loss).any():
                plot_curves(histories, loss, output_dir / f"curves_{loss}.png")
                written.append(output_dir / f"curves_{loss}.png")
            else:
                logger.warning("No training history for %s: no curves_%s.png.", loss, loss)
        plot_validation_accuracy(histories, losses, output_dir / "validation_accuracy.png")
        written.append(output_dir / "validation_accuracy.png")
        plot_test_accuracy(summary, runs, output_dir / "test_accuracy.png")
        written.append(output_dir / "test_accuracy.png")
        for loss in losses:
            if summed_confusion(runs, loss)[2]:
                plot_confusion(runs, loss, output_dir / f"confusion_{loss}.png")
                written.append(output_dir / f"confusion_{loss}.png")
        written += plot_reliability_diagrams(runs, losses, output_dir)
    return written


def run(
    summary_path: str | os.PathLike,
    metrics_paths: Sequence[str | os.PathLike],
    log_dirs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    epochs_path: str | os.PathLike | None = None,
    tuning_paths: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """The CLI's entry point: render all figures (with the tuning curve of `tuning_paths`,
    `lossbench.tuning_report`) into `output_dir`, and when given write the per-epoch table to
    `epochs_path`; return the figures' paths."""
    from lossbench.tuning_report import FIGURE_NAME, plot_tuning_curves, read_tuning

    summary = _read_json(Path(summary_path), "compare")
    if not isinstance(summary, dict) or "losses" not in summary:
        raise ValueError(f"{summary_path} is not a summary from `lossbench compare`; rerun that stage.")
    runs = [_read_json(Path(path), "evaluate") for path in metrics_paths]
    histories = read_histories(log_dirs)
    tuning = read_tuning(tuning_paths)
    output_dir = Path(output_dir)
    # The figures are rendered into a staging directory that replaces output_dir whole, so a
    # failed or interrupted render leaves the previous figures, never a mixture.
    with staged_directory(output_dir) as staging:
        written = render_figures(summary, runs, histories, staging)
        written += [path for path in [plot_tuning_curves(tuning, staging / FIGURE_NAME)] if path]
    paths = [output_dir / path.name for path in written]
    if epochs_path is not None:
        write_text(epochs_path, epochs_table(histories))
    logger.info("Wrote %d figures to %s.", len(paths), output_dir)
    return paths
