"""The figures stage: PNGs, the per-epoch table and the directory written whole, from a
synthetic study of 3 losses x 3 seeds (tests/studies.py)."""

import numpy as np
import pytest

from lossbench import figures
from studies import EPOCHS, PNG_SIGNATURE, STUDY


def test_figures_are_valid_pngs(rendered):
    from PIL import Image

    root, _, _, _, output_dir = rendered
    expected = {"loss_shapes.png", "validation_accuracy.png", "test_accuracy.png"}
    expected |= {f"{kind}_{loss}.png" for kind in ("curves", "confusion", "reliability") for loss in STUDY}
    assert {path.name for path in output_dir.iterdir()} == expected
    for path in output_dir.iterdir():
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.size[0] > 300 and image.size[1] > 200
    assert not [path for path in output_dir.parent.iterdir() if path.name.startswith(".")]


def test_figures_replace_the_directory_whole(rendered):
    _, summary_path, metrics_paths, log_dirs, output_dir = rendered
    (output_dir / "stale.png").write_bytes(b"old")
    figures.run(summary_path, metrics_paths, log_dirs, output_dir)
    assert not (output_dir / "stale.png").exists()
    assert (output_dir / "loss_shapes.png").read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(FileNotFoundError, match="lossbench train"):
        figures.run(summary_path, metrics_paths, [output_dir.parent / "absent-seed0"], output_dir)
    # The failed call left the previous figures in place and no staging directory behind.
    assert (output_dir / "loss_shapes.png").is_file()
    assert not [path for path in output_dir.parent.iterdir() if path.name.startswith(".")]


def test_loss_shapes_come_from_the_registry():
    panels = figures.loss_shape_curves(num_classes=10, points=101)
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
    from lossbench.calibration_figures import pooled_reliability

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
