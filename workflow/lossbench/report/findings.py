"""The report's conclusions: one function per finding, each computed from the summary.

In:  a summary from `lossbench compare` (per loss: test accuracy and its interval, runs above
     chance, collapsed, dead-final-layer and diverged runs, convergence epochs, generalization
     gap, gradient scale at initialisation; per pair of losses: the paired t-test, Holm-
     adjusted within its family, "primary" or "exploratory"; the pre-registered hypotheses
     with the losses found untrainable), the paper's reported accuracies (`report.paper`)
     and the validated params.
Out: `conclusions`, the report's bullets in order: ranking and ties, gradient scales, runs
     above chance, collapsed runs, runs whose final ReLU layer died, significance of the
     paired tests per family, convergence, overfitting, divergence, agreement with the
     paper's ranking and figures, the paper's hinge as a scaled MAE
     (`report_calibration.hinge_as_mae_note`), then the caveats (`paper_setup.caveats`). A finding that
     does not apply (no collapsed run, a single loss...) writes no bullet. The findings
     about single runs live in `lossbench.report.findings_runs`.

Nothing is fixed in advance: a rerun with other results rewrites every sentence, and no
sentence claims more than its numbers carry (a ranking on one run per loss is not bold and
says it is untested; a test is named only where one ran).
"""

from __future__ import annotations

import itertools

from lossbench.report.calibration import hinge_as_mae_note
from lossbench.report.findings_runs import (
    alpha,
    chance_finding,
    collapsed_finding,
    convergence_finding,
    dead_final_layer_finding,
    divergence_finding,
    not_above_chance,
    overfitting_finding,
)
from lossbench.report.paper_setup import caveats, not_comparable_reason, paper_scale_gaps
from lossbench.report.text import backticked, full_sentence, p_value_text, percent, points, scale

# Mean accuracies closer than this are a tie (accuracies are multiples of 1 / test images).
TIE_TOLERANCE = 1e-9
# Gradient scales at initialisation further apart than this factor get a sentence: at one
# shared learning rate, such losses take steps of very different sizes.
GRADIENT_SCALE_RATIO = 10.0
# The families of paired comparisons, in the order the report states them.
FAMILIES = ("primary", "exploratory")


# ---------------------------------------------------------------------------------------------
# Reading the summary.
# ---------------------------------------------------------------------------------------------


def ranked_losses(summary: dict) -> list[str]:
    """Losses with a test accuracy, highest mean first (ties keep the summary's order)."""
    losses = [loss for loss, entry in summary["losses"].items() if entry["test_accuracy"]["mean"] is not None]
    return sorted(losses, key=lambda loss: -summary["losses"][loss]["test_accuracy"]["mean"])


def untrainable_losses(summary: dict) -> dict[str, str]:
    """{loss: reason} of the losses the pre-registration found untrainable here."""
    return dict((summary.get("hypotheses") or {}).get("untrainable_losses") or {})


def comparison_between(summary: dict, loss_a: str, loss_b: str) -> tuple[dict | None, int]:
    """The comparison of a and b and the sign (+1 if stored as a - b, -1 if as b - a)."""
    comparisons = summary.get("comparisons", {})
    if f"{loss_a} vs {loss_b}" in comparisons:
        return comparisons[f"{loss_a} vs {loss_b}"], 1
    if f"{loss_b} vs {loss_a}" in comparisons:
        return comparisons[f"{loss_b} vs {loss_a}"], -1
    return None, 1


def holm_text(comparison: dict) -> str:
    """"Holm-adjusted p = 0.012", "(exploratory)" added for an exploratory pair."""
    text = f"Holm-adjusted {p_value_text(comparison.get('p_value_holm'))}"
    return text + (" (exploratory)" if comparison.get("family") == "exploratory" else "")


# ---------------------------------------------------------------------------------------------
# The findings, in the report's order.
# ---------------------------------------------------------------------------------------------


def ranking_finding(summary: dict, ranking: list[str], untrainable: dict[str, str]) -> str | None:
    """The best loss (or the tied best ones) with its accuracy, then the others in order.

    Bold only when every ranked loss has at least two runs; on one run per loss the
    sentence says so and that the order is not tested. Untrainable losses are left out of
    the ranking, with their reasons.
    """
    losses = summary["losses"]
    ranked = [loss for loss in ranking if loss not in untrainable]
    left_out = "".join(f" `{loss}` is left out of the ranking as untrainable here: {full_sentence(reason)}"
                       for loss, reason in untrainable.items() if loss in losses)
    if not ranked:
        return "No trained loss has a test accuracy, so none can be ranked." + left_out
    top = losses[ranked[0]]["test_accuracy"]
    # Accuracies are multiples of 1 / (test images), so exact ties do happen.
    tied = [loss for loss in ranked if abs(losses[loss]["test_accuracy"]["mean"] - top["mean"]) < TIE_TOLERANCE]
    single = [loss for loss in ranked if losses[loss]["test_accuracy"]["n"] < 2]
    mark = "" if single else "**"
    if len(tied) > 1:
        text = f"{mark}{backticked(tied)} tie for the highest mean test accuracy{mark}: {percent(top['mean'])}."
    else:
        level = summary["confidence_level"]
        interval = (f", {percent(level, 0)} CI {percent(top['ci_low'])} to {percent(top['ci_high'])}"
                    if top.get("ci_low") is not None else "")
        text = (f"{mark}`{ranked[0]}` has the highest mean test accuracy{mark}: {percent(top['mean'])}"
                f"{interval} (n = {top['n']}).")
    rest = [loss for loss in ranked if loss not in tied]
    if rest:
        text += " Then " + ", ".join(
            f"`{loss}` {percent(losses[loss]['test_accuracy']['mean'])}" for loss in rest) + "."
    if single and len(single) == len(ranked):
        text += " This ranking rests on one run per loss and is not tested."
    elif single:
        text += f" This ranking rests on one run for {backticked(single)} and is not tested for them."
    return text + left_out


