"""Extending lossbench: a toy loss, dataset, metric and figure, each registered with one entry
(undone by monkeypatch after each test), reach every stage that should see them without an
edit there. Synthetic data only, no training (the README's "Extending lossbench")."""

import io
import json
import tarfile

import numpy as np
import pytest

from lossbench import figures, preprocess, report
from lossbench.core import losses, metric_registry
from lossbench.core.losses import LossSpec, get_loss
from lossbench.core.metric_registry import MetricSpec
from lossbench.evaluate import review_metrics
from lossbench.io.prepared import Split, load_prepared
from lossbench.presentation.figure_style import new_figure
from studies import STUDY, study_params, write_study

TOY_LOSS = "toy_absolute"


def toy_absolute(y_true, y_pred):
    """mean_k |s_k - y_k| of raw scores s against one-hot 0/1 targets y."""
    from keras import ops

    one_hot, scores = losses._prepare(y_true, y_pred)
    return ops.mean(ops.abs(scores - one_hot), axis=-1)


def true_class_score(outputs):
    """The mean score of the true class over the test images."""
    return float(np.mean(outputs.scores[np.arange(len(outputs.labels)), outputs.labels]))


def toy_bars(inputs):
    """One bar per loss: its mean test accuracy over seeds."""
    figure, axis = new_figure(6, 4)
    names = list(inputs.summary["losses"])
    axis.bar(range(len(names)), [inputs.summary["losses"][name]["test_accuracy"]["mean"] for name in names])
    yield "toy_bars.png", figure


@pytest.fixture
def toy_loss(monkeypatch):
    spec = LossSpec(TOY_LOSS, toy_absolute, "linear", "mean_k |s_k - y_k|")
    monkeypatch.setitem(losses.LOSSES, TOY_LOSS, spec)
    return spec


def test_a_registered_loss_is_found_and_drawn(toy_loss):
    assert get_loss(TOY_LOSS) is toy_loss
    labels = np.array([0, 1])
    scores = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 2.0]], dtype="float32")
    np.testing.assert_allclose(np.asarray(toy_loss.function(labels, scores)), [0.0, 3.0 / 3], rtol=1e-6)
    # The loss-shape figure draws every registered loss, on the panels of its output kind.
    panels = figures.comparison_figures.loss_shape_curves(num_classes=3, points=5)
    assert TOY_LOSS in panels["score"]["curves"] and TOY_LOSS in panels["margin"]["curves"]
    assert TOY_LOSS not in panels["probability"]["curves"]


def test_a_registered_loss_metric_and_figure_reach_compare_figures_and_report(
        toy_loss, monkeypatch, tmp_path):
    monkeypatch.setitem(metric_registry.METRICS, "true_class_score", MetricSpec(
        "true_class_score", "Score of the true class", higher_is_better=True, review=True,
        compute=true_class_score))
    # Only the toy figure, to keep this test cheap: tests/test_figures.py draws the others.
    monkeypatch.setattr(figures, "FIGURES", {"toy_bars": toy_bars})
    study = {**STUDY, TOY_LOSS: [0.6, 0.62, 0.61]}
    summary_path, metrics_paths, log_dirs = write_study(tmp_path, study)

    # evaluate computed it for every run, and wrote it in the review file too.
    run = json.loads(metrics_paths[0].read_text())
    assert run["true_class_score"] == pytest.approx(0.03 + 0.7 * run["test_accuracy"])
    assert review_metrics(run)["true_class_score"] == round(run["true_class_score"], 4)
    # compare summarised it over seeds, for the toy loss as for the others.
    summary = json.loads(summary_path.read_text())
    assert list(summary["losses"]) == list(study)
    for loss, accuracies in study.items():
        statistics = summary["losses"][loss]["true_class_score"]
        assert statistics["n"] == 3
        assert statistics["mean"] == pytest.approx(0.03 + 0.7 * np.mean(accuracies))

    figures_dir = tmp_path / "figures"
    written = figures.run(summary_path, metrics_paths, log_dirs, figures_dir)
    assert [path.name for path in written] == ["toy_bars.png"]

    params = study_params()
    text = report.run(params["report"], summary_path, figures_dir, tmp_path / "report.md", params)
    assert f"| `{TOY_LOSS}` |" in text
    assert "### Further metrics" in text
    row = next(line for line in text.splitlines() if line.startswith("| Score of the true class |"))
    # Higher is better, so the best loss is the one of the highest accuracy.
    assert "| higher | `categorical_crossentropy` |" in row and f"`{TOY_LOSS}` 0.457" in row
    assert "![`toy_bars.png`, drawn by the figures stage.](figures/toy_bars.png)" in text


