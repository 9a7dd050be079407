"""The figures stage: PNGs that a reviewer reads at their natural size, the per-epoch table and
the directory written whole, from a synthetic study of 3 losses x 3 seeds (tests/studies.py).

What "reads" means here, checked on every figure the stage draws (`figures.study_figures`),
for the synthetic study and for a tiny one whose hinge loss moves in the sixth decimal: at
most 1,400 x 2,000 pixels; no offset or power-of-ten text on any axis; whole-number epoch
ticks; axis titles in words, not column names; every legend outside every axes that holds
data (so it covers none); and the test-accuracy axis spanning the values, not 0-100 %.
"""

import json

import numpy as np
import pytest

from lossbench import figures
from lossbench.figures import comparison_figures, loss_figures
from lossbench.presentation.figure_style import EPOCH_LABEL, MAX_SIDE_PIXELS, MAX_WIDTH_PIXELS
from studies import CLASS_NAMES, EPOCHS, PNG_SIGNATURE, STUDY, write_study

PER_LOSS = {f"per_loss/{kind}_{loss}.png" for kind in ("curves", "confusion", "reliability") for loss in STUDY}
COMPARISON = {"loss_shapes.png", "validation_accuracy.png", "test_accuracy.png"}
# Names a figure must not use as an axis title: table columns, not words with units.
RAW_NAMES = {"value", "loss", "accuracy", "val_accuracy", "val_loss", "train_accuracy", "train_loss", "epoch", ""}


def test_figures_are_valid_pngs_that_fit_a_browser_window(rendered):
    from PIL import Image

    root, _, _, _, output_dir = rendered
    written = {path.relative_to(output_dir).as_posix() for path in output_dir.rglob("*.png")}
    assert written == COMPARISON | PER_LOSS
    for path in output_dir.rglob("*.png"):
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            width, height = image.size
        assert 300 < width <= MAX_WIDTH_PIXELS and 200 < height <= MAX_SIDE_PIXELS, (path.name, width, height)
    assert not [path for path in output_dir.parent.iterdir() if path.name.startswith(".")]


def data_axes(figure) -> list:
    """The axes that hold data (lines, points, bars, bands, a heatmap), not a colour bar."""
    return [axis for axis in figure.axes
            if (axis.lines or axis.collections or axis.patches or axis.images) and axis.get_label() != "<colorbar>"]


def reading_problems(name: str, figure) -> list[str]:
    """What keeps a reviewer from reading `figure` (module docstring), as sentences."""
    from matplotlib.legend import Legend

    problems = []
    width, height = figure.get_size_inches() * figure.dpi
    if width > MAX_WIDTH_PIXELS + 0.5 or max(width, height) > MAX_SIDE_PIXELS + 0.5:
        problems.append(f"{name}: {width:.0f} x {height:.0f} pixels")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    axes = data_axes(figure)
    for axis in axes:
        for side in (axis.xaxis, axis.yaxis):
            if side.get_offset_text().get_text():
                problems.append(f"{name}: offset text {side.get_offset_text().get_text()!r}")
        if axis.get_ylabel() in RAW_NAMES and axis.get_label() != "<colorbar>":
            problems.append(f"{name}: y axis titled {axis.get_ylabel()!r}")
        if axis.get_xlabel() == EPOCH_LABEL:
            low, high = axis.get_xlim()
            ticks = [tick for tick in axis.get_xticks() if low <= tick <= high]
            if not ticks or any(tick != round(tick) for tick in ticks):
                problems.append(f"{name}: epoch ticks {ticks}")
    legends = [child for child in figure.get_children() + [c for a in figure.axes for c in a.get_children()]
               if isinstance(child, Legend)]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for axis in axes:
            if box.overlaps(axis.get_window_extent(renderer)):
                problems.append(f"{name}: a legend lies over the axes {axis.get_title()!r}")
    return problems