def gradient_scale_finding(summary: dict, ranking: list[str], learning_rate="shared") -> str | None:
    """Losses whose output gradients at initialisation differ by more than 10×.

    At one shared learning rate a loss whose gradient is a tenth of another's takes steps a
    tenth the size: its rank partly measures that, not the loss's shape. With
    `learning_rate` "tuned" each loss had its own rate, and the sentence says so instead.
    """
    scales = {loss: (summary["losses"][loss].get("initial_output_gradient_scale") or {}).get("mean")
              for loss in ranking}
    scales = {loss: value for loss, value in scales.items() if value is not None and value > 0}
    if len(scales) < 2:
        return None
    largest, smallest = max(scales, key=scales.get), min(scales, key=scales.get)
    ratio = scales[largest] / scales[smallest]
    if ratio <= GRADIENT_SCALE_RATIO:
        return None
    text = (f"The losses' gradient scales at initialisation (mean |dL/d output|) differ by "
            f"{ratio:.0f}× (`{largest}` {scale(scales[largest])}, `{smallest}` {scale(scales[smallest])})")
    if learning_rate == "tuned":
        return text + ("; each loss trained at the learning rate its tuning chose, so the ranking "
                       "does not rest on one shared step size.")
    return text + (": trained at one shared learning rate, the ranking partly reflects that scale, "
                   "not only the losses themselves.")


FAMILY_NAMES = {
    "primary": "Primary comparisons, paired t-tests over seeds",
    "exploratory": "Exploratory comparisons (hypothesis-generating, not confirmatory), paired t-tests over seeds",
    None: "Paired t-tests over seeds",
}


def family_sentence(summary: dict, best: str, others: list[str], family: str | None) -> str | None:
    """The paired t-tests of `best` against `others` within one family of comparisons.

    Holm's adjustment is computed within the family, so the sentence names it and never
    counts a pair of another family. `family` None reads a summary without families.
    """
    members = [entry for entry in summary.get("comparisons", {}).values()
               if entry.get("tested") and entry.get("family") == family]
    if not members:
        return None
    level = summary["confidence_level"]
    significant, not_significant = [], []
    for other in others:
        comparison, sign = comparison_between(summary, best, other)
        if comparison is None or not comparison.get("tested") or comparison.get("family") != family:
            continue
        low, high = sorted((sign * comparison["ci_low"], sign * comparison["ci_high"]))
        detail = (f"`{other}` ({points(sign * comparison['mean_difference'])}, {percent(level, 0)} CI "
                  f"{points(low)} to {points(high)}, Holm-adjusted {p_value_text(comparison.get('p_value_holm'))}, "
                  f"n = {comparison['n']})")
        (significant if comparison.get("significant") else not_significant).append(detail)
    parts = ([f"significantly higher than {', '.join(significant)}"] if significant else []) + (
        [f"not significantly different from {', '.join(not_significant)}"] if not_significant else [])
    pairs = f"within the {len(members)} tested {family} pair(s) only" if family else f"over {len(members)} pair(s)"
    name = FAMILY_NAMES.get(family, f"{family} comparisons, paired t-tests over seeds")
    text = f"{name} (α = {alpha(summary):.2g}, Holm-adjusted {pairs})"
    if parts:
        text += f": `{best}` is " + "; ".join(parts) + "."
    else:
        text += f": none of them involves `{best}`."
    significant_count = sum(1 for entry in members if entry.get("significant"))
    kind = f"{family} " if family else ""
    return text + f" {significant_count} of {len(members)} tested {kind}pairwise differences are significant."


def significance_finding(summary: dict, ranking: list[str]) -> str | None:
    """The paired t-tests of the best loss against each other one, per family."""
    if len(ranking) < 2:
        return None
    comparisons = summary.get("comparisons", {}).values()
    if not any(entry.get("tested") for entry in comparisons):
        return (
            "Fewer than 3 seeds shared by any two losses: no significance test. The ranking "
            "rests on too few runs to separate a difference between losses from seed-to-seed "
            "variation."
        )
    best, others = ranking[0], ranking[1:]
    families = [family for family in FAMILIES if any(entry.get("family") == family for entry in comparisons)]
    families += sorted({entry.get("family") for entry in comparisons if entry.get("family") not in FAMILIES},
                       key=str)
    sentences = [family_sentence(summary, best, others, family) for family in families]
    untested = [other for other in others
                if not (comparison_between(summary, best, other)[0] or {}).get("tested")]
    if untested:
        sentences.append(f"Fewer than 3 shared seeds, no test: {backticked(untested)}.")
    return " ".join(sentence for sentence in sentences if sentence)


