"""The report's conclusions: one function per finding, each computed from the summary.

In:  a summary from `lossbench compare` (per loss: test accuracy and its interval, collapsed,
     dead-final-layer and diverged runs, convergence epochs, generalization gap; per pair of
     losses: the Holm-adjusted paired t-test), the paper's reported accuracies
     (`report.paper`) and the validated params.
Out: `conclusions`, the report's bullets in order: ranking and ties, losses not above chance,
     collapsed runs, runs whose final ReLU layer died, significance of the paired tests,
     convergence, overfitting, divergence, agreement with the paper's ranking and figures,
     then the caveats (`paper_setup.caveats`). A finding that does not apply (no collapsed
     run, a single loss...) writes no bullet.

Nothing is fixed in advance: a rerun with other results rewrites every sentence.
"""

from __future__ import annotations

import itertools

from lossbench.paper_setup import caveats, not_comparable_reason, paper_scale_gaps
from lossbench.report_text import (
    accuracy_with_count,
    accuracy_with_interval,
    duration,
    joined,
    p_value_text,
    percent,
    points,
    seeds_text,
)

# Mean accuracies closer than this are a tie (accuracies are multiples of 1 / test images).
TIE_TOLERANCE = 1e-9
# A test accuracy within this of chance (as a fraction) counts as "not above chance".
CHANCE_MARGIN = 0.01


# ---------------------------------------------------------------------------------------------
# Reading the summary.
# ---------------------------------------------------------------------------------------------


def ranked_losses(summary: dict) -> list[str]:
    """Losses with a test accuracy, highest mean first (ties keep the summary's order)."""
    losses = [loss for loss, entry in summary["losses"].items() if entry["test_accuracy"]["mean"] is not None]
    return sorted(losses, key=lambda loss: -summary["losses"][loss]["test_accuracy"]["mean"])


def class_count(summary: dict) -> int | None:
    """The number of classes, or None when the runs disagree on it (or do not say)."""
    class_counts = summary.get("setup", {}).get("num_classes", [])
    return class_counts[0] if len(class_counts) == 1 else None


def above_chance(statistics: dict, chance: float) -> bool:
    """Whether a test accuracy is above chance: its interval's lower end, or for a single
    run the accuracy itself, more than `CHANCE_MARGIN` above it."""
    lower = statistics["ci_low"] if statistics.get("ci_low") is not None else statistics["mean"]
    return lower is not None and lower > chance + CHANCE_MARGIN


def convergence_key(summary: dict) -> str | None:
    """The key ("80%") of the highest convergence threshold in the summary, if any."""
    best = None
    for entry in summary["losses"].values():
        for key, value in entry.get("convergence", {}).items():
            if best is None or value["threshold"] > best[0]:
                best = (value["threshold"], key)
    return None if best is None else best[1]


def comparison_between(summary: dict, loss_a: str, loss_b: str) -> tuple[dict | None, int]:
    """The comparison of a and b and the sign (+1 if stored as a - b, -1 if as b - a)."""
    comparisons = summary.get("comparisons", {})
    if f"{loss_a} vs {loss_b}" in comparisons:
        return comparisons[f"{loss_a} vs {loss_b}"], 1
    if f"{loss_b} vs {loss_a}" in comparisons:
        return comparisons[f"{loss_b} vs {loss_a}"], -1
    return None, 1


def collapse_share(params: dict) -> float:
    """`evaluate.collapse_share`: the share of one predicted class that makes a run collapsed."""
    return float((params.get("evaluate") or {}).get("collapse_share", 0.9))


def plural(number: int, word: str) -> str:
    """"1 run", "4 runs"."""
    return f"{number} {word}{'s' if number > 1 else ''}"


# ---------------------------------------------------------------------------------------------
# The findings, in the report's order.
# ---------------------------------------------------------------------------------------------


