"""The report's results: three tables of at most seven columns, each with a note under it.

In:  a summary from `lossbench compare`, the paper's reported accuracies (`report.paper`) and
     the validated params (`model.width`, `evaluate.collapse_share`).
Out: `results_tables`, the Markdown lines of
     - test accuracy against the paper: runs, test accuracy with its interval, runs above
       chance, the paper's validation accuracy and the difference, the gradient scale at
       initialisation (the losses ranked, best first);
     - fit to the training data: training accuracy measured on un-augmented training images,
       the gap to test accuracy, Keras's running accuracy on augmented batches and the
       paper's figure, which was that running accuracy, with the difference;
     - convergence and failed runs: best validation accuracy and its epoch, epochs to the
       highest convergence threshold, training time, collapsed runs and the accuracy without
       them, runs with a dead final layer;
     - and, when `lossbench.core.metric_registry` holds metrics beyond the study's own, a
       "Further metrics" table: a row per metric, its better direction, the best loss and
       every loss's mean.
     Each fits a screen; the rows of the first three are in ranking order.

The differences to the paper are given only for a study at the paper's scale
(`paper_setup.paper_scale_gaps`); otherwise their cells say "not comparable".
"""

from __future__ import annotations

from lossbench.core.metric_registry import MetricSpec, report_metrics
from lossbench.report.findings import ranked_losses
from lossbench.report.findings_runs import collapse_share, convergence_key
from lossbench.report.paper_setup import PAPER_EPOCHS, not_comparable_reason, paper_scale_gaps
from lossbench.report.text import (
    MISSING,
    accuracy_with_count,
    accuracy_with_interval,
    duration,
    percent,
    points,
    scale,
)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows]


def paper_difference(ours: float | None, theirs: float | None, gaps: list[str]) -> str:
    """Our accuracy minus the paper's, "not comparable" for a study below the paper's scale."""
    if ours is None or theirs is None:
        return MISSING
    return "not comparable" if gaps else points(ours - theirs)


def mean_of(entry: dict, name: str) -> float | None:
    """The mean of the summary statistic `name` of a loss, None where the summary has none."""
    return (entry.get(name) or {}).get("mean")


def table_order(summary: dict) -> list[str]:
    """The losses ranked by mean test accuracy, then those without one."""
    ranking = ranked_losses(summary)
    return ranking + [loss for loss in summary["losses"] if loss not in ranking]


# ---------------------------------------------------------------------------------------------
# Test accuracy against the paper.
# ---------------------------------------------------------------------------------------------


def accuracy_row(loss: str, entry: dict, reported: dict, gaps: list[str]) -> list[str]:
    """One loss's test accuracy, runs above chance, the paper's figure, the gradient scale."""
    above = entry.get("above_chance_runs")
    gradient = entry.get("initial_output_gradient_scale") or {}
    return [
        f"`{loss}`",
        str(entry["runs"]),
        accuracy_with_interval(entry["test_accuracy"]),
        MISSING if above is None else f"{above} of {entry['runs']}",
        percent(reported.get("validation_accuracy"), 0),
        paper_difference(entry["test_accuracy"]["mean"], reported.get("validation_accuracy"), gaps),
        scale(gradient.get("mean")),
    ]


