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
    params["tune"].update(learning_rates=[0.001, 0.1], seeds=[5], epochs=1, max_grid_extensions=1)
    output = tmp_path / "reports" / "tune" / "hinge.json"
    first = tune.run(params, "hinge", data, output, tmp_path / "work")
    # Issue 19: the first tuning run writes the whole study's projected cost, once per job.
    costs = [record.getMessage() for record in caplog.records if "is projected to train" in record.getMessage()]
    assert len(costs) == 1 and costs[0].startswith("The whole study is projected to train for ")
    assert ("12 tuning runs (6 losses x 2 rates x 1 seed, 1 epoch) x " in costs[0]
            and " + 6 training runs (6 losses x 1 seed, 1 epoch) x " in costs[0])
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(first))
    # A rate chosen at the grid's edge extends the grid one step (x100 here) past it, once.
    extra = written["protocol"]["extended_rates"]
    assert len(extra) == 1 and extra[0] in (1e-5, 10.0)
    assert [run["learning_rate"] for run in written["runs"]] == [0.001, 0.1, extra[0]]
    assert written["learning_rates"] == [0.001, 0.1, extra[0]]
    # One seed and a horizon shorter than training (1 epoch each here: the same) make the
    # choice untrustworthy, and the result says why.
    assert written["protocol"]["trustworthy"] is False
    assert "1 tuning seed, fewer than 3" in written["protocol"]["reasons"][0]
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


def runs_of(table: dict[float, list[float]]) -> list[dict]:
    """Tuning runs from {rate: hold-out accuracy per tuning seed}."""
    return [result(rate, seed, accuracy) for rate, accuracies in table.items()
            for seed, accuracy in enumerate(accuracies)]


def test_a_rate_within_noise_of_the_best_ties_and_the_preferred_rate_wins():
    """Issue 30: cross-entropy's 0.003 beat 0.01 by 44.5 against 41.6 % on one seed; with three
    seeds whose spread covers that gap the two tie, and the paper's 0.01 is taken; a gap
    larger than the seeds' noise keeps the best."""
    noisy = runs_of({0.003: [0.445, 0.40, 0.43], 0.01: [0.416, 0.43, 0.42], 0.03: [0.30, 0.31, 0.29]})
    assert tune.select_learning_rate(noisy)[0] == 0.003  # no preference: the best mean
    assert tune.select_learning_rate(noisy, preferred_rate=0.01)[0] == 0.01
    clear = runs_of({0.003: [0.50, 0.51, 0.505], 0.01: [0.42, 0.43, 0.425]})
    assert tune.select_learning_rate(clear, preferred_rate=0.01)[0] == 0.003
    # One seed: no noise to judge a tie by, so the best mean, whatever is preferred.
    single = runs_of({0.003: [0.445], 0.01: [0.416]})
    assert tune.select_learning_rate(single, preferred_rate=0.01)[0] == 0.003
    summary = tune.rate_summaries(noisy)["0.01"]
    assert summary["n"] == 3 and summary["ci_low"] < summary["mean"] < summary["ci_high"]
    assert tune.rate_summaries(single)["0.01"]["ci_low"] is None


def test_the_grid_grows_past_an_edge_and_the_protocol_says_what_is_missing():
    rates = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    assert tune.next_rate(rates, 0.003) == 0.001  # one step (x 3.33) below the edge
    assert tune.next_rate(rates, 3.0) == 10.0
    assert tune.next_rate(rates, 0.1) is None and tune.next_rate(rates, None) is None
    assert tune.next_rate([0.01], 0.01) is None  # one rate is a choice, not a search
    assert tune.next_rate([0.01, 0.1], 0.1) == 1.0

    params = {"seeds": [100, 101, 102], "epochs": 12}
    inside = runs_of({0.003: [0.3] * 3, 0.01: [0.5, 0.51, 0.49], 0.03: [0.2] * 3})
    good = tune.protocol(params, 12, inside, 0.01, [])
    assert good["trustworthy"] is True and good["reasons"] == []
    edge = runs_of({0.003: [0.5, 0.51, 0.49], 0.01: [0.3] * 3})
    bad = tune.protocol({"seeds": [100], "epochs": 6}, 12, edge, 0.003, [0.001])
    assert bad["trustworthy"] is False and bad["chosen_inside_grid"] is False
    assert bad["reasons"] == [
        "1 tuning seed, fewer than 3: the noise between seeds is not seen",
        "tuned for 6 epochs, while the tuned runs train 12",
        "the chosen rate 0.003 is at the edge of the rates tried (0.003 to 0.01) after 1 extension(s)",
    ]

