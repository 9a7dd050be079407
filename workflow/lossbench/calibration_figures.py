"""Reliability diagrams: one figure per loss, rendered by the figures stage.

In:  the per-run evaluation dictionaries (`lossbench.evaluate`), whose `calibration` holds the
     test images' reliability table per confidence bin before and after temperature scaling
     (`lossbench.calibration.reliability`: images, mean confidence and accuracy per bin).
Out: `reliability_<loss>.png` in the figures directory (so `dvc plots show` shows it with
     the other PNGs, and Snakemake's report files it under "calibration"): two columns,
     before and after temperature scaling. Top: accuracy per bin of top-label confidence
     (bars) against the diagonal of perfect calibration, the gap to each bin's mean confidence
     shaded (red: over-confident, below the diagonal); bottom: the share of test images per
     bin. The loss's runs are pooled: a bin's accuracy and confidence are averaged over all
     its images of all seeds. The title gives the ECE and temperature, mean over seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

DOTS_PER_INCH = 120
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
    top.set_ylabel("accuracy")
    top.set_title(title)
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("top-label confidence")
    bottom.set_ylabel("share of images")


def plot_reliability(runs: Sequence[dict], loss: str, path: Path) -> bool:
    """Write the loss's reliability diagram to `path`; False (nothing written) without data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    tables = [pooled_reliability(runs, loss, key) for key, _, _ in PANELS]
    if tables[0] is None:
        return False
    figure, axes = pyplot.subplots(2, 2, figsize=(11, 6.5), sharex="col",
                                   gridspec_kw={"height_ratios": [3, 1]})
    for column, ((_, when, field), table) in enumerate(zip(PANELS, tables)):
        _draw_panel(axes[:, column], table, f"{when}: ECE {_mean_text(runs, loss, field)}")
    source = next((run["calibration"]["probabilities"] for run in runs
                   if run["loss"] == loss and (run.get("calibration") or {}).get("probabilities")), "")
    figure.suptitle(
        f"{loss}: reliability on the test set, {tables[0]['runs']} seed(s) pooled; temperature "
        f"{_mean_text(runs, loss, 'temperature')} (mean)\nprobabilities: {source}")
    figure.tight_layout()
    # No creation time or software version is stored, so reruns give identical files.
    figure.savefig(path, dpi=DOTS_PER_INCH, metadata={"Software": None})
    pyplot.close(figure)
    return True


def plot_reliability_diagrams(runs: Sequence[dict], losses: Sequence[str], output_dir: Path) -> list[Path]:
    """`reliability_<loss>.png` for every loss with a reliability table; the paths written."""
    written = []
    for loss in losses:
        path = Path(output_dir) / f"reliability_{loss}.png"
        if plot_reliability(runs, loss, path):
            written.append(path)
    return written