def accuracy_table(summary: dict, paper: dict, gaps: list[str], learning_rate=None) -> list[str]:
    """Test accuracy per loss, ranked, beside the paper's, with its note (`learning_rate`:
    params.yaml's train.learning_rate, a number or "tuned")."""
    level = summary["confidence_level"]
    header = ["Loss", "Runs", f"Test accuracy (± {percent(level, 0)} CI)", "Runs above chance",
              "Paper val. accuracy", "Δ test − paper", "Gradient scale at init"]
    rows = [accuracy_row(loss, summary["losses"][loss], paper.get(loss) or {}, gaps)
            for loss in table_order(summary)]
    note = (
        f"Test accuracy: the final model's, mean over seeds ± the half-width of the {percent(level, 0)} "
        "Student-t interval, in percentage points (no interval with one seed; an interval "
        "reaching past 0 or 100 % is clipped and shown by its ends). Runs above chance: runs "
        "whose correct test images beat 1 / classes by an exact one-sided binomial test at "
        f"α = {summary.get('alpha', 1.0 - level):.2g}. Paper: its final validation accuracy after "
        f"{PAPER_EPOCHS} epochs (Section 4), measured on the test set, so compared with our test "
        "accuracy; Δ in percentage points"
        + (f"; here {not_comparable_reason(gaps)}, so the paper's figures are shown for reference "
           "only" if gaps else "")
        + ". Gradient scale at init: mean |dL/d output| of the untrained model, mean over seeds; "
        + ("each loss trained at its own tuned learning rate (see Learning rates)."
           if learning_rate == "tuned" else
           "all losses share one learning rate, so it sets the size of their first steps.")
    )
    return table(header, rows) + ["", note]


# ---------------------------------------------------------------------------------------------
# Fit to the training data.
# ---------------------------------------------------------------------------------------------


def fit_row(loss: str, entry: dict, reported: dict, gaps: list[str]) -> list[str]:
    """One loss's measured training accuracy and gap, and the running accuracy beside the paper's."""
    gap = mean_of(entry, "generalization_gap")
    running = mean_of(entry, "running_accuracy")
    return [
        f"`{loss}`",
        percent(mean_of(entry, "train_accuracy")),
        MISSING if gap is None else points(gap),
        percent(running),
        percent(reported.get("train_accuracy"), 0),
        paper_difference(running, reported.get("train_accuracy"), gaps),
    ]


def fit_table(summary: dict, paper: dict, gaps: list[str]) -> list[str]:
    """Training accuracy measured cleanly, and the running accuracy the paper reported."""
    header = ["Loss", "Train accuracy (no augmentation)", "Gap train − test",
              "Running accuracy on augmented batches", "Paper train accuracy (running)", "Δ running − paper"]
    rows = [fit_row(loss, summary["losses"][loss], paper.get(loss) or {}, gaps)
            for loss in table_order(summary)]
    images = [count for count in summary.get("setup", {}).get("train_accuracy_images", []) if count]
    sample = " and ".join(f"{count:,}" for count in images) if images else "a fixed sample of"
    note = (
        f"Train accuracy: the final model's accuracy on {sample} training images it trained on, "
        "predicted without augmentation (`evaluate.train_sample`), mean over seeds; the gap is "
        "that minus test accuracy, both measured the same way. Running accuracy on augmented "
        "batches: what Keras logged as accuracy during the last epoch, averaged over batches of "
        "augmented images while the weights still changed; it is not the model's training "
        "accuracy. The paper's \"training accuracy\" was that running accuracy (Keras 1), so it "
        "is compared with ours."
    )
    return table(header, rows) + ["", note]


# ---------------------------------------------------------------------------------------------
# Convergence and failed runs.
# ---------------------------------------------------------------------------------------------


def epochs_to_threshold(entry: dict, key: str | None) -> str:
    """Mean epoch at which a loss's runs reached the threshold `key`, and how many did."""
    if key is None or key not in entry.get("convergence", {}):
        return MISSING
    reached = entry["convergence"][key]
    if reached["reached"] == 0:
        return "never"
    text = f"{reached['epoch']['mean']:.1f}"
    if reached["reached"] < entry["runs"]:
        text += f" ({reached['reached']}/{entry['runs']} runs)"
    return text


def convergence_row(loss: str, entry: dict, key: str | None) -> list[str]:
    """One loss's best validation accuracy, speed, time and failed runs."""
    best = mean_of(entry, "best_val_accuracy")
    best_epoch = mean_of(entry, "best_val_epoch")
    collapsed = entry.get("collapsed_runs")
    dead = entry.get("dead_final_layer_runs")
    without = entry.get("test_accuracy_not_collapsed") or {}
    return [
        f"`{loss}`",
        MISSING if best is None else percent(best) + ("" if best_epoch is None else f" ({best_epoch:.0f})"),
        epochs_to_threshold(entry, key),
        duration(mean_of(entry, "train_seconds")),
        MISSING if collapsed is None else f"{collapsed} of {entry['runs']}",
        accuracy_with_count(without) if without.get("mean") is not None else MISSING,
        dead_text(dead, entry.get("dead_final_layer_unknown_runs") or 0, entry["runs"]),
    ]