def paper_ranking_finding(summary: dict, paper: dict, compared: list[str]) -> str | None:
    """Whether the paper's ranking of its losses is reproduced, claimed only where testable.

    The paper ranks its losses strictly by validation accuracy. Ours reproduces that ranking
    only if every pair in the paper's order differs significantly (Holm-adjusted paired test,
    within the pair's family) in the paper's direction, and contradicts it if some pair
    differs significantly the other way. Otherwise, and whenever no run of one of the losses
    rose above chance, the ranking is not testable at this scale, and the sentence says why.
    """
    if len(compared) < 2:
        return None
    losses = summary["losses"]
    paper_order = sorted(compared, key=lambda loss: -paper[loss]["validation_accuracy"])
    theirs = " > ".join(f"`{loss}`" for loss in paper_order)
    means = {loss: losses[loss]["test_accuracy"]["mean"] for loss in compared}
    ours_order = sorted(compared, key=lambda loss: -means[loss])
    ours = f"`{ours_order[0]}`" + "".join(
        f" {'>' if means[higher] - means[loss] >= TIE_TOLERANCE else '='} `{loss}`"
        for higher, loss in zip(ours_order, ours_order[1:])
    )
    contradicted, untestable = [], []
    for pair in itertools.combinations(paper_order, 2):
        comparison, sign = comparison_between(summary, *pair)
        if comparison is None or not comparison.get("tested"):
            untestable.append(f"`{pair[0]}` vs `{pair[1]}`: fewer than 3 shared seeds")
        elif not comparison.get("significant"):
            untestable.append(f"`{pair[0]}` vs `{pair[1]}`: {points(sign * comparison['mean_difference'])}, "
                              f"{holm_text(comparison)}")
        elif sign * comparison["mean_difference"] < 0:
            contradicted.append(f"`{pair[1]}` is significantly above `{pair[0]}`"
                                + (" (exploratory)" if comparison.get("family") == "exploratory" else ""))
    at_chance = not_above_chance(summary, compared)
    if contradicted:
        return (f"The paper's ranking ({theirs}) is not reproduced: ours is {ours}, and "
                + "; ".join(contradicted) + ".")
    if at_chance:
        return (f"The paper's ranking ({theirs}) is not testable at this scale: "
                f"{backticked(at_chance)} did not rise above chance in any run, so the order says "
                "nothing about the losses.")
    if untestable:
        return (f"The paper's ranking ({theirs}) is not testable at this scale: ours is {ours}, "
                "but not every difference is significant (" + "; ".join(untestable) + "). "
                "More seeds or longer runs could tell.")
    return f"The paper's ranking ({theirs}) is reproduced: every pairwise difference is significant."


def paper_figures_finding(summary: dict, paper: dict, params: dict, compared: list[str]) -> str | None:
    """Our test accuracy minus the paper's, given only for a study at the paper's scale."""
    if not compared:
        return None
    gaps = paper_scale_gaps(summary, params)
    if gaps:
        return (
            "The paper's accuracies are " + not_comparable_reason(gaps) + "; its figures "
            "are final accuracies at that scale, so no difference to them is given."
        )
    differences = ", ".join(
        f"`{loss}` {points(summary['losses'][loss]['test_accuracy']['mean'] - paper[loss]['validation_accuracy'])}"
        for loss in compared
    )
    return f"Test accuracy minus the paper's validation accuracy: {differences}."


def conclusions(summary: dict, paper: dict, params: dict) -> list[str]:
    """The conclusions, one Markdown bullet each, generated from the summary's numbers."""
    everything = ranked_losses(summary)
    untrainable = untrainable_losses(summary)
    ranking = [loss for loss in everything if loss not in untrainable]
    # The losses the paper reports an accuracy for, in our order.
    compared = [loss for loss in everything if (paper.get(loss) or {}).get("validation_accuracy") is not None]
    findings = [
        ranking_finding(summary, everything, untrainable),
        gradient_scale_finding(summary, ranking, params.get("train", {}).get("learning_rate")),
        chance_finding(summary, everything),
        collapsed_finding(summary, params),
        dead_final_layer_finding(summary, params),
        significance_finding(summary, ranking),
        convergence_finding(summary),
        overfitting_finding(summary),
        divergence_finding(summary),
        paper_ranking_finding(summary, paper, compared),
        paper_figures_finding(summary, paper, params, compared),
        hinge_as_mae_note(summary),
        *caveats(summary, params),
    ]
    return [f"- {finding}" for finding in findings if finding is not None]
