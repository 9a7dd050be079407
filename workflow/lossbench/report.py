"""The `report` stage: write `reports/report.md` from the summary and the figures.

In:  `reports/summary.json` (from `lossbench compare`), the figure directory (from
     `lossbench figures`), `report.paper` (the paper's reported accuracies) and the validated
     params, of which the report reads the keys in `PARAMS_READ`.
Out: one Markdown file with
     - the setup: data source, dataset, image counts, epochs, batch size, model width and
       parameter count, device, backend, precision, library versions, losses and seeds;
     - one results table: per loss, test accuracy (mean ± confidence-interval half-width),
       final training accuracy, best validation accuracy and its epoch, epochs to the highest
       convergence threshold, training time, and beside them the paper's figures with the
       differences;
     - conclusions generated from those numbers (ranking and ties, losses not above chance,
       runs whose final ReLU layer died (every class-score unit of `conv_9` 0 on every test
       image, so a constant prediction: chance accuracy that says nothing about the loss),
       significance of the paired tests, convergence, overfitting, divergence, agreement
       with the paper, and every way this setup differs from the paper's: fewer epochs, a
       narrower model, another copy of the data, data subsets...);
     - the figures, linked relative to the report;
     - the command and environment that produced it.

Nothing in the text is fixed in advance: every number and every conclusion is computed from
the summary, so a rerun with other results rewrites the conclusions.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Iterable

from lossbench.atomic import write_text
from lossbench.params import STAGE_PARAMS

# The params.yaml keys this stage reads (besides the summary and figures it is given).
PARAMS_READ = STAGE_PARAMS["report"]

PAPER_EPOCHS = 100
PAPER_PARAMETERS = 1_376_148
PAPER_TRAIN_IMAGES = 50_000
PAPER_TEST_IMAGES = 10_000
PAPER_TITLE = (
    "Dierauf, Stutz and Marti, *Comparing Cross-Entropy, Hinge, and Squared Hinge Loss "
    "Functions in Image Classification* (KTH DD2417)"
)
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "image_folder": "an image-folder archive"}
MISSING = "—"
# Mean accuracies closer than this are a tie (accuracies are multiples of 1 / test images).
TIE_TOLERANCE = 1e-9
# A test accuracy within this of chance (as a fraction) counts as "not above chance".
CHANCE_MARGIN = 0.01


# ---------------------------------------------------------------------------------------------
# Formatting.
# ---------------------------------------------------------------------------------------------


def percent(fraction: float | None, decimals: int = 1) -> str:
    """0.8432 -> "84.3 %"; None -> "—"."""
    return MISSING if fraction is None else f"{100.0 * fraction:.{decimals}f} %"


def points(difference: float | None, decimals: int = 1) -> str:
    """A difference of fractions in percentage points: 0.012 -> "+1.2 pp"."""
    return MISSING if difference is None else f"{100.0 * difference:+.{decimals}f} pp"


def duration(seconds: float | None) -> str:
    """Seconds as "45 s", "12.5 min" or "7 h 30 min"."""
    if seconds is None:
        return MISSING
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def p_value_text(p_value: float | None) -> str:
    """"p = 0.012", "p < 0.001", or "p undefined" (identical differences in every seed)."""
    if p_value is None:
        return "p undefined"
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


def joined(values: Iterable[Any]) -> str:
    """Values as "a, b, c", or "—" when there are none."""
    values = [str(value) for value in values]
    return ", ".join(values) if values else MISSING


def count(number: int) -> str:
    """An integer with thousands separators: 1376148 -> "1,376,148"."""
    return f"{number:,}"


def half_width(statistics: dict) -> float | None:
    """Half the width of a summary statistic's confidence interval, or None without one."""
    if statistics.get("ci_low") is None or statistics.get("ci_high") is None:
        return None
    return (statistics["ci_high"] - statistics["ci_low"]) / 2.0