def dead_text(dead: int | None, unknown: int, runs: int) -> str:
    """"d of n", with the runs whose metrics do not say, never counted as alive."""
    if dead is None or unknown == runs:
        return "unknown"
    return f"{dead} of {runs}" + (f" ({unknown} unknown)" if unknown else "")


def convergence_table(summary: dict, params: dict) -> list[str]:
    """How fast each loss learned, and how many of its runs failed."""
    key = convergence_key(summary)
    header = ["Loss", "Best val. accuracy (epoch)",
              f"Epochs to {key.replace('%', ' %')} val." if key else "Epochs to threshold",
              "Training time", "Collapsed runs", "Test accuracy without collapsed runs",
              "Dead final layer"]
    rows = [convergence_row(loss, summary["losses"][loss], key) for loss in table_order(summary)]
    note = (
        "Best val. accuracy and epochs: means over seeds; training time: mean per run. A run is "
        "collapsed when it predicted one class for at least "
        f"{percent(collapse_share(params), 0)} of the test images; the test accuracy in the first "
        "table includes such runs, the column here leaves them out. Dead final layer: runs in "
        "which nearly all of conv_9's activations on the test images are zero (see the "
        "conclusions)."
    )
    return table(header, rows) + ["", note]


# ---------------------------------------------------------------------------------------------
# Further metrics: those registered in lossbench.core.metric_registry beyond the study's own.
# ---------------------------------------------------------------------------------------------


def number(value: float | None) -> str:
    """A metric's value of any size to four significant digits: 0.012345 -> "0.01235"."""
    return MISSING if value is None else f"{value:.4g}"


def further_metric_row(spec: MetricSpec, summary: dict, order: list[str]) -> list[str]:
    """One registered metric: which way is better, the best loss and every loss's mean."""
    means = {loss: mean_of(summary["losses"][loss], spec.name) for loss in order}
    known = {loss: value for loss, value in means.items() if value is not None}
    best = MISSING
    if known and spec.higher_is_better is not None:
        pick = max if spec.higher_is_better else min
        best = f"`{pick(known, key=known.get)}`"
    direction = {True: "higher", False: "lower", None: "neither"}[spec.higher_is_better]
    return [spec.label, f"`{spec.name}`", direction, best,
            ", ".join(f"`{loss}` {number(value)}" for loss, value in means.items())]


def further_metrics_table(summary: dict) -> list[str]:
    """A row per registered metric the other tables do not show (none: no lines at all)."""
    specs = report_metrics()
    if not specs:
        return []
    order = table_order(summary)
    header = ["Metric", "Key", "Better", "Best loss", "Mean over seeds, per loss (ranking order)"]
    note = ("Metrics registered in `lossbench.core.metric_registry` beyond the study's own: "
            "evaluate computes them per run, compare summarises them over seeds "
            "(`reports/summary.json` holds their intervals).")
    return ["", "### Further metrics", "",
            *table(header, [further_metric_row(spec, summary, order) for spec in specs]), "", note]


def results_tables(summary: dict, paper: dict, params: dict | None = None) -> list[str]:
    """The results tables, each under a heading of its own, with their notes."""
    params = params or {}
    gaps = paper_scale_gaps(summary, params)
    return [
        "### Test accuracy", "",
        *accuracy_table(summary, paper, gaps, params.get("train", {}).get("learning_rate")), "",
        "### Fit to the training data", "", *fit_table(summary, paper, gaps), "",
        "### Convergence and failed runs", "", *convergence_table(summary, params),
        *further_metrics_table(summary),
    ]
