"""The report's learning-rate section and the tuning figure, on synthetic tuning results."""

import json

import pytest

from lossbench.presentation.tuning_report import plot_tuning_curves, read_tuning, tuning_section


def tuning(loss, means, chosen, epochs=6):
    return {
        "loss": loss, "epochs": epochs, "seeds": [100], "holdout_fraction": 0.1,
        "learning_rates": [float(rate) for rate in means],
        "runs": [{"learning_rate": float(rate), "seed": 100, "holdout_accuracy": value,
                  "diverged": value is None} for rate, value in means.items()],
        "mean_holdout_accuracy": {rate: value for rate, value in means.items() if value is not None},
        "selected_learning_rate": chosen, "selection_rule": "highest mean final-epoch accuracy",
    }


RESULTS = [
    tuning("categorical_crossentropy", {"0.01": 0.50, "0.1": 0.45, "1": None}, 0.01),
    tuning("hinge", {"0.01": 0.20, "0.1": 0.30, "1": 0.41}, 1.0),
]


def test_the_table_shows_every_rate_and_bolds_the_choice():
    text = "\n".join(tuning_section(RESULTS, 0.01))
    assert "| 0.01 | **50.0 %** | 20.0 % |" in text
    assert "| 1 | — | **41.0 %** |" in text
    assert "never on the test set" in text and "10%" in text


def test_at_a_shared_rate_the_losses_that_wanted_another_are_named_and_the_grid_edge_flagged():
    sentence = tuning_section(RESULTS, 0.01)[-2]
    assert "one shared rate, 0.01; for `hinge` another rate did better" in sentence
    assert "`categorical_crossentropy` 0.01, `hinge` 1" in sentence
    # 0.01 and 1 are the grid's ends: a better rate might lie beyond.
    assert "edge of the grid" in sentence and "`hinge`" in sentence.split("edge")[0]


def test_when_every_loss_chose_the_shared_rate_it_says_so_and_tuned_runs_say_what_they_used():
    same = [tuning("hinge", {"0.003": 0.1, "0.01": 0.3, "0.1": 0.2}, 0.01)]
    assert tuning_section(same, 0.01)[-2].endswith("the rate every loss chose.")
    assert tuning_section(RESULTS, "tuned")[-2] == (
        "The runs of this report trained at these chosen rates: `categorical_crossentropy` 0.01, `hinge` 1."
    )


def test_no_tuning_writes_no_section_and_no_figure(tmp_path):
    untuned = [tuning("hinge", {}, None)]
    assert tuning_section(untuned, 0.01) == []
    assert plot_tuning_curves(untuned, tmp_path / "t.png") is None


def test_the_figure_is_written_and_bad_files_are_named(tmp_path):
    from PIL import Image

    path = plot_tuning_curves(RESULTS, tmp_path / "tuning.png")
    width, height = Image.open(path).size
    assert max(width, height) <= 2000 and width > height
    (tmp_path / "hinge.json").write_text(json.dumps({"loss": "hinge"}))
    with pytest.raises(ValueError, match="not a result of `lossbench tune`"):
        read_tuning([tmp_path / "hinge.json"])
    with pytest.raises(FileNotFoundError, match="lossbench tune"):
        read_tuning([tmp_path / "absent.json"])


def test_the_report_says_whether_each_choice_meets_the_tuning_protocol():
    from lossbench.presentation.tuning_report import protocol_sentence

    base = {"loss": "hinge", "selected_learning_rate": 0.01}
    good = dict(base, protocol={"trustworthy": True, "tuning_seeds": 3, "training_epochs": 12,
                                "reasons": []})
    assert protocol_sentence(good) == ("`hinge`: the choice meets the tuning protocol (3 tuning "
                                       "seeds, the 12 epochs the runs train, a rate inside the "
                                       "rates tried).")
    bad = dict(base, protocol={"trustworthy": False, "tuning_seeds": 1, "training_epochs": 12,
                               "reasons": ["1 tuning seed, fewer than 3: the noise between seeds is not seen",
                                           "tuned for 6 epochs, while the tuned runs train 12"]})
    assert protocol_sentence(bad) == (
        "`hinge`: the choice does not meet the tuning protocol (1 tuning seed, fewer than 3: the "
        "noise between seeds is not seen; tuned for 6 epochs, while the tuned runs train 12): a "
        "lead, not a measured best rate.")
    assert protocol_sentence(base) is None  # a result from before the protocol
    lines = tuning_section([dict(RESULTS[0], **bad)], 0.01)
    assert f"- {protocol_sentence(dict(RESULTS[0], **bad))}" in lines