def tiny_hinge_study(root):
    """Two losses, one seed, three epochs; the hinge loss changes only in the sixth decimal."""
    summary_path, evaluation_paths, log_dirs = write_study(root, {"hinge": [0.11], "categorical_crossentropy": [0.2]})
    history_path = root / "training" / "hinge-seed0" / "history.json"
    history = json.loads(history_path.read_text())
    history["epochs"] = [dict(record, loss=0.999996 - 2e-6 * index, val_loss=0.999995 - 1.5e-6 * index,
                              epoch=index + 1) for index, record in enumerate(history["epochs"][:3])]
    history_path.write_text(json.dumps(history))
    return summary_path, evaluation_paths, log_dirs


@pytest.mark.parametrize("study", ["synthetic", "tiny hinge"])
def test_every_figure_reads_without_squinting(rendered, tmp_path, study):
    from test_tuning_report import RESULTS

    if study == "synthetic":
        _, summary_path, evaluation_paths, log_dirs, _ = rendered
    else:
        summary_path, evaluation_paths, log_dirs = tiny_hinge_study(tmp_path)
    summary = json.loads(summary_path.read_text())
    runs = [json.loads(path.read_text()) for path in evaluation_paths]
    histories = figures.read_histories(log_dirs)
    problems, names = [], []
    for name, figure in figures.study_figures(summary, runs, histories, RESULTS):
        problems += reading_problems(name, figure)
        names.append(name)
        figures.pyplot().close(figure)
    assert problems == []
    # The comparison figures come first, those of one loss each after them, in their folder.
    assert names[:4] == ["test_accuracy.png", "validation_accuracy.png", "loss_shapes.png",
                         "tuning_learning_rates.png"]
    assert all(name.startswith("per_loss/") for name in names[4:]) and len(names) > 4


def test_the_checks_catch_what_matplotlib_does_by_default():
    """The same hinge curve drawn with matplotlib's defaults fails every check above."""
    pyplot = figures.pyplot()
    figure, axis = pyplot.subplots(figsize=(15, 5), dpi=150)
    axis.plot([1, 1.5, 2, 2.5, 3], [0.999996, 0.999995, 0.999994, 0.999993, 0.999992], label="hinge")
    axis.set_xlabel(EPOCH_LABEL)
    axis.set_ylabel("loss")
    axis.legend(loc="center")
    problems = reading_problems("default", figure)
    pyplot.close(figure)
    assert [problem.split(": ")[1].split(" ")[0] for problem in problems] == [
        "2250", "offset", "y", "epoch", "a"]


def test_the_test_accuracy_axis_fits_the_values():
    """Accuracies of 9-22 %: the axis spans them and chance, not 0-100 %."""
    summary = {"confidence_level": 0.95, "losses": {
        loss: {"test_accuracy": {"mean": mean, "ci_low": mean - 0.03, "ci_high": mean + 0.03}}
        for loss, mean in (("hinge", 0.12), ("squared_hinge", 0.19))}}
    runs = [{"loss": loss, "test_accuracy": value, "class_names": CLASS_NAMES}
            for loss, value in (("hinge", 0.09), ("hinge", 0.15), ("squared_hinge", 0.22))]
    figure = comparison_figures.final_accuracy_figure(summary, runs)
    low, high = figure.axes[0].get_ylim()
    figures.pyplot().close(figure)
    assert 0.05 < low <= 0.09 and 0.22 <= high < 0.3


def test_a_confusion_matrix_of_many_classes_stays_within_the_budget():
    names = [f"class {index}" for index in range(100)]
    runs = [{"loss": "hinge", "class_names": names, "confusion_matrix": np.eye(100, dtype=int).tolist()}]
    figure = loss_figures.confusion_figure(runs, "hinge")
    width, height = figure.get_size_inches() * figure.dpi
    figures.pyplot().close(figure)
    assert width <= MAX_WIDTH_PIXELS and height <= MAX_SIDE_PIXELS


def test_figures_replace_the_directory_whole(rendered):
    _, summary_path, metrics_paths, log_dirs, output_dir = rendered
    (output_dir / "stale.png").write_bytes(b"old")
    figures.run(summary_path, metrics_paths, log_dirs, output_dir)
    assert not (output_dir / "stale.png").exists()
    assert (output_dir / "loss_shapes.png").read_bytes()[:8] == PNG_SIGNATURE
    assert (output_dir / "per_loss" / "curves_hinge.png").read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(FileNotFoundError, match="lossbench train"):
        figures.run(summary_path, metrics_paths, [output_dir.parent / "absent-seed0"], output_dir)
    # The failed call left the previous figures in place and no staging directory behind.
    assert (output_dir / "loss_shapes.png").is_file()
    assert not [path for path in output_dir.parent.iterdir() if path.name.startswith(".")]


