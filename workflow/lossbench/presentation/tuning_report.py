"""The tuning results in the report and in a figure: which learning rate each loss got, and why.

In:  the `tune` stage's result files (`reports/tune/<loss>.json`, see `lossbench.train.tune`).
Out: `read_tuning` (the results, in the order given), `tuning_section` (Markdown lines: the
     hold-out accuracy of every rate, the chosen rate per loss, and what the comparison at one
     shared rate therefore means), and `tuning_figure` with `plot_tuning_curves` (the figure
     and its PNG: hold-out accuracy against the learning rate, one line per loss, the chosen
     rate marked).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

FIGURE_NAME = "tuning_learning_rates.png"


def read_tuning(paths: Sequence[Path]) -> list[dict]:
    """The tuning results of `paths`; a file that is missing or not a tuning result is an
    error naming the stage that writes it."""
    results = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"The tuning result {path} does not exist. Run `lossbench tune` "
                                    "for that loss first (or `dvc repro` / `snakemake`).")
        result = json.loads(path.read_text())
        if not isinstance(result, dict) or "selected_learning_rate" not in result:
            raise ValueError(f"{path} is not a result of `lossbench tune`; rerun that stage.")
        results.append(result)
    return results


def _rate_text(rate: float) -> str:
    return f"{rate:g}"


def tuning_section(results: Sequence[dict], shared_rate: float | str) -> list[str]:
    """The report's "Learning rates" section, or no lines when no loss was tuned."""
    tuned = [result for result in results if result["runs"]]
    if not tuned:
        return []
    rates = sorted({float(run["learning_rate"]) for result in tuned for run in result["runs"]})
    first = tuned[0]
    lines = [
        "## Learning rates",
        "",
        f"Each loss was trained for {first['epochs']} epochs at every rate below (seeds "
        f"{', '.join(map(str, first['seeds']))}) on the training set less a stratified "
        f"{first['holdout_fraction']:.0%} hold-out, and scored on that hold-out, never on the "
        f"test set. Rule: {first['selection_rule']}. Hold-out accuracy (mean over the tuning "
        "seeds); the chosen rate in bold, — where a run diverged:",
        "",
        "| Learning rate | " + " | ".join(f"`{result['loss']}`" for result in tuned) + " |",
        "|---|" + "---|" * len(tuned),
    ]
    for rate in rates:
        cells = []
        for result in tuned:
            value = result["mean_holdout_accuracy"].get(_rate_text(rate))
            text = "—" if value is None else f"{100 * value:.1f} %"
            cells.append(f"**{text}**" if result["selected_learning_rate"] == rate else text)
        lines.append(f"| {_rate_text(rate)} | " + " | ".join(cells) + " |")
    trust = [sentence for sentence in map(protocol_sentence, tuned) if sentence]
    lines += ([""] + [f"- {sentence}" for sentence in trust] if trust else [])
    lines += ["", _shared_rate_sentence(tuned, shared_rate), ""]
    return lines


def protocol_sentence(result: dict) -> str | None:
    """Whether a loss's choice meets the tuning protocol (`lossbench.train.tune.protocol`),
    and what it lacks; None for a result written before the protocol existed."""
    protocol = result.get("protocol")
    if not protocol or result.get("selected_learning_rate") is None:
        return None
    if protocol["trustworthy"]:
        return (f"`{result['loss']}`: the choice meets the tuning protocol "
                f"({protocol['tuning_seeds']} tuning seeds, the {protocol['training_epochs']} epochs "
                "the runs train, a rate inside the rates tried).")
    return (f"`{result['loss']}`: the choice does not meet the tuning protocol "
            f"({'; '.join(protocol['reasons'])}): a lead, not a measured best rate.")


def _shared_rate_sentence(tuned: Sequence[dict], shared_rate: float | str) -> str:
    chosen = {result["loss"]: result["selected_learning_rate"] for result in tuned}
    listing = ", ".join(f"`{loss}` {_rate_text(rate)}" for loss, rate in chosen.items()
                        if rate is not None)
    if shared_rate == "tuned":
        return f"The runs of this report trained at these chosen rates: {listing}."
    edge = [loss for loss, rate in chosen.items() if rate is not None and rate in (
        min(float(run["learning_rate"]) for result in tuned for run in result["runs"]),
        max(float(run["learning_rate"]) for result in tuned for run in result["runs"]))]
    sentence = (f"Chosen rates: {listing}. The runs of this report trained at one shared rate, "
                f"{_rate_text(float(shared_rate))}")
    differing = [loss for loss, rate in chosen.items() if rate is not None and rate != float(shared_rate)]
    sentence += (f"; for {', '.join(f'`{loss}`' for loss in differing)} another rate did better on "
                 "the hold-out, so their accuracies here are not their best." if differing
                 else ", the rate every loss chose.")
    if edge:
        sentence += (f" The choice for {', '.join(f'`{loss}`' for loss in edge)} lies at the edge of "
                     "the grid: a rate beyond it might do better still.")
    return sentence


def tuning_figure(results: Sequence[dict]):
    """Hold-out accuracy against the learning rate (log axis), one line per tuned loss, the
    chosen rate circled, the legend beside the axes; None when no loss was tuned."""
    from lossbench.presentation.figure_style import ACCURACY_UNIT, legend_beside, new_figure
    from lossbench.presentation.loss_colours import loss_colour

    tuned = [result for result in results if result["runs"]]
    if not tuned:
        return None
    figure, axis = new_figure(9, 4.8)
    for result in tuned:
        points = sorted((float(rate), value) for rate, value in result["mean_holdout_accuracy"].items())
        line, = axis.plot([rate for rate, _ in points], [100 * value for _, value in points],
                          marker="o", label=result["loss"], color=loss_colour(result["loss"]))
        chosen = result["selected_learning_rate"]
        if chosen is not None:
            best = result["mean_holdout_accuracy"][_rate_text(chosen)]
            axis.scatter([chosen], [100 * best], s=180, facecolors="none", edgecolors=line.get_color())
    axis.set_xscale("log")
    axis.set_xlabel("initial SGD learning rate (per step, log scale)")
    axis.set_ylabel(f"hold-out accuracy after tuning ({ACCURACY_UNIT})")
    axis.set_title("Learning-rate tuning on a hold-out split of the training set (chosen: circled)")
    axis.grid(True, alpha=0.3)
    legend_beside(axis, title="loss", fontsize="small")
    return figure


def plot_tuning_curves(results: Sequence[dict], path: Path) -> Path | None:
    """`tuning_figure` written to `path` (`lossbench.presentation.figure_style.save`); None
    when no loss was tuned."""
    from lossbench.presentation.figure_style import save

    figure = tuning_figure(results)
    return None if figure is None else save(figure, Path(path))