def test_the_report_has_no_further_metrics_table_without_registered_metrics(tmp_path):
    summary_path, _, _ = write_study(tmp_path, STUDY)
    (tmp_path / "figures").mkdir()
    params = study_params()
    text = report.run(params["report"], summary_path, tmp_path / "figures", tmp_path / "report.md", params)
    assert "Further metrics" not in text


TOY_CLASSES = ["square", "circle"]


def _toy_archive(path, counts={"train": 6, "test": 4}):
    """A tar.gz holding toy/<split>.npz (images and labels) and toy/classes.txt."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as archive:
        members = {"toy/classes.txt": "\n".join(TOY_CLASSES).encode()}
        for split, count in counts.items():
            buffer = io.BytesIO()
            np.savez(buffer, images=rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
                     labels=np.arange(count, dtype=np.int32) % len(TOY_CLASSES))
            members[f"toy/{split}.npz"] = buffer.getvalue()
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def read_toy(archive, contents, files, *, sizes, subset_seed, workers):
    """The toy layout's class names and splits, each split subset as `sizes` says."""
    class_names = contents.member_bytes(files["toy/classes.txt"]).decode().split("\n")
    splits = {}
    for split in ("train", "test"):
        arrays = np.load(io.BytesIO(contents.member_bytes(files[f"toy/{split}.npz"])))
        splits[split] = Split(arrays["images"], arrays["labels"])
    labels = {split: value.labels for split, value in splits.items()}
    preprocess.check_sizes(archive, class_names, labels, sizes)
    for split, indices in preprocess.draw_subsets(labels, sizes, subset_seed).items():
        if indices is not None:
            splits[split] = splits[split].take(indices)
    return class_names, splits


def test_a_registered_dataset_is_prepared(monkeypatch, tmp_path):
    monkeypatch.setitem(preprocess.DATASETS, "toy", preprocess.DatasetSpec(
        "toy", "a toy layout (toy/train.npz, toy/test.npz, toy/classes.txt)",
        lambda files: "toy/classes.txt" in files, read_toy))
    archive = _toy_archive(tmp_path / "toy.tar.gz")
    counts = preprocess.prepare(archive, dataset="toy", output_dir=tmp_path / "prepared",
                                counts_path=tmp_path / "counts.json", train_size=4, subset_seed=0,
                                max_archive_bytes=10**7, label_noise=0.0, label_noise_mode="symmetric")
    data = load_prepared(tmp_path / "prepared")
    assert list(data.class_names) == TOY_CLASSES
    assert data.train_images.shape == (4, 32, 32, 3) and len(data.test_labels) == 4
    assert counts["train"]["per_class"] == {"square": 2, "circle": 2}
    # Another registered layout named in params is refused with the layout found.
    with pytest.raises(ValueError, match=r"laid out as a toy layout .* Set preprocess.dataset: toy"):
        preprocess.prepare(archive, dataset="cifar10", output_dir=tmp_path / "other",
                           counts_path=tmp_path / "other.json", subset_seed=0, max_archive_bytes=10**7,
                           label_noise=0.0, label_noise_mode="symmetric")
