"""How every figure of lossbench looks and is written: one size budget, plain numbers, legends
beside the data, integer epochs.

In:  matplotlib figures and axes built by `lossbench.figures.comparison_figures`, `loss_figures`,
     `calibration_figures` and `tuning_report`.
Out: `new_figure` (a figure laid out by matplotlib's constrained layout, which keeps legends
     and titles placed outside the axes inside the picture), `save` (a PNG of at most
     `MAX_WIDTH_PIXELS` by `MAX_SIDE_PIXELS`, byte-identical on a rerun), and the axis helpers
     `epoch_axis`, `plain_numbers`, `percent_axis` and `legend_beside`.

Why these rules: a reviewer reads the figures at their natural size in a browser
(`dvc plots show`, Snakemake's report, the report's Markdown), so a figure must fit a window
1,400 pixels wide without scaling; matplotlib's default tick formatter writes an axis whose
values differ only in the sixth decimal (the paper's hinge loss, 0.99999...) as an offset
("1e-5+9.9e-1"), which no one reads; epochs are whole numbers; and a legend inside the axes
sooner or later covers a curve or a point.
"""

from __future__ import annotations

from pathlib import Path

DOTS_PER_INCH = 100
# A reviewer's browser window (1,400 pixels) holds every figure at its natural size; no side
# passes 2,000 pixels, however many losses or classes a study has.
MAX_WIDTH_PIXELS = 1400
MAX_SIDE_PIXELS = 2000
# The axis titles, in words and units, shared by every figure that plots these quantities.
EPOCH_LABEL = "epoch (full passes over the training set)"
ACCURACY_UNIT = "% of images"
LOSS_UNIT = "mean over images"


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_figure(width: float, height: float, rows: int = 1, columns: int = 1, **options):
    """(figure, axes) of `width` x `height` inches, laid out by constrained layout.

    The size is shrunk in proportion when it would pass `MAX_WIDTH_PIXELS` or
    `MAX_SIDE_PIXELS`, so a caller may size by content (classes, losses) without a check.
    `options` go to `pyplot.subplots` (sharex, gridspec_kw, squeeze, ...).
    """
    scale = min(1.0, MAX_WIDTH_PIXELS / (width * DOTS_PER_INCH),
                MAX_SIDE_PIXELS / (max(width, height) * DOTS_PER_INCH))
    return pyplot().subplots(rows, columns, figsize=(width * scale, height * scale),
                             layout="constrained", **options)


def save(figure, path: Path) -> Path:
    """Write `figure` as a PNG at `DOTS_PER_INCH` and close it; return `path`.

    No creation time or software version is stored, so reruns give identical files.
    """
    width, height = figure.get_size_inches() * DOTS_PER_INCH
    if width > MAX_WIDTH_PIXELS + 0.5 or max(width, height) > MAX_SIDE_PIXELS + 0.5:
        raise ValueError(f"{Path(path).name} would be {width:.0f} x {height:.0f} pixels; figures "
                         f"stay within {MAX_WIDTH_PIXELS} x {MAX_SIDE_PIXELS} (use new_figure).")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DOTS_PER_INCH, metadata={"Software": None})
    pyplot().close(figure)
    return path


def epoch_axis(axis) -> None:
    """Epochs on the x axis: whole-number ticks only, titled in words."""
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel(EPOCH_LABEL)


def plain_numbers(axis) -> None:
    """Plain decimals on the y axis: no offset ("1e-5+9.9e-1") and no power-of-ten factor,
    with as many decimals as the ticks need to differ (0.999990, 0.999992, ...)."""
    from matplotlib.ticker import ScalarFormatter

    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    axis.yaxis.set_major_formatter(formatter)


def percent_axis(axis) -> None:
    """Fractions on the y axis written as percentages (0.25 -> "25%")."""
    from matplotlib.ticker import PercentFormatter

    axis.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))


def fit_range(values, low: float = 0.0, high: float = 1.0, margin: float = 0.08,
              least_span: float = 0.05) -> tuple[float, float]:
    """Axis limits around `values` (NaN ignored), `margin` of their span beyond each end and at
    least `least_span` wide, kept within [low, high]; (low, high) without any value."""
    import numpy as np

    values = np.asarray([value for value in values if value is not None], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return low, high
    bottom, top = float(values.min()), float(values.max())
    pad = max(margin * (top - bottom), (least_span - (top - bottom)) / 2, 0.0)
    return max(low, bottom - pad), min(high, top + pad)


def legend_beside(axis, title: str | None = None, **options):
    """The axis's legend to its right, outside the plotting area, so it never covers data."""
    return axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                       title=title, **options)


def draw_mean_band(axis, frame, label: str, colour=None, linestyle: str = "-") -> None:
    """One line (`colour`, `linestyle`) of `frame`'s mean `value` per `epoch` (points marked),
    with a band of ±1 standard deviation over the rows of each epoch where there are several
    (the seeds).
    Missing values (a diverged run's epochs) are left out of the mean."""
    statistics = frame.dropna(subset=["value"]).groupby("epoch")["value"].agg(["mean", "std", "count"])
    if statistics.empty:
        return
    line, = axis.plot(statistics.index, statistics["mean"], marker="o", markersize=3,
                      linewidth=1.8, label=label, color=colour, linestyle=linestyle)
    spread = statistics[statistics["count"] > 1]
    if len(spread):
        axis.fill_between(spread.index, spread["mean"] - spread["std"], spread["mean"] + spread["std"],
                          color=line.get_color(), alpha=0.2, linewidth=0)
