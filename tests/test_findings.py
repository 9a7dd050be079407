"""The report's findings follow the data: each rule checked on a synthetic summary.

The summaries are built here by hand, with the fields `lossbench compare` writes (and those
it is to write: runs above chance, comparison families, hypotheses, gradient scales), so
each test sets exactly the numbers its rule reads.
"""

from lossbench.pipeline.params import with_defaults
from lossbench.report import findings, findings_runs


def statistic(mean, n=3, half_width=None):
    """A `describe` dictionary: {"n", "mean", "std", "ci_low", "ci_high"}."""
    if mean is None or n < 2:
        return {"n": n, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    half_width = 0.01 if half_width is None else half_width
    return {"n": n, "mean": mean, "std": half_width, "ci_low": mean - half_width, "ci_high": mean + half_width}


def loss_entry(accuracy, runs=3, **fields):
    """One loss's summary entry: `runs` runs around `accuracy`, none failed, unless `fields` say."""
    entry = {
        "seeds": list(range(runs)), "runs": runs,
        "diverged_runs": 0, "diverged_seeds": [],
        "dead_final_layer_runs": 0, "dead_final_layer_seeds": [],
        "collapsed_runs": 0, "collapsed_seeds": [],
        "test_accuracy": statistic(accuracy, runs),
        "test_accuracy_alive": statistic(accuracy, runs),
        "test_accuracy_not_collapsed": statistic(accuracy, runs),
        "above_chance_runs": runs,
        "above_chance_across_seeds": {"p_value": 0.001 if runs > 1 else None},
        "convergence": {},
    }
    entry.update(fields)
    return entry


def comparison(loss_a, loss_b, difference, p_holm, family=None, n=3):
    """A tested paired comparison of a - b."""
    entry = {
        "loss_a": loss_a, "loss_b": loss_b, "metric": "test_accuracy", "n": n, "seeds": list(range(n)),
        "tested": n >= 3, "mean_difference": difference, "ci_low": difference - 0.02,
        "ci_high": difference + 0.02, "t_statistic": 3.0, "p_value": p_holm / 2, "p_value_holm": p_holm,
        "significant": p_holm < 0.05,
    }
    if family is not None:
        entry["family"] = family
    return entry


def summary(losses, comparisons=(), **fields):
    """A summary of 10 classes at the 95 % level with `losses` and `comparisons`."""
    result = {
        "confidence_level": 0.95, "alpha": 0.05,
        "runs": sum(entry["runs"] for entry in losses.values()),
        "losses": losses,
        "comparisons": {f"{entry['loss_a']} vs {entry['loss_b']}": entry for entry in comparisons},
        "setup": {"num_classes": [10]},
    }
    result.update(fields)
    return result


# The sections of validated params the findings read: the evaluate defaults, and the official
# CIFAR-10 archive (no data caveat).
PARAMS = {"evaluate": with_defaults("evaluate", {}), "download": {"source": None},
          "preprocess": {"dataset": "cifar10"}}


def bullets(data, params=PARAMS) -> str:
    return "\n".join(findings.conclusions(data, {}, params))


# ---------------------------------------------------------------------------------------------
# Above chance: per run, by its binomial test.
# ---------------------------------------------------------------------------------------------


def test_a_loss_is_not_above_chance_only_when_none_of_its_runs_is():
    data = summary({
        "a": loss_entry(0.60),
        # Two runs near chance, one clearly above: the loss is not "at chance".
        "b": loss_entry(0.13, above_chance_runs=1, above_chance_across_seeds={"p_value": 0.21}),
        "c": loss_entry(0.10, above_chance_runs=0, above_chance_across_seeds={"p_value": 0.62}),
    })
    text = findings_runs.chance_finding(data, ["a", "b", "c"])
    assert text.startswith("Runs above chance, 10.0 % for 10 classes (exact one-sided binomial test "
                           "of each run's correct test images, α = 0.05): ")
    assert ("`a` 3 of 3 runs; `b` 1 of 3 runs (mean over seeds above chance: one-sided t-test p = 0.210); "
            "`c` 0 of 3 runs.") in text
    assert text.endswith("Not above chance in any run: `c` (0 of 3).")
    assert findings_runs.not_above_chance(data, ["a", "b", "c"]) == ["c"]


def test_a_mean_within_a_point_of_chance_is_above_chance_when_its_runs_are():
    # 10.8 % on a large test set is above 10 % by each run's test: the old fixed one-point
    # margin would have called this loss "not above chance".
    data = summary({"a": loss_entry(0.60), "b": loss_entry(0.108)})
    assert findings_runs.chance_finding(data, ["a", "b"]) == (
        "Every run is above chance, 10.0 % for 10 classes (6 runs; exact one-sided binomial test "
        "of each run's correct test images, α = 0.05).")
    assert "not above chance" not in bullets(data).lower()


def test_an_older_summary_without_the_counts_claims_nothing_about_chance():
    old = summary({"a": loss_entry(0.60), "b": loss_entry(0.10)})
    for entry in old["losses"].values():
        del entry["above_chance_runs"], entry["above_chance_across_seeds"]
    assert findings_runs.chance_finding(old, ["a", "b"]) is None
    assert findings_runs.not_above_chance(old, ["a", "b"]) == []


def test_the_chance_bullet_points_at_dead_layers():
    data = summary({"a": loss_entry(0.60),
                    "b": loss_entry(0.10, above_chance_runs=0, dead_final_layer_runs=3,
                                    dead_final_layer_seeds=[0, 1, 2])})
    assert "Not above chance in any run: `b` (0 of 3; 3 with a dead final layer, below)." in bullets(data)


# ---------------------------------------------------------------------------------------------
# Dead final layer: by the measured share of zeros.
# ---------------------------------------------------------------------------------------------


def test_the_dead_layer_finding_names_the_measured_share_of_zeros():
    dead = loss_entry(0.10, dead_final_layer_runs=3, dead_final_layer_seeds=[0, 1, 2], above_chance_runs=0,
                      final_conv_active_fraction=statistic(0.0003), test_accuracy_alive=statistic(None, 0))
    data = summary({"a": loss_entry(0.60, final_conv_active_fraction=statistic(0.3)), "b": dead})
    text = findings_runs.dead_final_layer_finding(data, PARAMS)
    assert text.startswith("**3 runs lost their final ReLU layer** (at least 99 % of the last "
                           "convolution's activations on the test images zero, `evaluate.dead_layer_share`): "
                           "`b` (seeds 0, 1, 2): 99.97 % of conv_9's activations are zero.")
    assert text.endswith("Mean test accuracy over the remaining seeds: `b`: none remain.")
    # Compare's share over the dead runs alone, where it gives one, wins.
    dead["dead_final_layer_zero_fraction"] = statistic(0.9991)
    assert "99.91 % of conv_9's activations are zero" in findings_runs.dead_final_layer_finding(data, PARAMS)


def test_with_live_runs_beside_the_dead_one_the_threshold_is_named():
    mixed = loss_entry(0.40, dead_final_layer_runs=1, dead_final_layer_seeds=[2],
                       final_conv_active_fraction=statistic(0.2), test_accuracy_alive=statistic(0.55, 2))
    data = summary({"a": mixed})
    params = {"evaluate": {"dead_layer_share": 0.95}}
    text = findings_runs.dead_final_layer_finding(data, params)
    assert "`a` (seed 2): at least 95 % of conv_9's activations are zero." in text
    assert "**1 run lost its final ReLU layer** (at least 95 % of" in text
    assert findings_runs.dead_final_layer_finding(summary({"a": loss_entry(0.5)}), params) is None


# ---------------------------------------------------------------------------------------------
# Overfitting: gaps from training accuracy measured without augmentation.
# ---------------------------------------------------------------------------------------------


def test_a_negative_gap_is_never_the_smallest_gap():
    data = summary({
        "a": loss_entry(0.60, generalization_gap=statistic(0.12)),
        "b": loss_entry(0.55, generalization_gap=statistic(0.03)),
        "c": loss_entry(0.10, generalization_gap=statistic(-0.004)),
    }, setup={"num_classes": [10], "train_accuracy_images": [2000]})
    text = findings_runs.overfitting_finding(data)
    assert text.startswith("Training minus test accuracy, both of the final model without augmentation "
                           "(training accuracy on 2,000 training images): `a` +12.0 pp, `b` +3.0 pp, `c` -0.4 pp.")
    assert "Largest gap: `a`; smallest: `b`." in text
    assert "No measurable gap for `c`: training accuracy not above test accuracy" in text
    assert "smallest: `c`" not in text


def test_one_positive_gap_and_no_gap():
    data = summary({"a": loss_entry(0.6, generalization_gap=statistic(0.05)),
                    "b": loss_entry(0.1, generalization_gap=statistic(0.0))})
    text = findings_runs.overfitting_finding(data)
    assert "Only `a` fits its training images better than the test images." in text
    assert "(training accuracy on training images)" in text
    assert "No measurable gap for `b`" in text
    no_gaps = summary({"a": loss_entry(0.6, generalization_gap=statistic(None, 0))})
    assert findings_runs.overfitting_finding(no_gaps) is None


# ---------------------------------------------------------------------------------------------
# The ranking: never bold on one run, untrainable losses left out with their reasons.
# ---------------------------------------------------------------------------------------------


def test_a_ranking_on_one_run_per_loss_is_not_bold_and_says_it_is_untested():
    data = summary({"a": loss_entry(0.60, runs=1), "b": loss_entry(0.50, runs=1)})
    text = findings.ranking_finding(data, ["a", "b"], {})
    assert text == ("`a` has the highest mean test accuracy: 60.0 % (n = 1). Then `b` 50.0 %. "
                    "This ranking rests on one run per loss and is not tested.")
    tied = summary({"a": loss_entry(0.60, runs=1), "b": loss_entry(0.60, runs=1)})
    assert "**" not in findings.ranking_finding(tied, ["a", "b"], {})


def test_a_ranking_with_one_single_run_loss_names_it():
    data = summary({"a": loss_entry(0.60), "b": loss_entry(0.50, runs=1)})
    text = findings.ranking_finding(data, ["a", "b"], {})
    assert "**" not in text
    assert text.endswith("This ranking rests on one run for `b` and is not tested for them.")
    several = summary({"a": loss_entry(0.60), "b": loss_entry(0.50)})
    assert findings.ranking_finding(several, ["a", "b"], {}).startswith("**`a` has the highest mean test accuracy**")


def test_untrainable_losses_are_left_out_of_the_ranking_with_their_reason():
    data = summary(
        {"a": loss_entry(0.10, above_chance_runs=0), "b": loss_entry(0.60), "c": loss_entry(0.50)},
        [comparison("b", "c", 0.10, 0.01, "primary"), comparison("a", "b", -0.5, 0.001, "primary")],
        hypotheses={"pairs": [], "untrainable_losses": {"a": "Every run stayed at chance"}},
    )
    text = bullets(data)
    ranking = text.splitlines()[0]
    assert ranking.startswith("- **`b` has the highest mean test accuracy**")
    assert "Then `c` 50.0 %." in ranking and "Then `c` 50.0 %, `a`" not in ranking
    assert ranking.endswith("`a` is left out of the ranking as untrainable here: Every run stayed at chance.")


# ---------------------------------------------------------------------------------------------
# No test named where none ran.
# ---------------------------------------------------------------------------------------------


def test_no_sentence_refers_to_tests_when_none_ran():
    untested = [dict(comparison("a", "b", 0.1, 1.0, n=2), tested=False, p_value=None, p_value_holm=None)]
    data = summary({
        "a": loss_entry(0.60, runs=2),
        "b": loss_entry(0.30, runs=2, collapsed_runs=1, collapsed_seeds=[1],
                        test_accuracy_not_collapsed=statistic(0.5, 1)),
    }, untested)
    text = bullets(data)
    assert "The ranking includes these runs" in text
    assert "tests above" not in text and "paired tests include" not in text
    assert "Fewer than 3 seeds shared by any two losses: no significance test." in text


# ---------------------------------------------------------------------------------------------
# Significance: primary and exploratory families are never mixed.
# ---------------------------------------------------------------------------------------------


def test_primary_and_exploratory_comparisons_are_stated_apart():
    data = summary(
        {"a": loss_entry(0.60), "b": loss_entry(0.50), "c": loss_entry(0.45), "d": loss_entry(0.40)},
        [comparison("a", "b", 0.10, 0.004, "primary"), comparison("a", "c", 0.15, 0.20, "primary"),
         comparison("a", "d", 0.20, 0.03, "exploratory"), comparison("b", "c", 0.05, 0.5, "exploratory")],
    )
    text = findings.significance_finding(data, ["a", "b", "c", "d"])
    primary, exploratory = text.split(" Exploratory comparisons")
    assert primary.startswith("Primary comparisons, paired t-tests over seeds (α = 0.05, Holm-adjusted "
                              "within the 2 tested primary pair(s) only): `a` is significantly higher than `b`")
    assert "not significantly different from `c`" in primary and "`d`" not in primary
    assert primary.endswith("1 of 2 tested primary pairwise differences are significant.")
    assert exploratory.startswith(" (hypothesis-generating, not confirmatory), paired t-tests over seeds (α = 0.05, "
                                  "Holm-adjusted within the 2 tested exploratory pair(s) only): `a` is "
                                  "significantly higher than `d`")
    assert "`b`" not in exploratory.split(":")[1].split(".")[0]
    assert exploratory.endswith("1 of 2 tested exploratory pairwise differences are significant.")


def test_an_exploratory_pair_in_the_papers_ranking_is_labelled():
    data = summary({"a": loss_entry(0.60), "b": loss_entry(0.58)},
                   [comparison("a", "b", 0.02, 0.3, "exploratory")])
    paper = {"a": {"validation_accuracy": 0.85}, "b": {"validation_accuracy": 0.55}}
    text = findings.paper_ranking_finding(data, paper, ["a", "b"])
    assert "`a` vs `b`: +2.0 pp, Holm-adjusted p = 0.300 (exploratory)" in text


# ---------------------------------------------------------------------------------------------
# Gradient scale at initialisation.
# ---------------------------------------------------------------------------------------------


def test_gradient_scales_more_than_ten_times_apart_get_a_sentence():
    data = summary({"a": loss_entry(0.6, initial_output_gradient_scale=statistic(0.05)),
                    "b": loss_entry(0.3, initial_output_gradient_scale=statistic(0.002))})
    text = findings.gradient_scale_finding(data, ["a", "b"])
    assert text == ("The losses' gradient scales at initialisation (mean |dL/d output|) differ by 25× "
                    "(`a` 0.05, `b` 0.002): trained at one shared learning rate, the ranking partly "
                    "reflects that scale, not only the losses themselves.")
    assert text in bullets(data)
    # With a tuned rate per loss the scale no longer sets the step sizes, and the sentence says so.
    assert findings.gradient_scale_finding(data, ["a", "b"], "tuned").endswith(
        "`b` 0.002); each loss trained at the learning rate its tuning chose, so the ranking does "
        "not rest on one shared step size.")
    close = summary({"a": loss_entry(0.6, initial_output_gradient_scale=statistic(0.05)),
                     "b": loss_entry(0.3, initial_output_gradient_scale=statistic(0.006))})
    assert findings.gradient_scale_finding(close, ["a", "b"]) is None
    assert findings.gradient_scale_finding(summary({"a": loss_entry(0.6), "b": loss_entry(0.3)}), ["a", "b"]) is None


def test_every_finding_is_a_sentence():
    data = summary({"a": loss_entry(0.55), "b": loss_entry(0.45)},
                   [comparison("a", "b", 0.1, 0.01)])
    for bullet in findings.conclusions(data, {}, PARAMS):
        assert bullet.startswith("- ") and bullet.rstrip().endswith(".")


def test_the_accuracy_table_says_whether_the_losses_shared_a_learning_rate():
    from lossbench.report.tables import accuracy_table

    data = summary({"a": loss_entry(0.6, initial_output_gradient_scale=statistic(0.05))})
    assert accuracy_table(data, {}, [], 0.01)[-1].endswith(
        "all losses share one learning rate, so it sets the size of their first steps.")
    assert accuracy_table(data, {}, [], "tuned")[-1].endswith(
        "each loss trained at its own tuned learning rate (see Learning rates).")
