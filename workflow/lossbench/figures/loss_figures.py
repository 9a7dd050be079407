"""The figures of one loss: its training curves and its confusion matrix.

In:  the training histories as one long table (`lossbench.figures.read_histories`) and the
     per-run evaluation dictionaries (`lossbench.evaluate`).
Out: matplotlib figures (`curves_figure`, `confusion_figure`) that the figures stage saves as
     `per_loss/curves_<loss>.png` and `per_loss/confusion_<loss>.png`, and the summed
     confusion matrix they show (`summed_confusion`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lossbench.presentation.figure_style import (
    ACCURACY_UNIT,
    LOSS_UNIT,
    draw_mean_band,
    epoch_axis,
    new_figure,
    percent_axis,
    plain_numbers,
)
from lossbench.presentation.loss_colours import loss_colour

# The paper drew training in red and validation in blue; here a colour always means a loss
# (lossbench.presentation.loss_colours), so the splits differ by line style instead.
SPLIT_STYLES = {"training": "--", "validation": "-"}


def curves_figure(histories, loss: str):
    """Training and validation loss and accuracy per epoch of one loss (paper Figs. 4-6):
    the mean over seeds with a ±1 SD band, one legend beside both panels."""
    frame = histories[histories["loss"] == loss]
    seed_count = frame["seed"].nunique()
    validation_data = sorted(set(frame["validation_data"]))
    figure, axes = new_figure(12, 4.6, 1, 2)
    labels = {"training": "training (augmented batches, as Keras logs them)",
              "validation": f"validation ({', '.join(validation_data)} set)"}
    for axis, metric, unit in zip(axes, ("loss", "accuracy"), (LOSS_UNIT, ACCURACY_UNIT)):
        for split, style in SPLIT_STYLES.items():
            draw_mean_band(axis, frame[(frame["metric"] == metric) & (frame["split"] == split)],
                           labels[split], loss_colour(loss), linestyle=style)
        epoch_axis(axis)
        axis.set_ylabel(f"{metric} ({unit})")
        axis.set_title(f"{loss}: {metric}")
        axis.grid(alpha=0.3)
    plain_numbers(axes[0])
    percent_axis(axes[1])
    title = f"{loss}: mean over {seed_count} seeds, band: ±1 SD" if seed_count > 1 else f"{loss}: one seed"
    diverged = frame.dropna(subset=["diverged_epoch"]).groupby("seed")["diverged_epoch"].first()
    if len(diverged):
        # After a divergence the mean runs over the remaining seeds only; the title says so.
        title += "; diverged: " + ", ".join(
            f"seed {seed} at epoch {int(epoch)}" for seed, epoch in diverged.items())
    figure.suptitle(title)
    handles, texts = axes[0].get_legend_handles_labels()
    figure.legend(handles, texts, loc="outside lower center", ncols=2)
    return figure


def summed_confusion(runs: Sequence[dict], loss: str) -> tuple[np.ndarray, list[str], int]:
    """(confusion matrix summed over the loss's runs, class names, number of runs)."""
    selected = [run for run in runs if run["loss"] == loss and run.get("confusion_matrix")]
    if not selected:
        return np.zeros((0, 0), dtype=np.int64), [], 0
    total = np.sum([np.asarray(run["confusion_matrix"], dtype=np.int64) for run in selected], axis=0)
    names = selected[0].get("class_names") or [str(index) for index in range(total.shape[0])]
    return total, list(names), len(selected)


def confusion_figure(runs: Sequence[dict], loss: str):
    """The loss's test confusion matrix summed over seeds, each row divided by its total.

    Sized by the number of classes up to the figure budget (`lossbench.presentation.figure_style`);
    cells are annotated up to 20 classes, past which the numbers would not be legible.
    """
    import seaborn

    matrix, names, run_count = summed_confusion(runs, loss)
    row_totals = matrix.sum(axis=1, keepdims=True)
    # A row without any finite prediction (all its runs diverged) stays zero instead of NaN.
    fractions = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)
    size = min(13.0, max(6.0, 0.55 * len(names) + 2.5))
    figure, axis = new_figure(size + 1.2, size)
    seaborn.heatmap(fractions, annot=len(names) <= 20, fmt=".2f", cmap="Blues", vmin=0, vmax=1,
                    xticklabels=names, yticklabels=names, square=True, ax=axis,
                    annot_kws={"fontsize": "small"},
                    cbar_kws={"label": "share of the true class's test images", "shrink": 0.8})
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.tick_params(axis="x", labelrotation=45)
    axis.tick_params(axis="y", labelrotation=0)
    for label in axis.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    unscored = sum(run.get("non_finite_predictions", 0) for run in runs if run["loss"] == loss)
    note = f"\n{unscored} images without a finite prediction left out" if unscored else ""
    axis.set_title(f"{loss}: test confusion matrix, summed over {run_count} seed(s){note}")
    return figure