def accuracy_with_interval(statistics: dict) -> str:
    """"84.3 % ± 0.6" (interval half-width in percentage points) or "84.3 %" for one run.

    An accuracy lies in [0, 100] %, but a t interval over a few seeds can reach beyond: such
    an interval is clipped to [0, 100] % and shown by its ends, "13.6 % (0.0–28.9 %)".
    """
    if statistics.get("mean") is None:
        return MISSING
    width = half_width(statistics)
    if width is None:
        return percent(statistics["mean"])
    if statistics["ci_low"] < 0.0 or statistics["ci_high"] > 1.0:
        low, high = max(0.0, statistics["ci_low"]), min(1.0, statistics["ci_high"])
        return f"{percent(statistics['mean'])} ({100.0 * low:.1f}–{100.0 * high:.1f} %)"
    return percent(statistics["mean"]) + f" ± {100.0 * width:.1f}"


# ---------------------------------------------------------------------------------------------
# Pieces of the report.
# ---------------------------------------------------------------------------------------------


def ranked_losses(summary: dict) -> list[str]:
    """Losses with a test accuracy, highest mean first (ties keep the summary's order)."""
    losses = [loss for loss, entry in summary["losses"].items() if entry["test_accuracy"]["mean"] is not None]
    return sorted(losses, key=lambda loss: -summary["losses"][loss]["test_accuracy"]["mean"])


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


def paper_scale_gaps(summary: dict, params: dict) -> list[str]:
    """Every way this study is smaller than the paper's runs; empty when it is at their scale.

    The paper's figures are final accuracies of the full-width model (1,376,148 parameters)
    after 100 epochs on all 50,000 training images, tested on all 10,000 test images. Only a
    study at that scale can be compared with them number for number.
    """
    setup = summary.get("setup", {})
    gaps = []
    width = (params.get("model") or {}).get("width")
    parameters = [value for value in setup.get("model_parameters", []) if value is not None]
    if (width is not None and width != 1.0) or any(value != PAPER_PARAMETERS for value in parameters):
        gaps.append(f"width {MISSING if width is None else width} "
                    f"({joined(count(value) for value in parameters)} parameters)")
    planned = [epochs for epochs in setup.get("epochs_planned", []) if epochs is not None]
    if not planned or min(planned) < PAPER_EPOCHS:
        gaps.append(f"{joined(planned)} epochs")
    train_sizes = [value for value in setup.get("train_size", []) if value is not None]
    validation_sizes = [value for value in setup.get("validation_size", []) if value is not None]
    if "holdout" in setup.get("validation", []):
        train_sizes = [size + held for size, held in zip(train_sizes, validation_sizes)]
    if not train_sizes or min(train_sizes) < PAPER_TRAIN_IMAGES:
        gaps.append(f"{joined(count(value) for value in train_sizes)} training images")
    test_sizes = [value for value in setup.get("test_size", []) if value is not None]
    if not test_sizes or min(test_sizes) < PAPER_TEST_IMAGES:
        gaps.append(f"{joined(count(value) for value in test_sizes)} test images")
    return gaps


def not_comparable_reason(gaps: list[str]) -> str:
    """The sentence saying why the paper's figures cannot be compared with these numbers."""
    return (
        f"not comparable: this study ran at {', '.join(gaps)}, against the paper's width 1.0, "
        f"{PAPER_EPOCHS} epochs, {count(PAPER_TRAIN_IMAGES)} training and "
        f"{count(PAPER_TEST_IMAGES)} test images"
    )


