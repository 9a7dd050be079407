"""Reliability diagrams: one figure per loss, rendered by the figures stage.

In:  the per-run evaluation dictionaries (`lossbench.evaluate`), whose `calibration` holds the
     test images' reliability table per confidence bin before and after temperature scaling
     (`lossbench.evaluate.calibration.reliability`: images, mean confidence and accuracy per bin).
Out: `reliability_figure`, saved by the figures stage as `per_loss/reliability_<loss>.png`
     (so `dvc plots show` shows it with the other per-loss PNGs, and Snakemake's report files
     it under "calibration"): two columns, before and after temperature scaling. Top:
     accuracy per bin of top-label confidence (bars) against the diagonal of perfect
     calibration, the gap to each bin's mean confidence shaded (red: over-confident, below the
     diagonal); bottom: the share of test images per bin; one legend below all panels. The
     loss's runs are pooled: a bin's accuracy and confidence are averaged over all its images
     of all seeds. The title gives the ECE and temperature, mean over seeds.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lossbench.presentation.figure_style import new_figure, percent_axis

PANELS = (("reliability", "before temperature scaling", "test_ece"),
          ("reliability_after_temperature", "after temperature scaling", "test_ece_after_temperature"))


def pooled_reliability(runs: Sequence[dict], loss: str, key: str = "reliability") -> dict | None:
    """The loss's reliability table pooled over its runs: per bin the images, and accuracy
    and mean confidence over all of them (NaN for an empty bin); None without any table."""
    tables = [(run.get("calibration") or {}).get(key) for run in runs if run["loss"] == loss]
    tables = [table for table in tables if table]
    if not tables:
        return None
    counts = np.sum([table["count"] for table in tables], axis=0).astype(np.float64)

    def pooled(field: str) -> np.ndarray:
        weighted = np.sum([[0.0 if value is None else value * count
                            for value, count in zip(table[field], table["count"])] for table in tables], axis=0)
        return np.divide(weighted, counts, out=np.full(counts.shape, np.nan), where=counts > 0)

    return {"count": counts, "accuracy": pooled("accuracy"), "confidence": pooled("confidence"),
            "runs": len(tables)}


def _mean_text(runs: Sequence[dict], loss: str, field: str) -> str:
    values = [run[field] for run in runs if run["loss"] == loss and run.get(field) is not None]
    return "n/a" if not values else f"{np.mean(values):.3f}"


def _draw_panel(axes, table: dict | None, title: str) -> None:
    top, bottom = axes
    bins = 15 if table is None else len(table["count"])
    edges = np.linspace(0.0, 1.0, bins + 1)
    width = 1.0 / bins
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    if table is None:
        top.text(0.5, 0.5, "no temperature fitted", ha="center", va="center")
    else:
        filled = table["count"] > 0
        accuracy = np.where(filled, table["accuracy"], 0.0)
        confidence = np.where(filled, table["confidence"], 0.0)
        top.bar(edges[:-1], accuracy, width=width, align="edge", color="tab:blue",
                edgecolor="black", linewidth=0.5, label="accuracy")
        gap = confidence - accuracy
        top.bar(edges[:-1], np.abs(gap), bottom=np.minimum(accuracy, confidence), width=width,
                align="edge", color=np.where(gap > 0, "tab:red", "tab:green"), alpha=0.35)
        for colour, text in (("tab:red", "over-confident: mean confidence above"),
                             ("tab:green", "under-confident: mean confidence below")):
            top.bar([0], [0], color=colour, alpha=0.35, label=text)
        bottom.bar(edges[:-1], table["count"] / table["count"].sum(), width=width, align="edge",
                   color="grey")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    # Accuracy as a fraction, like the confidence on the x axis: the diagonal is y = x.
    top.set_ylabel("accuracy in the bin (fraction correct)")
    top.set_title(title)
    top.grid(alpha=0.3)
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("top-label confidence (the predicted class's probability)")
    bottom.set_ylabel("share of images (%)")
    percent_axis(bottom)


def reliability_figure(runs: Sequence[dict], loss: str):
    """The loss's reliability diagram (module docstring), or None without a reliability table."""
    tables = [pooled_reliability(runs, loss, key) for key, _, _ in PANELS]
    if tables[0] is None:
        return None
    figure, axes = new_figure(11, 6.8, 2, 2, sharex="col", gridspec_kw={"height_ratios": [3, 1]})
    for column, ((_, when, field), table) in enumerate(zip(PANELS, tables)):
        _draw_panel(axes[:, column], table, f"{when}: ECE {_mean_text(runs, loss, field)}")
    source = next((run["calibration"]["probabilities"] for run in runs
                   if run["loss"] == loss and (run.get("calibration") or {}).get("probabilities")), "")
    figure.suptitle(
        f"{loss}: reliability on the test set, {tables[0]['runs']} seed(s) pooled; temperature "
        f"{_mean_text(runs, loss, 'temperature')} (mean)\nprobabilities: {source}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    return figure
