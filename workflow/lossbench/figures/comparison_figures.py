"""The figures that set the losses side by side: their shapes, validation accuracy per epoch
and final test accuracy.

In:  the loss registry (`lossbench.core.losses`), the training histories as one long table
     (`lossbench.figures.read_histories`), the summary of `lossbench compare` and the per-run
     evaluation dictionaries (`lossbench.evaluate`).
Out: matplotlib figures that the figures stage saves: `loss_shapes_figure`
     (`loss_shapes.png`, from the numbers of `loss_shape_curves`), `validation_accuracy_figure`
     (`validation_accuracy.png`) and `final_accuracy_figure` (`test_accuracy.png`).

`loss_shape_curves` draws the losses as functions of one quantity, as in the paper's Fig. 1,
by calling the registry's loss functions on constructed outputs for one image:
(a) the softmax losses (the paper's Keras 1 versions) against the true class's probability
    p_true, the other classes sharing 1 - p_true equally;
(b) the raw-score losses against the true class's score s_true, every other score fixed at -1
    (where a one-vs-all hinge is satisfied for it);
(c) the raw-score losses against the margin s_true - max_{k != true} s_k, every other score
    fixed at 0.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lossbench.presentation.figure_style import (
    ACCURACY_UNIT,
    draw_mean_band,
    epoch_axis,
    fit_range,
    legend_beside,
    new_figure,
    percent_axis,
    plain_numbers,
)
from lossbench.presentation.loss_colours import loss_colour


def loss_shape_curves(num_classes: int = 10, points: int = 301) -> dict[str, dict[str, Any]]:
    """The three panels of `loss_shapes.png` as numbers, from the registry's functions.

    Returns {panel: {"x": array, "xlabel": str, "title": str, "curves": {loss name: array}}}
    for panels "probability", "score" and "margin" (see the module docstring).
    """
    from keras import ops

    from lossbench.core.losses import LOSSES

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


def loss_shapes_figure(num_classes: int = 10, losses: Sequence[str] | None = None):
    """The panels of `loss_shape_curves` that draw any of `losses` (every registered loss when
    None: the figures stage passes the trained ones), each with its legend below it."""
    panels = []
    for panel in loss_shape_curves(num_classes).values():
        drawn = [name for name in panel["curves"] if losses is None or name in losses]
        if drawn:
            panels.append((panel, drawn))
    figure, axes = new_figure(max(7.0, 4.7 * len(panels)), 5.6, 1, max(1, len(panels)), squeeze=False)
    for axis, (panel, drawn) in zip(axes[0], panels):
        for name in drawn:
            axis.plot(panel["x"], panel["curves"][name], label=name, linewidth=2, color=loss_colour(name))
        axis.set_xlabel(panel["xlabel"])
        axis.set_ylabel("loss of one image")
        axis.set_title(panel["title"])
        axis.grid(alpha=0.3)
        plain_numbers(axis)
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, fontsize="small")
    if not panels:
        axes[0][0].set_axis_off()
        axes[0][0].text(0.5, 0.5, "no registered loss to draw", ha="center", va="center")
    figure.suptitle(f"The loss of one image under each loss function, {num_classes} classes")
    return figure


def validation_accuracy_figure(histories, losses: Sequence[str]):
    """Every loss's validation accuracy per epoch: the mean over seeds with a ±1 SD band."""
    frame = histories[(histories["split"] == "validation") & (histories["metric"] == "accuracy")]
    seed_count = int(frame.groupby("loss")["seed"].nunique().max()) if len(frame) else 0
    figure, axis = new_figure(11, 5.5)
    for loss in losses:
        draw_mean_band(axis, frame[frame["loss"] == loss], loss, loss_colour(loss))
    epoch_axis(axis)
    percent_axis(axis)
    validation_data = ", ".join(sorted(set(frame["validation_data"]))) or "validation"
    axis.set_ylabel(f"validation accuracy ({ACCURACY_UNIT} of the {validation_data} set)")
    axis.set_title("Validation accuracy per epoch (mean over seeds"
                   + (", band: ±1 SD)" if seed_count > 1 else ")"))
    axis.grid(alpha=0.3)
    legend_beside(axis, title="loss")
    return figure


def final_accuracy_figure(summary: dict, runs: Sequence[dict]):
    """Each loss's final test accuracy: the mean with its confidence interval (from the
    summary) and one dot per seed beside it; the dashed line is chance. The y axis spans the
    values shown, not 0-100 %."""
    losses = list(summary["losses"])
    level = summary["confidence_level"]
    figure, axis = new_figure(min(14.0, max(8.0, 1.4 * len(losses) + 3.5)), 5)
    shown = []
    for position, loss in enumerate(losses):
        accuracy = summary["losses"][loss]["test_accuracy"]
        if accuracy["mean"] is None:
            continue
        error = None
        if accuracy["ci_low"] is not None:
            error = [[accuracy["mean"] - accuracy["ci_low"]], [accuracy["ci_high"] - accuracy["mean"]]]
            shown += [accuracy["ci_low"], accuracy["ci_high"]]
        axis.errorbar(position, accuracy["mean"], yerr=error, fmt="o", color="black",
                      markersize=8, capsize=8, linewidth=2, zorder=3,
                      label=f"mean, {100 * level:g} % t interval" if position == 0 else None)
        seeds = [run["test_accuracy"] for run in runs
                 if run["loss"] == loss and run.get("test_accuracy") is not None]
        # A small fixed horizontal offset keeps each seed's dot visible beside the mean.
        offsets = np.linspace(-0.1, 0.1, len(seeds)) if len(seeds) > 1 else np.zeros(len(seeds))
        axis.scatter(position + 0.25 + offsets, seeds, color=loss_colour(loss), alpha=0.8, s=25, zorder=2,
                     label="one seed" if position == 0 else None)
        shown += [accuracy["mean"], *seeds]
    class_count = next((len(run["class_names"]) for run in runs if run.get("class_names")), None)
    if class_count:
        axis.axhline(1.0 / class_count, color="grey", linestyle="--", linewidth=1, label="chance")
        shown.append(1.0 / class_count)
    # Accuracies lie in [0, 1]; a t interval of a few seeds can reach past that, and its exact
    # ends are in the report's table.
    axis.set_ylim(*fit_range(shown))
    axis.set_xlim(-0.5, len(losses) - 0.4)
    axis.set_xticks(range(len(losses)), losses, rotation=20, ha="right")
    percent_axis(axis)
    axis.set_ylabel(f"test accuracy ({ACCURACY_UNIT})")
    axis.set_title("Final test accuracy per loss")
    axis.grid(axis="y", alpha=0.3)
    legend_beside(axis)
    return figure