def ranking_finding(summary: dict, ranking: list[str]) -> str:
    """The best loss (or the tied best ones) with its accuracy, then the others in order."""
    if not ranking:
        return "No run has a test accuracy, so no loss can be ranked."
    losses = summary["losses"]
    statistics = losses[ranking[0]]["test_accuracy"]
    # Accuracies are multiples of 1 / (test images), so exact ties do happen.
    tied = [loss for loss in ranking
            if abs(losses[loss]["test_accuracy"]["mean"] - statistics["mean"]) < TIE_TOLERANCE]
    if len(tied) > 1:
        text = (
            f"**{', '.join(f'`{loss}`' for loss in tied)} tie for the highest mean test "
            f"accuracy**: {percent(statistics['mean'])}."
        )
    else:
        level = summary.get("confidence_level", 0.95)
        interval = (
            f", {percent(level, 0)} CI {percent(statistics['ci_low'])} to {percent(statistics['ci_high'])}"
            if statistics["ci_low"] is not None else ""
        )
        text = (
            f"**`{ranking[0]}` has the highest mean test accuracy**: {percent(statistics['mean'])}"
            f"{interval} (n = {statistics['n']})."
        )
    rest = [loss for loss in ranking if loss not in tied]
    if rest:
        text += " Then " + ", ".join(
            f"`{loss}` {percent(losses[loss]['test_accuracy']['mean'])}" for loss in rest
        ) + "."
    return text


def chance_finding(summary: dict, ranking: list[str]) -> str | None:
    """The losses that learned nothing measurable (the paper's hinge can, in short runs)."""
    classes = class_count(summary)
    if classes is None or not ranking:
        return None
    chance = 1.0 / classes
    losses = summary["losses"]
    at_chance = [loss for loss in ranking if not above_chance(losses[loss]["test_accuracy"], chance)]
    if not at_chance:
        return None
    named = []
    for loss in at_chance:
        dead = losses[loss].get("dead_final_layer_runs", 0)
        collapsed = losses[loss].get("collapsed_runs", 0)
        # Point at the reason given below, so that the loss is not blamed for a broken run.
        if dead:
            note = f" ({dead} of {losses[loss]['runs']} runs with a dead final layer, below)"
        elif collapsed:
            note = f" ({collapsed} of {losses[loss]['runs']} runs collapsed, below)"
        else:
            note = ""
        named.append(f"`{loss}`{note}")
    return f"Not above chance ({percent(chance)} for {classes} classes): {', '.join(named)}."


def collapsed_finding(summary: dict, params: dict) -> str | None:
    """The collapsed runs per loss, with the mean test accuracies with and without them."""
    collapsed = {loss: entry for loss, entry in summary["losses"].items() if entry.get("collapsed_runs")}
    if not collapsed:
        return None
    runs = sum(entry["collapsed_runs"] for entry in collapsed.values())
    named = ", ".join(
        f"`{loss}` {entry['collapsed_runs']} of {entry['runs']} ({seeds_text(entry['collapsed_seeds'])})"
        for loss, entry in collapsed.items()
    )
    means = []
    for loss, entry in collapsed.items():
        without = entry.get("test_accuracy_not_collapsed") or {}
        kept = "none remain" if without.get("mean") is None else accuracy_with_count(without)
        means.append(f"`{loss}` {accuracy_with_interval(entry['test_accuracy'])} with them, {kept} without")
    return (
        f"**{plural(runs, 'run')} collapsed** (one class predicted for at least "
        f"{percent(collapse_share(params), 0)} of the test images): {named}. A collapsed model says "
        "nothing about its loss. The ranking and the tests above include these runs; mean test "
        "accuracy " + "; ".join(means) + "."
    )


