"""The pre-registered primary family: one verdict per pair, Holm within each family."""

import numpy as np
import pytest
from scipy import stats

from lossbench import compare
from lossbench.compare import hypotheses

PARAMS = {
    "confidence_level": 0.95,
    "primary_pairs": [["ce", "sq"], ["sq", "hinge"], ["ce", "hinge"]],
    "equivalence_margin": 0.02,
    "power": 0.8,
}
SEEDS = range(8)
RANDOM = np.random.default_rng(0)


def accuracies(base, scale=0.004):
    """Eight seeds' accuracies around `base`, each loss with noise of its own."""
    return {seed: base + value for seed, value in zip(SEEDS, RANDOM.normal(0, scale, len(SEEDS)))}


def verdicts(values, params=PARAMS):
    family = hypotheses.primary_family_verdicts(values, params, 0.05, {})
    return {(pair["loss_a"], pair["loss_b"]): pair for pair in family["pairs"]}


def test_each_verdict_follows_from_the_data():
    values = {"ce": accuracies(0.60), "sq": accuracies(0.65)}
    # Hinge is squared hinge give or take 0.3 points, no shift: equivalent within 2 points.
    # (A small but consistent shift would be "reproduced": significance comes first.)
    values["hinge"] = {seed: value + RANDOM.normal(0, 0.003) for seed, value in values["sq"].items()}
    pairs = verdicts(values)
    # Squared hinge beats cross-entropy by 5 points: the paper's claim reversed.
    assert pairs[("ce", "sq")]["verdict"] == "reversed"
    assert pairs[("sq", "hinge")]["verdict"] == "equivalent"
    assert pairs[("ce", "hinge")]["verdict"] == "reversed"
    assert pairs[("ce", "sq")]["mean_difference"] == pytest.approx(-0.05, abs=5e-3)


def test_a_clear_win_in_the_papers_direction_is_reproduced_with_holm_over_three():
    values = {"ce": accuracies(0.70), "sq": accuracies(0.60), "hinge": accuracies(0.50)}
    pairs = verdicts(values)
    assert {pair["verdict"] for pair in pairs.values()} == {"reproduced"}
    raw = [pair["p_value"] for pair in pairs.values()]
    order = np.argsort(raw)
    # Holm by hand: the smallest p times 3, the next times 2 (monotone), the largest times 1.
    expected = np.maximum.accumulate([min(1, raw[index] * (3 - rank)) for rank, index in enumerate(order)])
    for rank, index in enumerate(order):
        assert list(pairs.values())[index]["p_value_holm"] == pytest.approx(expected[rank])


def test_an_inconclusive_pair_states_the_difference_it_could_have_detected():
    values = {"ce": accuracies(0.60, scale=0.05), "sq": accuracies(0.595), "hinge": accuracies(0.30)}
    pair = verdicts(values)[("ce", "sq")]
    assert pair["verdict"] == "inconclusive"
    # Independent check of the power statement: a paired t-test of n seeds at alpha / 3 has
    # power 0.8 against a true difference of `minimum_detectable_difference` (noncentral t).
    n, alpha = pair["n"], 0.05 / 3
    noncentrality = pair["minimum_detectable_difference"] / pair["std_difference"] * np.sqrt(n)
    critical = stats.t.ppf(1 - alpha / 2, n - 1)
    power = stats.nct.sf(critical, n - 1, noncentrality) + stats.nct.cdf(-critical, n - 1, noncentrality)
    assert power == pytest.approx(0.8, abs=1e-3)
    assert pair["effect_size"] == pytest.approx(pair["mean_difference"] / pair["std_difference"])


def test_pairs_with_too_few_seeds_or_absent_losses_are_not_tested():
    values = {"ce": {0: 0.6, 1: 0.61}, "sq": {0: 0.5, 1: 0.52}}
    pairs = verdicts(values)
    assert {pair["verdict"] for pair in pairs.values()} == {"not tested"}
    assert pairs[("sq", "hinge")]["n"] == 0