def setup_section(summary: dict, params: dict) -> list[str]:
    """The setup table's Markdown lines: what was trained, on what data, where, with what."""
    setup = summary.get("setup", {})
    data = params.get("data", {})
    dataset = data.get("dataset", "cifar10")
    dataset_name = DATASET_NAMES.get(dataset, dataset)
    if data.get("source"):
        source = (
            f"local copy `{data['source']}` (`data.source`), not the official archive "
            f"{data.get('url', '')}; every accuracy here is measured on that copy"
        )
    else:
        source = f"downloaded from {data.get('url', MISSING)}"
    validation = setup.get("validation", [])
    validation_text = joined(
        "the test set, as in the paper" if value == "test" else "a hold-out from the training set"
        for value in validation
    )
    versions = ", ".join(
        f"{name} {joined(values)}" for name, values in setup.get("versions", {}).items()
    ) or MISSING
    width = (params.get("model") or {}).get("width")
    batch_size = (params.get("train") or {}).get("batch_size")
    seeds = sorted({seed for entry in summary["losses"].values() for seed in entry["seeds"]})
    rows = [
        ("Paper", PAPER_TITLE),
        ("Dataset", f"{dataset_name} (`data.dataset: {dataset}`)"),
        ("Data source", source),
        ("Images", (
            f"training {joined(count(value) for value in setup.get('train_size', []))}; validation "
            f"{joined(count(value) for value in setup.get('validation_size', []))} ({validation_text}); "
            f"test {joined(count(value) for value in setup.get('test_size', []))}"
        )),
        ("Model", (
            f"All-CNN, width {MISSING if width is None else width}, "
            f"{joined(count(value) for value in setup.get('model_parameters', []))} parameters "
            f"(paper: {count(PAPER_PARAMETERS)})"
        )),
        ("Training", (
            f"{joined(setup.get('epochs_planned', []))} epochs (paper: {PAPER_EPOCHS}), batch size "
            f"{MISSING if batch_size is None else batch_size}"
        )),
        ("Losses", joined(f"`{loss}`" for loss in summary["losses"])),
        ("Seeds", f"{joined(seeds)} ({len(seeds)} per loss at most)"),
        ("Device", joined(setup.get("devices", []))),
        ("Backend, precision", f"{joined(setup.get('backends', []))}, {joined(setup.get('precisions', []))}"),
        ("Versions", versions),
    ]
    lines = ["## Setup", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return lines


def results_table(summary: dict, paper: dict, params: dict | None = None) -> list[str]:
    """The one results table: ours beside the paper's figures, with the differences.

    The differences are given only for a study at the paper's scale (`paper_scale_gaps`);
    otherwise their cells say "not comparable" and the note under the table says why.
    """
    gaps = paper_scale_gaps(summary, params or {})
    key = convergence_key(summary)
    level = summary.get("confidence_level", 0.95)
    header = [
        "Loss", "Seeds", f"Test accuracy (± {percent(level, 0)} CI)", "Paper val. accuracy", "Δ test − paper",
        "Train accuracy", "Paper train accuracy", "Δ train − paper",
        "Best val. accuracy (epoch)", f"Epochs to {key.replace('%', ' %')} val." if key else "Epochs to threshold",
        "Training time", "Collapsed runs", "Test accuracy without collapsed runs",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for loss, entry in summary["losses"].items():
        reported = paper.get(loss) or {}
        test = entry["test_accuracy"]["mean"]
        train = entry["train_accuracy"]["mean"]
        paper_validation = reported.get("validation_accuracy")
        paper_train = reported.get("train_accuracy")
        best = entry["best_val_accuracy"]["mean"]
        best_epoch = entry["best_val_epoch"]["mean"]
        best_text = MISSING if best is None else (
            percent(best) + ("" if best_epoch is None else f" ({best_epoch:.0f})")
        )
        if key is None or key not in entry.get("convergence", {}):
            epochs_text = MISSING
        else:
            reached = entry["convergence"][key]
            if reached["reached"] == 0:
                epochs_text = "never"
            else:
                epochs_text = f"{reached['epoch']['mean']:.1f}"
                if reached["reached"] < entry["runs"]:
                    epochs_text += f" ({reached['reached']}/{entry['runs']} runs)"
        def difference(ours, theirs):
            if ours is None or theirs is None:
                return MISSING
            return "not comparable" if gaps else points(ours - theirs)

        collapsed = entry.get("collapsed_runs")
        without = entry.get("test_accuracy_not_collapsed") or {}
        row = [
            f"`{loss}`",
            str(entry["runs"]),
            accuracy_with_interval(entry["test_accuracy"]),
            percent(paper_validation, 0),
            difference(test, paper_validation),
            percent(train),
            percent(paper_train, 0),
            difference(train, paper_train),
            best_text,
            epochs_text,
            duration(entry["train_seconds"]["mean"]),
            MISSING if collapsed is None else f"{collapsed} of {entry['runs']}",
            (accuracy_with_interval(without) + f" (n = {without['n']})")
            if without.get("mean") is not None else MISSING,
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"Test accuracy: the final model's, mean over seeds ± the half-width of the {percent(level, 0)} "
        "Student-t interval, in percentage points (no interval with one seed). Train accuracy: "
        "the last epoch's, as Keras logged it on augmented images. Paper: its final accuracies "
        f"after {PAPER_EPOCHS} epochs (Section 4); its validation set was the test set, so its "
        "validation accuracy is compared with our test accuracy. Δ in percentage points"
        + (f"; here {not_comparable_reason(gaps)}, so the paper's figures are shown for "
           "reference only" if gaps else "")
        + ". Best val. accuracy and epochs: means over seeds; training time: mean per run. "
        "Intervals reaching past 0 or 100 % are clipped and shown by their ends. "
        "A run is collapsed when it predicted one class for at least "
        f"{percent(collapse_share(params or {}), 0)} of the test images; the test "
        "accuracy column includes such runs, the last column leaves them out.",
    ]
    return lines


def conclusions(summary: dict, paper: dict, params: dict) -> list[str]:
    """The conclusions, one Markdown bullet each, generated from the summary's numbers."""
    bullets: list[str] = []
    losses = summary["losses"]
    level = summary.get("confidence_level", 0.95)
    alpha = summary.get("alpha", 1.0 - level)
    ranking = ranked_losses(summary)

    # Ranking by mean test accuracy.
    if ranking:
        best = ranking[0]
        statistics = losses[best]["test_accuracy"]
        interval = (
            f", {percent(level, 0)} CI {percent(statistics['ci_low'])} to {percent(statistics['ci_high'])}"
            if statistics["ci_low"] is not None else ""
        )
        # Accuracies are multiples of 1 / (test images), so exact ties do happen.
        tied = [loss for loss in ranking
                if abs(losses[loss]["test_accuracy"]["mean"] - statistics["mean"]) < TIE_TOLERANCE]
        if len(tied) > 1:
            text = (
                f"**{', '.join(f'`{loss}`' for loss in tied)} tie for the highest mean test "
                f"accuracy**: {percent(statistics['mean'])}."
            )
        else:
            text = (
                f"**`{best}` has the highest mean test accuracy**: {percent(statistics['mean'])}"
                f"{interval} (n = {statistics['n']})."
            )
        rest = [loss for loss in ranking if loss not in tied]
        if rest:
            text += " Then " + ", ".join(
                f"`{loss}` {percent(losses[loss]['test_accuracy']['mean'])}" for loss in rest
            ) + "."
        bullets.append(text)
    else:
        bullets.append("No run has a test accuracy, so no loss can be ranked.")

    # Losses that learned nothing measurable: the paper's hinge can sit there in short runs.
    class_counts = summary.get("setup", {}).get("num_classes", [])
    if len(class_counts) == 1 and ranking:
        chance = 1.0 / class_counts[0]
        at_chance = [loss for loss in ranking if not above_chance(losses[loss]["test_accuracy"], chance)]
        if at_chance:
            named = []
            for loss in at_chance:
                dead = losses[loss].get("dead_final_layer_runs", 0)
                collapsed = losses[loss].get("collapsed_runs", 0)
                if dead:
                    note = f" ({dead} of {losses[loss]['runs']} runs with a dead final layer, below)"
                elif collapsed:
                    note = f" ({collapsed} of {losses[loss]['runs']} runs collapsed, below)"
                else:
                    note = ""
                named.append(f"`{loss}`{note}")
            bullets.append(
                f"Not above chance ({percent(chance)} for {class_counts[0]} classes): "
                f"{', '.join(named)}."
            )

    collapsed_bullet = collapsed_conclusion(summary, params)
    if collapsed_bullet:
        bullets.append(collapsed_bullet)
    dead_bullet = dead_final_layer_conclusion(summary)
    if dead_bullet:
        bullets.append(dead_bullet)

    # Significance of the differences, from the paired tests.
    comparisons = summary.get("comparisons", {})
    tested = [entry for entry in comparisons.values() if entry.get("tested")]
    if len(ranking) > 1 and not tested:
        bullets.append(
            "Fewer than 3 seeds shared by any two losses: no significance test. The ranking "
            "rests on too few runs to separate a difference between losses from seed-to-seed "
            "variation."
        )
    elif len(ranking) > 1:
        best = ranking[0]
        significant, not_significant, untested = [], [], []
        for other in ranking[1:]:
            comparison, sign = comparison_between(summary, best, other)
            if comparison is None or not comparison.get("tested"):
                untested.append(f"`{other}`")
                continue
            difference = sign * comparison["mean_difference"]
            low, high = sorted((sign * comparison["ci_low"], sign * comparison["ci_high"]))
            detail = (
                f"`{other}` ({points(difference)}, {percent(level, 0)} CI {points(low)} to {points(high)}, "
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
        text += f" {significant_pairs} of {len(tested)} tested pairwise differences are significant."
        bullets.append(text)

    # Convergence speed.
    key = convergence_key(summary)
    if key is not None:
        label = key.replace("%", " %")
        reached = {
            loss: entry["convergence"][key] for loss, entry in losses.items()
            if key in entry.get("convergence", {}) and entry["convergence"][key]["reached"] > 0
        }
        never = [f"`{loss}`" for loss, entry in losses.items()
                 if key in entry.get("convergence", {}) and entry["convergence"][key]["reached"] == 0]
        if reached:
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
        else:
            text = f"No loss reached {label} validation accuracy in any run."
        bullets.append(text)

    # Overfitting: the gap between final training and test accuracy.
    gaps = {loss: entry["generalization_gap"]["mean"] for loss, entry in losses.items()
            if entry.get("generalization_gap", {}).get("mean") is not None}
    if len(gaps) > 1:
        largest = max(gaps, key=gaps.get)
        smallest = min(gaps, key=gaps.get)
        if points(gaps[largest]) == points(gaps[smallest]):
            bullets.append(
                "The gap between final training and test accuracy is the same for every loss, "
                f"to the shown precision ({points(gaps[largest])})."
            )
        else:
            bullets.append(
                f"Largest gap between final training and test accuracy: `{largest}` "
                f"({points(gaps[largest])}); smallest: `{smallest}` ({points(gaps[smallest])})."
            )

    # Divergence.
    diverged = [
        f"`{loss}` (seed {joined(entry['diverged_seeds'])})"
        for loss, entry in losses.items() if entry.get("diverged_runs")
    ]
    if diverged:
        bullets.append(
            "Diverged runs (non-finite loss; their images without a finite score count as "
            f"errors): {', '.join(diverged)}."
        )

    # Agreement with the paper: its ranking, then its figures.
    compared = [
        loss for loss in ranking
        if (paper.get(loss) or {}).get("validation_accuracy") is not None
    ]
    if len(compared) > 1:
        bullets.append(paper_ranking_conclusion(summary, paper, compared))
    if compared:
        gaps = paper_scale_gaps(summary, params)
        if gaps:
            bullets.append(
                "The paper's accuracies are " + not_comparable_reason(gaps) + "; its figures "
                "are final accuracies at that scale, so no difference to them is given."
            )
        else:
            differences = ", ".join(
                f"`{loss}` {points(losses[loss]['test_accuracy']['mean'] - paper[loss]['validation_accuracy'])}"
                for loss in compared
            )
            bullets.append(f"Test accuracy minus the paper's validation accuracy: {differences}.")

    bullets += caveats(summary, params)
    return [f"- {bullet}" for bullet in bullets]


def paper_ranking_conclusion(summary: dict, paper: dict, compared: list[str]) -> str:
    """Whether the paper's ranking of its losses is reproduced, claimed only where testable.

    The paper ranks its losses strictly by validation accuracy. Ours reproduces that ranking
    only if every neighbouring pair in the paper's order differs significantly (Holm-adjusted
    paired test) in the paper's direction, and contradicts it if some pair differs
    significantly the other way. Otherwise, and whenever one of the losses never rose above
    chance, the ranking is not testable at this scale, and the sentence says why.
    """
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
    class_counts = summary.get("setup", {}).get("num_classes", [])
    at_chance = []
    if len(class_counts) == 1:
        at_chance = [f"`{loss}`" for loss in compared
                     if not above_chance(losses[loss]["test_accuracy"], 1.0 / class_counts[0])]
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


def collapsed_conclusion(summary: dict, params: dict) -> str | None:
    """The bullet counting collapsed runs per loss, with the means with and without them."""
    losses = summary["losses"]
    collapsed = {loss: entry for loss, entry in losses.items() if entry.get("collapsed_runs")}
    if not collapsed:
        return None
    runs = sum(entry["collapsed_runs"] for entry in collapsed.values())
    named = ", ".join(
        f"`{loss}` {entry['collapsed_runs']} of {entry['runs']} "
        f"(seed{'s' if entry['collapsed_runs'] > 1 else ''} {joined(entry['collapsed_seeds'])})"
        for loss, entry in collapsed.items()
    )
    means = []
    for loss, entry in collapsed.items():
        without = entry.get("test_accuracy_not_collapsed") or {}
        kept = ("none remain" if without.get("mean") is None
                else f"{accuracy_with_interval(without)} (n = {without['n']})")
        means.append(f"`{loss}` {accuracy_with_interval(entry['test_accuracy'])} with them, {kept} without")
    return (
        f"**{runs} run{'s' if runs > 1 else ''} collapsed** (one class predicted for at least "
        f"{percent(collapse_share(params), 0)} of the test images): {named}. A collapsed model says "
        "nothing about its loss. The ranking and the tests above include these runs; mean test "
        "accuracy " + "; ".join(means) + "."
    )


def dead_final_layer_conclusion(summary: dict) -> str | None:
    """The bullet naming the runs whose final ReLU layer died, or None when there are none."""
    losses = summary["losses"]
    dead = {loss: entry for loss, entry in losses.items() if entry.get("dead_final_layer_runs")}
    if not dead:
        return None
    runs = sum(entry["dead_final_layer_runs"] for entry in dead.values())
    named = ", ".join(
        f"`{loss}` (seed{'s' if len(entry['dead_final_layer_seeds']) > 1 else ''} "
        f"{joined(entry['dead_final_layer_seeds'])})"
        for loss, entry in dead.items()
    )
    class_counts = summary.get("setup", {}).get("num_classes", [])
    units = f"all {class_counts[0]} class-score units" if len(class_counts) == 1 else "all class-score units"
    chance = (
        f" ({percent(1.0 / class_counts[0])} for {class_counts[0]} classes)" if len(class_counts) == 1 else ""
    )
    text = (
        f"**{runs} run{'s' if runs > 1 else ''} lost {'their' if runs > 1 else 'its'} final ReLU layer**: "
        f"{named}. In {'each' if runs > 1 else 'it'}, {units} of the last convolution (`conv_9`, "
        "a ReLU on the class scores) output 0 on every test image, so the dense layer saw the "
        "same input for every image and predicted one class for all of them: the accuracy is "
        f"chance{chance}. This is a failure of the paper's architecture (a ReLU on the "
        "class-score layer, no batch normalisation) under this training setup, not evidence "
        "about the loss; these runs still count in the means above."
    )
    remaining = []
    for loss, entry in dead.items():
        alive = entry.get("test_accuracy_alive") or {}
        if alive.get("mean") is None:
            remaining.append(f"`{loss}`: none remain")
        else:
            remaining.append(f"`{loss}` {accuracy_with_interval(alive)} (n = {alive['n']})")
    text += " Mean test accuracy over the remaining seeds: " + "; ".join(remaining) + "."
    return text


def caveats(summary: dict, params: dict) -> list[str]:
    """Every way in which this run's setup differs from the paper's, as sentences."""
    setup = summary.get("setup", {})
    data = params.get("data", {})
    notes = []
    planned = [epochs for epochs in setup.get("epochs_planned", []) if epochs is not None]
    if planned and max(planned) < PAPER_EPOCHS:
        shortness = "far shorter than" if max(planned) <= PAPER_EPOCHS / 2 else "shorter than"
        notes.append(
            f"Runs of {joined(planned)} epochs are {shortness} the paper's {PAPER_EPOCHS}: the "
            "accuracies are not final, and comparisons with the paper's figures and between "
            "slowly converging losses (the paper's hinge and squared hinge) say little."
        )
    parameters = setup.get("model_parameters", [])
    width = (params.get("model") or {}).get("width")
    if (width is not None and width != 1.0) or any(value != PAPER_PARAMETERS for value in parameters):
        notes.append(
            f"The model is not the paper's size: width {MISSING if width is None else width}, "
            f"{joined(count(value) for value in parameters)} parameters against "
            f"{count(PAPER_PARAMETERS)}."
        )
    if data.get("source"):
        notes.append(
            f"The images come from `{data['source']}`, not the official archive: accuracies "
            "are measured on that copy (a re-encoded copy can differ from the official pixels)."
        )
    if data.get("dataset", "cifar10") != "cifar10" and not data.get("source"):
        notes.append(f"The dataset is `{data.get('dataset')}`; the paper used CIFAR-10.")
    train_sizes = [value for value in setup.get("train_size", []) if value is not None]
    validation_sizes = [value for value in setup.get("validation_size", []) if value is not None]
    test_sizes = [value for value in setup.get("test_size", []) if value is not None]
    holdout = "holdout" in setup.get("validation", [])
    training_images = [
        size + (validation if holdout else 0)
        for size, validation in zip(train_sizes, validation_sizes or [0] * len(train_sizes))
    ]
    if (training_images and max(training_images) < PAPER_TRAIN_IMAGES) or (
        test_sizes and max(test_sizes) < PAPER_TEST_IMAGES
    ):
        notes.append(
            f"Fewer images than the paper's {count(PAPER_TRAIN_IMAGES)} training and "
            f"{count(PAPER_TEST_IMAGES)} test images (here {joined(count(value) for value in train_sizes)} "
            f"trained on, {joined(count(value) for value in test_sizes)} tested on): subsets "
            "give noisier, lower accuracies."
        )
    if "test" in setup.get("validation", []):
        notes.append(
            "As in the paper, the test set was the validation set each epoch, so the best "
            "validation accuracy and its epoch are chosen on the test set and are optimistic; "
            "test accuracy is that of the final model."
        )
    if holdout:
        notes.append(
            "Validation used a hold-out from the training set, unlike the paper, which "
            "validated on the test set; the test set was used only for the final evaluation."
        )
    precisions = [value for value in setup.get("precisions", []) if value != "float32"]
    if precisions:
        notes.append(f"Trained in {joined(precisions)} precision; the paper used float32.")
    for field, name in (("devices", "devices"), ("backends", "backends")):
        if len(setup.get(field, [])) > 1:
            notes.append(f"Runs used different {name} ({joined(setup[field])}); timings are not comparable.")
    return notes


FIGURE_CAPTIONS = {
    "loss_shapes": "The loss functions, computed by lossbench's registry (cf. the paper's Fig. 1).",
    "test_accuracy": "Final test accuracy per loss: mean with confidence interval, and each seed.",
    "validation_accuracy": "Validation accuracy per epoch, all losses.",
    "curves": "Training and validation loss and accuracy per epoch: `{loss}` (cf. the paper's Figs. 4–6).",
    "confusion": "Test confusion matrix, summed over seeds: `{loss}`.",
}


def figures_section(summary: dict, figures_dir: Path, output: Path) -> list[str]:
    """Markdown embedding each figure that exists, linked relative to the report's folder."""
    names = ["loss_shapes", "test_accuracy", "validation_accuracy"]
    names += [f"curves_{loss}" for loss in summary["losses"]]
    names += [f"confusion_{loss}" for loss in summary["losses"]]
    lines = ["## Figures", ""]
    missing = []
    for name in names:
        path = figures_dir / f"{name}.png"
        if not path.is_file():
            missing.append(path.name)
            continue
        kind, _, loss = name.partition("_") if name.startswith(("curves_", "confusion_")) else (name, "", "")
        caption = FIGURE_CAPTIONS[kind].format(loss=loss)
        link = Path(os.path.relpath(path, output.parent)).as_posix()
        lines += [f"![{caption}]({link})", "", f"*{caption}*", ""]
    if missing:
        lines += [f"Not rendered: {', '.join(missing)} (run `lossbench figures`).", ""]
    return lines


def invocation() -> str:
    """The command that is running: `lossbench report ...` when run from the CLI."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if program in ("lossbench", "cli.py", "__main__.py"):
        return shlex.join(["lossbench", *sys.argv[1:]])
    # Called from Python (a test, a notebook): argv is not this stage's command line.
    return f"lossbench.report.run() from {program or 'Python'}"


def environment() -> str:
    """The report stage's own environment (the runs' environment comes from the summary)."""
    import lossbench

    return (
        f"lossbench {lossbench.__version__}, Python {platform.python_version()} "
        f"on {platform.system()} {platform.machine()}"
    )


def render_report(
    report_params: dict,
    summary: dict,
    figures_dir: Path,
    output: Path,
    params: dict,
    summary_path: Path | None = None,
) -> str:
    """The report's Markdown text."""
    paper = report_params.get("paper") or {}
    lines = [
        "# Loss functions for image classification: reproduction report",
        "",
        f"Reproduction of {PAPER_TITLE}: one All-CNN trained on the same data per loss "
        f"function and seed ({summary.get('runs', 0)} runs), then evaluated on the test set.",
        "",
        *setup_section(summary, params),
        "",
        "## Results",
        "",
        *results_table(summary, paper, params),
        "",
        "## Conclusions",
        "",
        *conclusions(summary, paper, params),
        "",
        *figures_section(summary, figures_dir, output),
        "---",
        "",
        f"Produced by `{invocation()}` with {environment()}, from `{(summary_path or Path('summary.json')).as_posix()}`. "
        f"Training environment (from the runs): {joined(summary.get('setup', {}).get('devices', []))}; "
        f"backend {joined(summary.get('setup', {}).get('backends', []))}.",
        "",
    ]
    return "\n".join(lines)


def run(
    report_params: dict,
    summary_path: str | os.PathLike,
    figures_dir: str | os.PathLike,
    output: str | os.PathLike,
    params: dict,
) -> str:
    """The CLI's entry point: write the Markdown report to `output`; return its text."""
    summary_path, figures_dir, output = Path(summary_path), Path(figures_dir), Path(output)
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} does not exist. Run `lossbench compare` first.")
    if not figures_dir.is_dir():
        raise FileNotFoundError(f"The figure directory {figures_dir} does not exist. Run `lossbench figures` first.")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{summary_path} is not valid JSON ({error}); rerun `lossbench compare`.") from error
    if not isinstance(summary, dict) or "losses" not in summary:
        raise ValueError(f"{summary_path} is not a summary from `lossbench compare`; rerun that stage.")
    text = render_report(report_params, summary, figures_dir, output, params, summary_path)
    write_text(output, text)
    return text
