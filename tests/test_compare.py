"""The compare stage: statistics over seeds checked against scipy and hand values."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from lossbench import compare
from lossbench.compare import hypotheses, seed_statistics


def test_describe_matches_scipy():
    values = [0.81, 0.84, 0.86, 0.83]
    result = seed_statistics.describe(values, 0.95)
    low, high = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert result["n"] == 4
    assert result["mean"] == pytest.approx(0.835)
    assert result["std"] == pytest.approx(np.std(values, ddof=1))
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    # By hand: sd = sqrt(0.0013 / 3), t(0.975, 3) = 3.182446.
    half = 3.182446305284263 * math.sqrt(0.0013 / 3) / 2
    assert result["ci_high"] - result["mean"] == pytest.approx(half, rel=1e-6)


def test_describe_with_one_none_or_equal_values():
    assert seed_statistics.describe([0.5], 0.95) == {"n": 1, "mean": 0.5, "std": None, "ci_low": None, "ci_high": None}
    assert seed_statistics.describe([None, float("nan")], 0.95)["mean"] is None
    assert seed_statistics.describe([None, 0.4, float("nan"), 0.6], 0.9)["n"] == 2
    equal = seed_statistics.describe([0.7, 0.7, 0.7], 0.95)
    assert equal["std"] == 0.0 and equal["ci_low"] == equal["ci_high"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="confidence_level"):
        seed_statistics.describe([1.0], 1.5)


def test_paired_comparison_matches_ttest_rel():
    a = {0: 0.85, 1: 0.84, 2: 0.87, 3: 0.86, 9: 0.5}
    b = {0: 0.80, 1: 0.82, 2: 0.81, 3: 0.83}
    result = seed_statistics.paired_comparison(a, b, 0.95)
    expected = stats.ttest_rel([0.85, 0.84, 0.87, 0.86], [0.80, 0.82, 0.81, 0.83])
    assert result["tested"] and result["n"] == 4 and result["seeds"] == [0, 1, 2, 3]
    assert result["p_value"] == pytest.approx(expected.pvalue)
    assert result["t_statistic"] == pytest.approx(expected.statistic)
    differences = [0.05, 0.02, 0.06, 0.03]
    assert result["mean_difference"] == pytest.approx(0.04)
    low, high = stats.t.interval(0.95, 3, loc=0.04, scale=stats.sem(differences))
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(low), pytest.approx(high))


def test_paired_comparison_needs_three_shared_seeds():
    result = seed_statistics.paired_comparison({0: 0.8, 1: 0.7, 2: None}, {0: 0.6, 1: 0.5, 2: 0.4}, 0.95)
    assert not result["tested"] and result["n"] == 2 and result["p_value"] is None


def test_identical_differences_give_no_p_value():
    result = seed_statistics.paired_comparison({0: 0.8, 1: 0.7, 2: 0.6}, {0: 0.7, 1: 0.6, 2: 0.5}, 0.95)
    assert result["tested"] and result["p_value"] is None
    assert result["mean_difference"] == pytest.approx(0.1)


def test_holm_adjustment_by_hand():
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.06 (monotone); None stays None.
    assert hypotheses.holm([0.04, None, 0.01, 0.03]) == [
        pytest.approx(0.06), None, pytest.approx(0.03), pytest.approx(0.06)
    ]


def metrics(loss, seed, accuracy, diverged=False, epoch_80=None, device="CPU: test", dead_channels=0):
    return {
        "final_conv_active_fraction": 0.0 if dead_channels == 10 else 0.3,
        "final_conv_dead_channels": dead_channels, "final_conv_channels": 10,
        "loss": loss, "seed": seed, "test_accuracy": accuracy, "test_error": 1 - accuracy,
        "test_loss": 1.0, "test_size": 100, "train_accuracy": accuracy + 0.05,
        "generalization_gap": 0.05, "best_val_accuracy": accuracy + 0.01, "best_val_epoch": 4,
        "final_val_accuracy": accuracy, "train_seconds": 100.0 + seed, "epochs_planned": 5,
        "epochs_completed": 5, "diverged": diverged, "model_parameters": 1000,
        "convergence": {
            "50%": {"threshold": 0.5, "epoch": 2, "seconds": 20.0},
            "80%": {"threshold": 0.8, "epoch": epoch_80, "seconds": None if epoch_80 is None else 10.0 * epoch_80},
        },
        "setup": {"device": device, "backend": "tensorflow", "precision": "float32",
                  "validation": "test", "train_size": 400, "validation_size": 100,
                  "versions": {"keras": "3.15.1", "python": "3.11"}},
    }


def write_runs(tmp_path, runs):
    paths = []
    for run in runs:
        path = tmp_path / f"{run['loss']}-seed{run['seed']}.json"
        path.write_text(json.dumps(run))
        paths.append(path)
    return paths


def test_run_writes_a_summary_with_statistics_and_setup(tmp_path):
    ce = [0.85, 0.84, 0.87]
    hinge = [0.55, 0.50, 0.58]
    runs = [metrics("categorical_crossentropy", seed, value, epoch_80=3 + seed) for seed, value in enumerate(ce)]
    runs += [metrics("hinge", seed, value, diverged=seed == 2, device="GPU: x" if seed else "CPU: test")
             for seed, value in enumerate(hinge)]
    runs.append(metrics("squared_hinge", 0, 0.8, epoch_80=5))
    output = tmp_path / "out" / "summary.json"
    compare.run({"confidence_level": 0.95}, write_runs(tmp_path, runs), output)
    summary = json.loads(output.read_text())

    assert list(summary["losses"]) == ["categorical_crossentropy", "hinge", "squared_hinge"]
    entry = summary["losses"]["categorical_crossentropy"]
    assert entry["seeds"] == [0, 1, 2] and entry["runs"] == 3
    assert entry["test_accuracy"]["mean"] == pytest.approx(np.mean(ce))
    assert entry["test_accuracy"]["std"] == pytest.approx(np.std(ce, ddof=1))
    assert entry["train_seconds"]["mean"] == pytest.approx(101.0)
    assert entry["convergence"]["80%"]["reached"] == 3
    assert entry["convergence"]["80%"]["epoch"]["mean"] == pytest.approx(4.0)
    assert summary["losses"]["hinge"]["convergence"]["80%"]["reached"] == 0
    assert summary["losses"]["hinge"]["convergence"]["80%"]["epoch"]["mean"] is None
    assert summary["losses"]["hinge"]["diverged_seeds"] == [2]
    assert summary["losses"]["squared_hinge"]["test_accuracy"]["std"] is None
    assert summary["thresholds"] == [0.5, 0.8]

    pair = summary["comparisons"]["categorical_crossentropy vs hinge"]
    expected = stats.ttest_rel(ce, hinge)
    assert pair["tested"] and pair["p_value"] == pytest.approx(expected.pvalue)
    assert pair["mean_difference"] == pytest.approx(np.mean(ce) - np.mean(hinge))
    # Only one pair is tested, so Holm changes nothing.
    assert pair["p_value_holm"] == pytest.approx(expected.pvalue)
    assert pair["significant"] is True and expected.pvalue < 0.05
    assert summary["comparisons"]["hinge vs squared_hinge"]["tested"] is False

    assert summary["setup"]["devices"] == ["CPU: test", "GPU: x"]
    assert summary["setup"]["versions"] == {"keras": ["3.15.1"], "python": ["3.11"]}
    assert summary["setup"]["test_size"] == [100] and summary["setup"]["epochs_planned"] == [5]
    assert summary["alpha"] == pytest.approx(0.05) and summary["runs"] == 7


def test_run_reports_missing_and_duplicate_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="lossbench evaluate"):
        compare.run({"confidence_level": 0.95}, [tmp_path / "absent.json"], tmp_path / "s.json")
    paths = write_runs(tmp_path, [metrics("hinge", 0, 0.5)])
    with pytest.raises(ValueError, match="seed 0"):
        compare.run({"confidence_level": 0.95}, paths + paths, tmp_path / "s.json")
    (tmp_path / "bad.json").write_text(json.dumps({"accuracy": 1}))
    with pytest.raises(ValueError, match="lacks loss"):
        compare.run({"confidence_level": 0.95}, [tmp_path / "bad.json"], tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()


def test_runs_with_a_dead_final_layer_are_counted(tmp_path):
    runs = [
        metrics("categorical_crossentropy", 0, 0.10, dead_channels=10),   # all 10 dead
        metrics("categorical_crossentropy", 1, 0.60, dead_channels=9),    # one alive: not dead
        metrics("categorical_crossentropy", 2, 0.62),
        metrics("hinge", 0, 0.10, dead_channels=10),
        metrics("hinge", 1, 0.10, dead_channels=10),
        metrics("squared_hinge", 0, 0.5),
    ]
    old = metrics("squared_hinge", 1, 0.55)  # a metrics file from before final_conv_* existed
    for key in ("final_conv_active_fraction", "final_conv_dead_channels", "final_conv_channels"):
        del old[key]
    runs.append(old)
    nulls = metrics("squared_hinge", 2, 0.0, diverged=True)  # diverged: unknown, not dead
    nulls.update(final_conv_active_fraction=None, final_conv_dead_channels=None)
    runs.append(nulls)
    summary = compare.run({"confidence_level": 0.95}, write_runs(tmp_path, runs), tmp_path / "s.json")
    losses = summary["losses"]
    ce = losses["categorical_crossentropy"]
    assert ce["dead_final_layer_runs"] == 1 and ce["dead_final_layer_seeds"] == [0]
    assert ce["test_accuracy"]["n"] == 3  # every run still counts in test_accuracy
    assert ce["test_accuracy_alive"]["n"] == 2
    assert ce["test_accuracy_alive"]["mean"] == pytest.approx(0.61)
    assert ce["final_conv_active_fraction"]["mean"] == pytest.approx(0.2)
    hinge = losses["hinge"]
    assert hinge["dead_final_layer_runs"] == 2 and hinge["dead_final_layer_seeds"] == [0, 1]
    assert hinge["test_accuracy_alive"] == {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    squared = losses["squared_hinge"]
    assert squared["dead_final_layer_runs"] == 0 and squared["dead_final_layer_seeds"] == []
    assert squared["test_accuracy_alive"]["n"] == 3
    assert squared["diverged_runs"] == 1


def test_collapsed_runs_are_counted_and_left_out_of_the_second_mean(tmp_path):
    runs = [metrics("categorical_crossentropy", seed, accuracy)
            for seed, accuracy in ((0, 0.10), (1, 0.50), (2, 0.60))]
    runs[0]["collapsed"] = True        # predicted one class for >= 90 % of the test images
    runs[1]["collapsed"] = False
    # runs[2] comes from before `collapsed` existed: it counts as not collapsed.
    summary = compare.run({"confidence_level": 0.95}, write_runs(tmp_path, runs), tmp_path / "s.json")
    ce = summary["losses"]["categorical_crossentropy"]
    assert ce["collapsed_runs"] == 1 and ce["collapsed_seeds"] == [0]
    assert ce["test_accuracy"]["n"] == 3 and ce["test_accuracy"]["mean"] == pytest.approx(0.4)
    assert ce["test_accuracy_not_collapsed"]["n"] == 2
    assert ce["test_accuracy_not_collapsed"]["mean"] == pytest.approx(0.55)


def test_old_metrics_keep_their_running_accuracy_apart_from_the_measured_one(tmp_path):
    old = metrics("hinge", 0, 0.5)
    old.pop("train_accuracy_images", None)
    new = dict(metrics("hinge", 1, 0.5), train_accuracy_images=2000, train_accuracy=0.61,
               running_accuracy=0.52, generalization_gap=0.11)
    runs = compare.read_metrics(write_runs(tmp_path, [old, new]))
    assert runs[0]["train_accuracy"] is None and runs[0]["generalization_gap"] is None
    assert runs[0]["running_accuracy"] == old["train_accuracy"]
    assert runs[1]["train_accuracy"] == 0.61 and runs[1]["running_accuracy"] == 0.52


@pytest.mark.parametrize("value", [float("nan"), "0.9", -5.0, 1.5, None, True])
def test_an_evaluation_edited_to_hold_no_accuracy_is_refused(tmp_path, value):
    """Issue 31, item 3: test_accuracy NaN, "0.9" or -5.0 in an evaluation went into the
    headline; now compare stops, naming the file and how to restore it."""
    (path,) = write_runs(tmp_path, [{"loss": "hinge", "seed": 0, "test_accuracy": value}])
    with pytest.raises(ValueError, match=r"test_accuracy is .*not an accuracy \(a number from 0 to 1\)"):
        compare.read_metrics([path])


def test_a_dead_final_layer_that_the_metrics_do_not_record_is_unknown_never_alive():
    """Issue 30: evaluation files written before `final_layer_dead` existed gave "Dead final
    layer: 0 of 3" for Crammer-Singer runs whose conv_9 was 99.1-99.9999 % zero. Their active
    fraction decides by the same rule; without it the answer is unknown."""
    from lossbench.io.evaluation import final_layer_dead
    from lossbench.report.tables import dead_text

    assert final_layer_dead({"final_layer_dead": False, "final_conv_active_fraction": 0.0}) is False
    assert final_layer_dead({"final_conv_active_fraction": 0.009}) is True  # 99.1 % zero
    assert final_layer_dead({"final_conv_active_fraction": 0.5}) is False
    assert final_layer_dead({"final_conv_channels": 10, "final_conv_dead_channels": 10}) is True
    assert final_layer_dead({"final_conv_channels": 10, "final_conv_dead_channels": 3}) is None
    assert final_layer_dead({}) is None
    assert dead_text(2, 0, 3) == "2 of 3"
    assert dead_text(0, 1, 3) == "0 of 3 (1 unknown)"
    assert dead_text(0, 3, 3) == "unknown" and dead_text(None, 0, 3) == "unknown"