def test_compare_keeps_the_families_apart_and_leaves_out_collapsed_losses():
    runs = []
    for loss, base in (("ce", 0.7), ("sq", 0.6), ("hinge", 0.5), ("other", 0.55), ("cs", 0.1)):
        for seed in SEEDS:
            runs.append({"loss": loss, "seed": seed, "test_accuracy": base + RANDOM.normal(0, 0.004),
                         "collapsed": loss == "cs", "class_names": list("abcdefghij")})
    summary = compare.summarise(runs, PARAMS)
    families = {key: value["family"] for key, value in summary["comparisons"].items()}
    assert families["ce vs sq"] == families["sq vs hinge"] == families["ce vs hinge"] == "primary"
    assert families["ce vs other"] == "exploratory"
    assert families["ce vs cs"] == "excluded" and summary["comparisons"]["ce vs cs"]["p_value_holm"] is None
    exploratory = [value for value in summary["comparisons"].values() if value["family"] == "exploratory"]
    assert len(exploratory) == 3  # other against ce, sq and hinge
    raw = sorted(value["p_value"] for value in exploratory)
    assert min(value["p_value_holm"] for value in exploratory) == pytest.approx(min(1, 3 * raw[0]))
    assert summary["hypotheses"]["untrainable_losses"] == {"cs": "8 of 8 runs collapsed to predicting one class"}
    assert summary["losses"]["ce"]["above_chance_across_seeds"]["p_value"] < 1e-6


def test_primary_pairs_must_name_two_losses():
    from lossbench.pipeline.params import ParamsError, load_params, validate_params

    params = load_params("params.yaml")
    params["compare"]["primary_pairs"] = [["categorical_crossentropy"]]
    with pytest.raises(ParamsError, match="primary_pairs"):
        validate_params(params)


def family(*verdict_words):
    names = [("ce", "sq"), ("sq", "hinge"), ("ce", "hinge")]
    return {"pairs": [{"loss_a": a, "loss_b": b, "verdict": word, "n": 8, "mean_difference": 0.05,
                       "ci_low": 0.03, "ci_high": 0.07, "effect_size": 2.0, "p_value_holm": 0.001,
                       "equivalence_p_value_holm": 0.9, "minimum_detectable_difference": 0.021}
                      for (a, b), word in zip(names, verdict_words)]}


def test_the_survival_sentence_follows_the_two_arms():
    reproduced = family("reproduced", "reproduced", "reproduced")
    assert hypotheses.survival_sentence(reproduced, reproduced).endswith(
        "the paper's ranking survives a fair learning rate.")
    changed = family("reversed", "reproduced", "inconclusive")
    sentence = hypotheses.survival_sentence(reproduced, changed)
    assert sentence.startswith("The paper's ranking does not survive a fair learning rate unchanged")
    assert "`ce` > `sq`: reproduced → reversed" in sentence and "`ce` > `hinge`: reproduced → inconclusive" in sentence
    assert "`sq` > `hinge`" not in sentence
    # Only significance lost: not shown to survive, which is not "does not survive".
    weaker = family("inconclusive", "reproduced", "inconclusive")
    assert hypotheses.survival_sentence(reproduced, weaker, condition="40 % label noise") == (
        "The paper's ranking is not shown to survive 40 % label noise: `ce` > `sq`: reproduced → "
        "inconclusive; `ce` > `hinge`: reproduced → inconclusive (inconclusive, not reversed).")
    untestable = family("reproduced", "not testable", "reproduced")
    assert "cannot be said yet: `sq` > `hinge` was not tested in both arms" in \
        hypotheses.survival_sentence(reproduced, untestable)
    untested = family("not tested", "reproduced", "reproduced")
    assert "cannot be said yet" in hypotheses.survival_sentence(reproduced, untested)
    same = family("inconclusive", "inconclusive", "inconclusive")
    assert "does not change the answer" in hypotheses.survival_sentence(same, same)


