"""The `figures` stage: render the comparison figures as PNG files.

In:  `reports/summary.json` (compare), the per-run evaluation files (evaluate), the runs'
     log directories (train), the tuning results (tune) and the loss registry.
Out: a directory of PNG files (`reports/figures/`), the figures that set the losses side by
     side at its top and one folder of figures per loss, `per_loss/`, each drawn by an entry
     of the registry `FIGURES` (name -> function of `FigureInputs`), in its order:

- `test_accuracy.png`: each loss's final test accuracy: the mean with its confidence
  interval (from the summary) and one dot per seed; the dashed line is chance
  (`lossbench.figures.comparison_figures`, like the next two).
- `validation_accuracy.png`: every loss's validation accuracy per epoch (mean, ±1 SD band).
- `loss_shapes.png`: the trained losses as functions of one quantity, as in the paper's Fig. 1,
  computed by calling the registry's loss functions.
- `tuning_learning_rates.png`: hold-out accuracy per learning rate, when any loss was tuned
  (`lossbench.presentation.tuning_report`).
- `per_loss/curves_<loss>.png`: per loss, training (red) and validation (blue) loss and
  accuracy per epoch, as in the paper's Figs. 4-6: the mean over seeds, with a band of one
  standard deviation when there are several seeds (`lossbench.figures.loss_figures`).
- `per_loss/reliability_<loss>.png`: the reliability diagram
  (`lossbench.figures.calibration_figures`).
- `per_loss/confusion_<loss>.png`: the confusion matrix summed over seeds, each row divided
  by its total, so that the diagonal reads as per-class accuracy.

Why the folder: `dvc plots show` and `dvc plots diff` order images by folder, then by name,
whatever dvc.yaml lists, so the comparison figures come first only from the top folder.
Every figure follows `lossbench.presentation.figure_style`: at most 1,400 pixels wide and
2,000 on any side, axis titles in words with units, whole-number epochs, plain tick numbers,
legends beside the data, never over it.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from lossbench.figures.calibration_figures import reliability_figure
from lossbench.figures.comparison_figures import final_accuracy_figure, loss_shapes_figure, validation_accuracy_figure
from lossbench.figures.loss_figures import confusion_figure, curves_figure, summed_confusion
from lossbench.io.atomic import staged_directory, write_text
from lossbench.pipeline.runs import parse_run_name, run_name
from lossbench.presentation.figure_style import pyplot, save
from lossbench.presentation.tuning_report import FIGURE_NAME, read_tuning, tuning_figure

logger = logging.getLogger(__name__)

# The folder of the figures of one loss each, inside the figures directory.
PER_LOSS = "per_loss"


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


# ---------------------------------------------------------------------------------------------
# Figures.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureInputs:
    """What a figure is drawn from: the summary of `lossbench compare`, the per-run
    evaluation dictionaries, `read_histories`' table and the tuning results (maybe none)."""

    summary: dict
    runs: Sequence[dict]
    histories: Any
    tuning: Sequence[dict] = ()


def _class_count(runs: Sequence[dict]) -> int:
    return next((len(run["class_names"]) for run in runs if run.get("class_names")), 10)


def _test_accuracy(inputs: FigureInputs):
    yield "test_accuracy.png", final_accuracy_figure(inputs.summary, inputs.runs)


def _validation_accuracy(inputs: FigureInputs):
    yield "validation_accuracy.png", validation_accuracy_figure(inputs.histories, list(inputs.summary["losses"]))


def _loss_shapes(inputs: FigureInputs):
    yield "loss_shapes.png", loss_shapes_figure(num_classes=_class_count(inputs.runs),
                                                losses=list(inputs.summary["losses"]))


def _tuning(inputs: FigureInputs):
    figure = tuning_figure(inputs.tuning)
    if figure is not None:
        yield FIGURE_NAME, figure


def _per_loss(inputs: FigureInputs):
    """Each loss's curves, reliability diagram and confusion matrix, loss by loss."""
    runs, histories = inputs.runs, inputs.histories
    for loss in inputs.summary["losses"]:
        if (histories["loss"] == loss).any():
            yield f"{PER_LOSS}/curves_{loss}.png", curves_figure(histories, loss)
        else:
            logger.warning("No training history for %s: no curves_%s.png.", loss, loss)
        figure = reliability_figure(runs, loss)
        if figure is not None:
            yield f"{PER_LOSS}/reliability_{loss}.png", figure
        if summed_confusion(runs, loss)[2]:
            yield f"{PER_LOSS}/confusion_{loss}.png", confusion_figure(runs, loss)


# The registry of figures, in the order they are drawn: name -> function(inputs: FigureInputs)
# yielding (path relative to the figures directory, matplotlib figure), none where the study
# has nothing to draw. Adding a figure: write such a function (drawing with
# lossbench.presentation.figure_style, in a module of this folder) and add one entry here; the
# stage saves what it yields, dvc.yaml's plots show every PNG of reports/figures/, and the
# report embeds a top-level figure it has no caption for under its file name.
FIGURES: dict[str, Callable[[FigureInputs], Iterable[tuple[str, Any]]]] = {
    "test_accuracy": _test_accuracy,
    "validation_accuracy": _validation_accuracy,
    "loss_shapes": _loss_shapes,
    "tuning_learning_rates": _tuning,
    "per_loss": _per_loss,
}


def study_figures(summary: dict, runs: Sequence[dict], histories, tuning: Sequence[dict] = ()):
    """Yield (path relative to the figures directory, matplotlib figure) for every figure of
    the registry `FIGURES`, in its order; the caller saves or closes each."""
    inputs = FigureInputs(summary, runs, histories, tuning)
    for draw in FIGURES.values():
        yield from draw(inputs)


def render_figures(summary: dict, runs: Sequence[dict], histories, output_dir: Path,
                   tuning: Sequence[dict] = ()) -> list[Path]:
    """Save every figure of `study_figures` under `output_dir` (which must exist); return the
    files written."""
    import matplotlib

    written = []
    with matplotlib.rc_context({"figure.max_open_warning": 0}):
        try:
            for name, figure in study_figures(summary, runs, histories, tuning):
                written.append(save(figure, output_dir / name))
        finally:
            pyplot().close("all")
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
    `lossbench.presentation.tuning_report`) into `output_dir`, and when given write the
    per-epoch table to `epochs_path`; return the figures' paths."""
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
        written = render_figures(summary, runs, histories, staging, tuning)
        paths = [output_dir / path.relative_to(staging) for path in written]
    if epochs_path is not None:
        write_text(epochs_path, epochs_table(histories))
    logger.info("Wrote %d figures to %s.", len(paths), output_dir)
    return paths
