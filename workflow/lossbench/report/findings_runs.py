"""The report's findings about individual runs: chance, collapse, dead layers, fit, speed.

In:  a summary from `lossbench compare` (per loss: `above_chance_runs`,
     `above_chance_across_seeds`, collapsed, dead-final-layer and diverged runs, convergence
     epochs, the generalization gap measured on un-augmented training images) and the
     validated params (`evaluate.collapse_share`, `evaluate.dead_layer_share`).
Out: one sentence (a Markdown bullet's text) per finding, or None where it does not apply,
     and the helpers the other findings share (`class_count`, `not_above_chance`, ...).
     `lossbench.report.findings` puts them in the report's order.

Every claim follows a test or a count in the summary: a loss is "not above chance" only when
none of its runs is (each run by an exact binomial test), a layer is "dead" by the measured
share of zeros, and a gap is the clean training accuracy minus the test accuracy.
"""

from __future__ import annotations

from lossbench.report.text import (
    accuracy_with_count,
    accuracy_with_interval,
    backticked,
    duration,
    joined,
    p_value_text,
    percent,
    plural,
    points,
    seeds_text,
)

# The final convolution whose dead ReLU units the dead-layer finding reports.
FINAL_CONV = "conv_9"


# ---------------------------------------------------------------------------------------------
# Reading the summary and the params.
# ---------------------------------------------------------------------------------------------


def class_count(summary: dict) -> int | None:
    """The number of classes, or None when the runs disagree on it (or do not say)."""
    class_counts = summary.get("setup", {}).get("num_classes", [])
    return class_counts[0] if len(class_counts) == 1 else None


def alpha(summary: dict) -> float:
    """The summary's significance level (1 - its confidence level where it gives none)."""
    return summary["alpha"] if "alpha" in summary else round(1.0 - summary["confidence_level"], 12)


def collapse_share(params: dict) -> float:
    """`evaluate.collapse_share`: the share of one predicted class that makes a run collapsed."""
    return float(params["evaluate"]["collapse_share"])


def dead_layer_share(params: dict) -> float:
    """`evaluate.dead_layer_share`: the share of zero activations that makes conv_9 dead."""
    return float(params["evaluate"]["dead_layer_share"])


def not_above_chance(summary: dict, losses: list[str]) -> list[str]:
    """The losses none of whose runs is above chance (`above_chance_runs` == 0).

    A loss whose summary has no `above_chance_runs` (an older summary) is never listed:
    without the per-run tests nothing can be said about it.
    """
    entries = summary["losses"]
    return [loss for loss in losses
            if entries[loss].get("above_chance_runs") == 0 and entries[loss].get("runs", 0) > 0]


def comparisons_tested(summary: dict) -> bool:
    """Whether any paired test between two losses ran."""
    return any(entry.get("tested") for entry in summary.get("comparisons", {}).values())


def convergence_key(summary: dict) -> str | None:
    """The key ("80%") of the highest convergence threshold in the summary, if any."""
    best = None
    for entry in summary["losses"].values():
        for key, value in entry.get("convergence", {}).items():
            if best is None or value["threshold"] > best[0]:
                best = (value["threshold"], key)
    return None if best is None else best[1]


# ---------------------------------------------------------------------------------------------
# The findings.
# ---------------------------------------------------------------------------------------------


def failure_note(entry: dict) -> str:
    """"; 3 with a dead final layer, below" or "; 2 collapsed, below": why a loss's runs
    failed, pointing at the bullet that says so, so that the loss is not blamed for it."""
    if entry.get("dead_final_layer_runs"):
        return f"; {entry['dead_final_layer_runs']} with a dead final layer, below"
    if entry.get("collapsed_runs"):
        return f"; {entry['collapsed_runs']} collapsed, below"
    return ""


def chance_finding(summary: dict, losses: list[str]) -> str | None:
    """How many runs of each loss beat chance, each by an exact one-sided binomial test.

    A loss is said not to be above chance only when none of its runs is. None for a summary
    without the per-run counts (`above_chance_runs`).
    """
    counted = [loss for loss in losses if summary["losses"][loss].get("above_chance_runs") is not None]
    if not counted:
        return None
    entries = summary["losses"]
    classes = class_count(summary)
    chance = "chance" if classes is None else f"chance, {percent(1.0 / classes)} for {classes} classes"
    test = f"exact one-sided binomial test of each run's correct test images, α = {alpha(summary):.2g}"
    if all(entries[loss]["above_chance_runs"] == entries[loss]["runs"] for loss in counted):
        runs = sum(entries[loss]["runs"] for loss in counted)
        return f"Every run is above {chance} ({plural(runs, 'run')}; {test})."
    parts = []
    for loss in counted:
        entry = entries[loss]
        text = f"`{loss}` {entry['above_chance_runs']} of {plural(entry['runs'], 'run')}"
        across = (entry.get("above_chance_across_seeds") or {}).get("p_value")
        if 0 < entry["above_chance_runs"] < entry["runs"] and across is not None:
            text += f" (mean over seeds above chance: one-sided t-test {p_value_text(across)})"
        parts.append(text)
    sentence = f"Runs above {chance} ({test}): " + "; ".join(parts) + "."
    below = not_above_chance(summary, counted)
    if below:
        sentence += " Not above chance in any run: " + ", ".join(
            f"`{loss}` (0 of {entries[loss]['runs']}{failure_note(entries[loss])})" for loss in below
        ) + "."
    return sentence


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
    # Name the paired tests only where one ran: with fewer than 3 seeds there is none.
    included = "The ranking and the paired tests include" if comparisons_tested(summary) else "The ranking includes"
    return (
        f"**{plural(runs, 'run')} collapsed** (one class predicted for at least "
        f"{percent(collapse_share(params), 0)} of the test images): {named}. A collapsed model says "
        f"nothing about its loss. {included} these runs; mean test accuracy " + "; ".join(means) + "."
    )