def test_the_survival_sentence_names_what_the_second_arm_changes():
    reproduced = family("reproduced", "reproduced", "reproduced")
    noise = "40 % label noise"
    assert hypotheses.survival_sentence(reproduced, reproduced, "the noise 0", "the noise 0.4",
                                        condition=noise) == (
        "Every verdict at the noise 0 is the same at the noise 0.4 (reproduced): the paper's "
        "ranking survives 40 % label noise.")
    changed = family("reproduced", "equivalent", "reproduced")
    assert hypotheses.survival_sentence(reproduced, changed, condition=noise) == (
        "The paper's ranking does not survive 40 % label noise unchanged: "
        "`sq` > `hinge`: reproduced → equivalent.")
    untested = family("not tested", "reproduced", "reproduced")
    assert hypotheses.survival_sentence(reproduced, untested, condition=noise).startswith(
        "Whether the paper's ranking survives 40 % label noise cannot be said yet")
    same = family("inconclusive", "inconclusive", "inconclusive")
    assert hypotheses.survival_sentence(same, same, condition=noise).endswith(
        "fares the same under both, so 40 % label noise does not change the answer.")
    # The Markdown of two arms ends with that sentence; the default stays the learning rate's.
    arms = {"noise 0": reproduced, "noise 0.4": changed}
    assert hypotheses.verdicts_markdown(arms, condition=noise).endswith(
        "`sq` > `hinge`: reproduced → equivalent.\n")
    assert "survive a fair learning rate unchanged" in hypotheses.verdicts_markdown(arms)


def test_the_verdict_table_gives_points_intervals_and_the_detectable_difference():
    rows = hypotheses.verdict_table({"paper lr": family("reproduced", "inconclusive", "equivalent")})
    assert rows[2] == ("| paper lr | `ce` > `sq` | 8 | +5.0 (+3.0 to +7.0) | 2.00 | 0.001 | 0.9 | "
                       "**reproduced** |")
    assert "**inconclusive (could detect ≥ 2.1 points)**" in rows[3]


def test_lossbench_verdicts_puts_two_arms_side_by_side(tmp_path):
    import json
    from pathlib import Path

    from lossbench import cli

    paths = []
    for name, words in (("paper", ("reproduced",) * 3), ("tuned", ("reversed", "reproduced", "reproduced"))):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"hypotheses": family(*words)}))
        paths.append(f"{name} lr={path}")
    output = tmp_path / "verdicts.md"
    project = Path(__file__).resolve().parent.parent
    assert cli.main(["--params", str(project / "params.yaml"), "verdicts", "--arm", paths[0],
                     "--arm", paths[1], "--output", str(output)]) in (0, None)
    text = output.read_text()
    assert text.count("| paper lr |") == 3 and text.count("| tuned lr |") == 3
    assert text.rstrip().endswith("`ce` > `sq`: reproduced → reversed.")
    # --condition names what the second arm changes (the label-noise study's sentence).
    assert cli.main(["--params", str(project / "params.yaml"), "verdicts", "--arm", paths[0],
                     "--arm", paths[1], "--condition", "40 % label noise", "--output", str(output)]) in (0, None)
    assert output.read_text().rstrip().endswith(
        "The paper's ranking does not survive 40 % label noise unchanged: `ce` > `sq`: reproduced → reversed.")


def test_a_pair_with_an_untrainable_loss_is_not_testable_and_leaves_the_family():
    """The trainability precondition: a pair with a loss compare judged untrainable gets "not
    testable" whatever its p-value (here a huge difference), and Holm runs over the others."""
    from lossbench.report.hypotheses import verdict_sentence

    values = {"ce": {s: 0.70 + 0.01 * s for s in SEEDS}, "sq": {s: 0.60 + 0.012 * s for s in SEEDS},
              "hinge": {s: 0.10 for s in SEEDS}}
    params = PARAMS
    untrainable = {"hinge": "8 of 8 runs collapsed to predicting one class"}
    family = hypotheses.primary_family_verdicts(values, params, 0.05, untrainable)
    pairs = {(pair["loss_a"], pair["loss_b"]): pair for pair in family["pairs"]}
    assert pairs[("sq", "hinge")]["verdict"] == pairs[("ce", "hinge")]["verdict"] == "not testable"
    assert pairs[("ce", "hinge")]["p_value"] < 1e-6  # kept for the record, never a verdict
    assert pairs[("ce", "hinge")]["p_value_holm"] is None
    assert family["family_size"] == 1
    alone = pairs[("ce", "sq")]
    assert alone["verdict"] == "reproduced" and alone["p_value_holm"] == pytest.approx(alone["p_value"])
    sentence = verdict_sentence(pairs[("ce", "hinge")], family, untrainable, 0.95)
    assert sentence == ("`ce` > `hinge`: not testable. `hinge` did not train (8 of 8 runs collapsed "
                        "to predicting one class), so its accuracy measures that, not the loss; "
                        "no verdict whatever the p-value.")