def dead_final_layer_finding(summary: dict) -> str | None:
    """The runs whose final ReLU layer died: a failure of the architecture, not of the loss."""
    dead = {loss: entry for loss, entry in summary["losses"].items() if entry.get("dead_final_layer_runs")}
    if not dead:
        return None
    runs = sum(entry["dead_final_layer_runs"] for entry in dead.values())
    named = ", ".join(
        f"`{loss}` ({seeds_text(entry['dead_final_layer_seeds'])})"
        for loss, entry in dead.items()
    )
    classes = class_count(summary)
    if classes is None:
        units, chance = "all class-score units", ""
    else:
        units, chance = f"all {classes} class-score units", f" ({percent(1.0 / classes)} for {classes} classes)"
    remaining = [
        f"`{loss}`: none remain" if (entry.get("test_accuracy_alive") or {}).get("mean") is None
        else f"`{loss}` {accuracy_with_count(entry['test_accuracy_alive'])}"
        for loss, entry in dead.items()
    ]
    return (
        f"**{plural(runs, 'run')} lost {'their' if runs > 1 else 'its'} final ReLU layer**: "
        f"{named}. In {'each' if runs > 1 else 'it'}, {units} of the last convolution (`conv_9`, "
        "a ReLU on the class scores) output 0 on every test image, so the dense layer saw the "
        "same input for every image and predicted one class for all of them: the accuracy is "
        f"chance{chance}. This is a failure of the paper's architecture (a ReLU on the "
        "class-score layer, no batch normalisation) under this training setup, not evidence "
        "about the loss; these runs still count in the means above. Mean test accuracy over "
        "the remaining seeds: " + "; ".join(remaining) + "."
    )


def significance_finding(summary: dict, ranking: list[str]) -> str | None:
    """The paired t-tests of the best loss against each other one, Holm-adjusted."""
    if len(ranking) < 2:
        return None
    tested = [entry for entry in summary.get("comparisons", {}).values() if entry.get("tested")]
    if not tested:
        return (
            "Fewer than 3 seeds shared by any two losses: no significance test. The ranking "
            "rests on too few runs to separate a difference between losses from seed-to-seed "
            "variation."
        )
    level = summary.get("confidence_level", 0.95)
    alpha = summary.get("alpha", 1.0 - level)
    best = ranking[0]
    significant, not_significant, untested = [], [], []
    for other in ranking[1:]:
        comparison, sign = comparison_between(summary, best, other)
        if comparison is None or not comparison.get("tested"):
            untested.append(f"`{other}`")
            continue
        low, high = sorted((sign * comparison["ci_low"], sign * comparison["ci_high"]))
        detail = (
            f"`{other}` ({points(sign * comparison['mean_difference'])}, {percent(level, 0)} CI "
            f"{points(low)} to {points(high)}, "
            f"Holm-adjusted {p_value_text(comparison.get('p_value_holm'))}, n = {comparison['n']})"
        )
        (significant if comparison.get("significant") else not_significant).append(detail)
    parts = []
    if significant:
        parts.append(f"significantly higher than {', '.join(significant)}")
    if not_significant:
        parts.append(f"not significantly different from {', '.join(not_significant)}")
    text = (
        f"Paired t-tests over seeds (α = {alpha:.2g}, Holm-adjusted over "
        f"{len(tested)} pair(s)): `{best}` is " + "; ".join(parts) + "."
    )
    if untested:
        text += f" Fewer than 3 shared seeds, no test: {', '.join(untested)}."
    significant_pairs = sum(1 for entry in tested if entry.get("significant"))
    return text + f" {significant_pairs} of {len(tested)} tested pairwise differences are significant."


def convergence_finding(summary: dict) -> str | None:
    """The loss fastest to the highest convergence threshold, and those that never got there."""
    key = convergence_key(summary)
    if key is None:
        return None
    label = key.replace("%", " %")
    losses = summary["losses"]
    reached = {
        loss: entry["convergence"][key] for loss, entry in losses.items()
        if key in entry.get("convergence", {}) and entry["convergence"][key]["reached"] > 0
    }
    never = [f"`{loss}`" for loss, entry in losses.items()
             if key in entry.get("convergence", {}) and entry["convergence"][key]["reached"] == 0]
    if not reached:
        return f"No loss reached {label} validation accuracy in any run."
    fastest = min(reached, key=lambda loss: reached[loss]["epoch"]["mean"])
    statistics = reached[fastest]
    text = (
        f"Fastest to {label} validation accuracy: `{fastest}`, at epoch "
        f"{statistics['epoch']['mean']:.1f} on average ({statistics['reached']} of "
        f"{losses[fastest]['runs']} runs reached it"
    )
    seconds = statistics["seconds"]["mean"]
    text += f", after {duration(seconds)} of training)." if seconds is not None else ")."
    if never:
        text += f" Never reached {label}: {', '.join(never)}."
    return text