def zero_share_text(entry: dict, share: float) -> str:
    """How much of conv_9's output was zero in a loss's dead runs, as measured.

    The summary's `dead_final_layer_zero_fraction` (over the dead runs) where compare gives
    it; else, when every measured run of the loss is dead, one minus the mean active fraction
    over them; else only the threshold every dead run met.
    """
    zeros = (entry.get("dead_final_layer_zero_fraction") or {}).get("mean")
    active = entry.get("final_conv_active_fraction") or {}
    if zeros is None and active.get("mean") is not None and active.get("n") == entry["dead_final_layer_runs"]:
        zeros = 1.0 - active["mean"]
    if zeros is None:
        return f"at least {percent(share, 0)} of {FINAL_CONV}'s activations are zero"
    return f"{percent(zeros, 2)} of {FINAL_CONV}'s activations are zero"


def dead_final_layer_finding(summary: dict, params: dict) -> str | None:
    """The runs whose final ReLU layer died: a failure of the architecture, not of the loss."""
    dead = {loss: entry for loss, entry in summary["losses"].items() if entry.get("dead_final_layer_runs")}
    if not dead:
        return None
    share = dead_layer_share(params)
    runs = sum(entry["dead_final_layer_runs"] for entry in dead.values())
    named = "; ".join(
        f"`{loss}` ({seeds_text(entry['dead_final_layer_seeds'])}): {zero_share_text(entry, share)}"
        for loss, entry in dead.items()
    )
    remaining = [
        f"`{loss}`: none remain" if (entry.get("test_accuracy_alive") or {}).get("mean") is None
        else f"`{loss}` {accuracy_with_count(entry['test_accuracy_alive'])}"
        for loss, entry in dead.items()
    ]
    return (
        f"**{plural(runs, 'run')} lost {'their' if runs > 1 else 'its'} final ReLU layer** "
        f"(at least {percent(share, 0)} of the last convolution's activations on the test images "
        f"zero, `evaluate.dead_layer_share`): {named}. `{FINAL_CONV}` is a ReLU on the class "
        "scores: with (nearly) all of it zero, the dense layer sees (nearly) the same input for "
        "every image and predicts (nearly) one class, so the accuracy says nothing about the "
        "loss. This is a failure of the paper's architecture (a ReLU on the class-score layer, "
        "no batch normalisation) under this training setup, not evidence about the loss; these "
        "runs still count in the means above. Mean test accuracy over the remaining seeds: "
        + "; ".join(remaining) + "."
    )


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
    never = [loss for loss, entry in losses.items()
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
        text += f" Never reached {label}: {backticked(never)}."
    return text


def overfitting_finding(summary: dict) -> str | None:
    """The gap between training and test accuracy per loss, both measured on the final model.

    A gap at or below zero (training accuracy on the sample no higher than test accuracy) is
    reported as no measurable gap, never as the "smallest gap": it is sampling noise or an
    untrained model, not better generalisation.
    """
    gaps = {loss: entry["generalization_gap"]["mean"] for loss, entry in summary["losses"].items()
            if (entry.get("generalization_gap") or {}).get("mean") is not None}
    if not gaps:
        return None
    images = [count for count in summary.get("setup", {}).get("train_accuracy_images", []) if count]
    sample = f"{joined(f'{count:,}' for count in images)} training images" if images else "training images"
    ordered = sorted(gaps, key=lambda loss: -gaps[loss])
    text = (
        "Training minus test accuracy, both of the final model without augmentation (training "
        f"accuracy on {sample}): " + ", ".join(f"`{loss}` {points(gaps[loss])}" for loss in ordered) + "."
    )
    positive = [loss for loss in ordered if gaps[loss] > 0]
    if len(positive) > 1 and points(gaps[positive[0]]) != points(gaps[positive[-1]]):
        text += f" Largest gap: `{positive[0]}`; smallest: `{positive[-1]}`."
    elif len(positive) == 1 and len(ordered) > 1:
        text += f" Only `{positive[0]}` fits its training images better than the test images."
    flat = [loss for loss in ordered if gaps[loss] <= 0]
    if flat:
        text += (f" No measurable gap for {backticked(flat)}: training accuracy not above test "
                 "accuracy, which is sampling noise or an untrained model, not better generalisation.")
    return text


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
