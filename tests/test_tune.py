"""The tune stage: the selection rule, a real tuning run on tiny data, and train reading it."""

import json

import pytest

from lossbench import train
from lossbench.pipeline.params import ParamsError, load_params, validate_params
from lossbench.train import tune
from test_train import PROJECT, write_params, write_prepared


def result(rate, seed, accuracy, diverged=False):
    return {"learning_rate": rate, "seed": seed, "holdout_accuracy": accuracy, "diverged": diverged}


def test_the_rate_with_the_best_mean_holdout_accuracy_is_chosen():
    runs = [result(0.01, 0, 0.40), result(0.01, 1, 0.44), result(0.1, 0, 0.50), result(0.1, 1, 0.30),
            result(1.0, 0, 0.45), result(1.0, 1, 0.44)]
    chosen, means = tune.select_learning_rate(runs)
    assert chosen == 1.0
    assert means == {"0.01": pytest.approx(0.42), "0.1": pytest.approx(0.40), "1": pytest.approx(0.445)}


def test_a_rate_with_a_diverged_run_is_not_selectable_and_ties_go_to_the_smaller_rate():
    runs = [result(0.01, 0, 0.40), result(0.1, 0, 0.40), result(3.0, 0, 0.9, diverged=True)]
    chosen, means = tune.select_learning_rate(runs)
    assert chosen == 0.01 and "3" not in means
    assert tune.select_learning_rate([]) == (None, {})


def test_tuned_learning_rate_needs_a_rate_to_choose_from():
    params = load_params(PROJECT / "params.yaml")
    params["train"]["learning_rate"] = "tuned"
    params["tune"]["learning_rates"] = []
    with pytest.raises(ParamsError, match="tune.learning_rates is empty"):
        validate_params(params)
    params["train"]["learning_rate"] = "fast"
    params["tune"]["learning_rates"] = [0.01]
    with pytest.raises(ParamsError, match="learning_rate"):
        validate_params(params)


def test_tuning_on_tiny_data_chooses_a_rate_that_train_then_uses(tmp_path, caplog):
    caplog.set_level("INFO")
    data = write_prepared(tmp_path / "data", train_count=160, test_count=40)
    params_path = write_params(tmp_path / "params.yaml", epochs=1, learning_rate="tuned")
    params = load_params(params_path)
    params["tune"].update(learning_rates=[0.001, 0.1], seeds=[5], epochs=1)
    output = tmp_path / "reports" / "tune" / "hinge.json"
    first = tune.run(params, "hinge", data, output, tmp_path / "work")
    # Issue 19: the first tuning run writes the whole study's projected cost, once per job.
    costs = [record.getMessage() for record in caplog.records if "is projected to train" in record.getMessage()]
    assert len(costs) == 1 and costs[0].startswith("The whole study is projected to train for ")
    assert ("12 tuning runs (6 losses x 2 rates x 1 seed, 1 epoch) x " in costs[0]
            and " + 6 training runs (6 losses x 1 seed, 1 epoch) x " in costs[0])
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(first))
    assert [run["learning_rate"] for run in written["runs"]] == [0.001, 0.1]
    # Scored on a hold-out of 10 % of the 160 training images, never on the test set.
    assert all(len(run["holdout_accuracy_per_epoch"]) == 1 for run in written["runs"])
    best = max(written["runs"], key=lambda run: (run["holdout_accuracy"], -run["learning_rate"]))
    assert written["selected_learning_rate"] == best["learning_rate"]
    # A rerun reuses the finished runs instead of training them again.
    marker = (tmp_path / "work" / "lr0.1-seed5.json").stat().st_mtime_ns
    assert tune.run(params, "hinge", data, output, tmp_path / "work") == first
    assert (tmp_path / "work" / "lr0.1-seed5.json").stat().st_mtime_ns == marker
    assert train.tuned_learning_rate(output, "hinge") == written["selected_learning_rate"]
    with pytest.raises(ValueError, match="not 'squared_hinge'"):
        train.tuned_learning_rate(output, "squared_hinge")
    with pytest.raises(FileNotFoundError, match="lossbench tune --loss hinge"):
        train.tuned_learning_rate(tmp_path / "absent.json", "hinge")
    info = train.run(params, "hinge", 5, data, tmp_path / "m.keras", tmp_path / "log", tmp_path / "ck",
                     tuning_path=output)
    assert info["learning_rate"] == written["selected_learning_rate"]
    # The paper's hinge pushes only on the true class, by 1 / classes, averaged over classes.
    assert info["initial_output_gradient_scale"] == pytest.approx(1 / 4**2)