def test_loss_shapes_come_from_the_registry():
    panels = comparison_figures.loss_shape_curves(num_classes=10, points=101)
    probability = panels["probability"]["x"]
    assert set(panels["probability"]["curves"]) == {
        "categorical_crossentropy", "hinge", "squared_hinge", "mae", "generalized_cross_entropy"}
    # MAE = 2 (1 - p_true), of which the paper's hinge is 0.9 + 0.05 x for 10 classes.
    assert panels["probability"]["curves"]["mae"] == pytest.approx(2 * (1 - probability), abs=1e-6)
    # The paper's Keras 1 hinge on softmax outputs: 0.9 + 0.1 (1 - p_true) for 10 classes.
    assert panels["probability"]["curves"]["hinge"] == pytest.approx(0.9 + 0.1 * (1 - probability), abs=1e-6)
    assert panels["probability"]["curves"]["categorical_crossentropy"] == pytest.approx(
        -np.log(probability), rel=1e-4, abs=1e-6  # Keras clips p to 1 - 1e-7
    )
    margin = panels["margin"]["x"]
    assert panels["margin"]["curves"]["crammer_singer_hinge"] == pytest.approx(np.maximum(0, 1 - margin), abs=1e-6)
    score = panels["score"]["x"]
    # Other scores at -1 satisfy their one-vs-all hinge: only the true class's term remains.
    assert panels["score"]["curves"]["ova_hinge"] == pytest.approx(np.maximum(0, 1 - score) / 10, abs=1e-6)


def test_histories_table_has_both_splits(rendered):
    _, _, _, log_dirs, _ = rendered
    table = figures.read_histories(log_dirs)
    assert len(table) == len(log_dirs) * EPOCHS * 4
    assert set(table["split"]) == {"training", "validation"}
    assert set(table["loss"]) == set(STUDY)



def test_reliability_pools_the_seeds_bins(rendered):
    from lossbench.figures.calibration_figures import pooled_reliability

    _, _, metrics_paths, _, _ = rendered
    import json

    runs = [json.loads(path.read_text()) for path in metrics_paths]
    table = pooled_reliability(runs, "hinge")
    assert table["runs"] == 3 and table["count"].sum() == 3 * 200
    # Every row claims 0.73; hinge's seeds are right on 53, 56 and 54.5 % of 200 images.
    [filled] = np.flatnonzero(table["count"])
    assert table["confidence"][filled] == pytest.approx(0.73)
    assert table["accuracy"][filled] == pytest.approx((106 + 112 + 109) / 600)
    assert pooled_reliability(runs, "absent") is None


def test_each_loss_keeps_its_colour_and_only_trained_losses_are_drawn(rendered):
    """Issue 32: a loss had one colour in the per-loss figures and another in the comparison
    figure; loss_shapes.png drew losses that were not trained."""
    import matplotlib.colors
    import matplotlib.pyplot as plt

    from lossbench.presentation.loss_colours import loss_colour

    _, _, _, log_dirs, _ = rendered
    histories = figures.read_histories(log_dirs)

    def line_colours(figure):
        return {line.get_label(): matplotlib.colors.to_hex(line.get_color())
                for axis in figure.axes for line in axis.get_lines() if not line.get_label().startswith("_")}

    figure = comparison_figures.validation_accuracy_figure(histories, list(STUDY))
    assert line_colours(figure) == {loss: loss_colour(loss) for loss in STUDY}
    plt.close(figure)
    for loss in STUDY:
        figure = loss_figures.curves_figure(histories, loss)
        assert set(line_colours(figure).values()) == {loss_colour(loss)}
        plt.close(figure)
    figure = comparison_figures.loss_shapes_figure(10, losses=["hinge"])
    assert line_colours(figure) == {"hinge": loss_colour("hinge")}
    plt.close(figure)