def overfitting_finding(summary: dict) -> str | None:
    """The largest and smallest gap between final training and test accuracy."""
    gaps = {loss: entry["generalization_gap"]["mean"] for loss, entry in summary["losses"].items()
            if entry.get("generalization_gap", {}).get("mean") is not None}
    if len(gaps) < 2:
        return None
    largest = max(gaps, key=gaps.get)
    smallest = min(gaps, key=gaps.get)
    if points(gaps[largest]) == points(gaps[smallest]):
        return (
            "The gap between final training and test accuracy is the same for every loss, "
            f"to the shown precision ({points(gaps[largest])})."
        )
    return (
        f"Largest gap between final training and test accuracy: `{largest}` "
        f"({points(gaps[largest])}); smallest: `{smallest}` ({points(gaps[smallest])})."
    )


def divergence_finding(summary: dict) -> str | None:
    """The runs whose loss became non-finite."""
    diverged = [
        f"`{loss}` (seed {joined(entry['diverged_seeds'])})"
        for loss, entry in summary["losses"].items() if entry.get("diverged_runs")
    ]
    if not diverged:
        return None
    return (
        "Diverged runs (non-finite loss; their images without a finite score count as "
        f"errors): {', '.join(diverged)}."
    )


def paper_ranking_finding(summary: dict, paper: dict, compared: list[str]) -> str | None:
    """Whether the paper's ranking of its losses is reproduced, claimed only where testable.

    The paper ranks its losses strictly by validation accuracy. Ours reproduces that ranking
    only if every neighbouring pair in the paper's order differs significantly (Holm-adjusted
    paired test) in the paper's direction, and contradicts it if some pair differs
    significantly the other way. Otherwise, and whenever one of the losses never rose above
    chance, the ranking is not testable at this scale, and the sentence says why.
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
            untestable.append(
                f"`{pair[0]}` vs `{pair[1]}`: {points(sign * comparison['mean_difference'])}, "
                f"Holm-adjusted {p_value_text(comparison.get('p_value_holm'))}"
            )
        elif sign * comparison["mean_difference"] < 0:
            contradicted.append(f"`{pair[1]}` is significantly above `{pair[0]}`")
    classes = class_count(summary)
    at_chance = [] if classes is None else [
        f"`{loss}`" for loss in compared if not above_chance(losses[loss]["test_accuracy"], 1.0 / classes)
    ]
    if contradicted:
        return (f"The paper's ranking ({theirs}) is not reproduced: ours is {ours}, and "
                + "; ".join(contradicted) + ".")
    if at_chance:
        return (f"The paper's ranking ({theirs}) is not testable at this scale: "
                f"{', '.join(at_chance)} did not rise above chance, so the order says nothing "
                "about the losses.")
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
    ranking = ranked_losses(summary)
    # The losses the paper reports an accuracy for, in our order.
    compared = [loss for loss in ranking if (paper.get(loss) or {}).get("validation_accuracy") is not None]
    findings = [
        ranking_finding(summary, ranking),
        chance_finding(summary, ranking),
        collapsed_finding(summary, params),
        dead_final_layer_finding(summary),
        significance_finding(summary, ranking),
        convergence_finding(summary),
        overfitting_finding(summary),
        divergence_finding(summary),
        paper_ranking_finding(summary, paper, compared),
        paper_figures_finding(summary, paper, params, compared),
        *caveats(summary, params),
    ]
    return [f"- {finding}" for finding in findings if finding is not None]
