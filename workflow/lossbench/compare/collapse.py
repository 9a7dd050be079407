"""`lossbench collapse`: how often runs collapse, per setting and loss, with exact intervals.

In:  groups of per-run metrics files (from `lossbench evaluate`), each group one setting of
     the variable under study (e.g. `model.init: keras1` and `keras3`), and a confidence level.
Out: a JSON table and a short Markdown report: per (group, loss) the number of runs, how many
     collapsed (predicted one class for at least `evaluate.collapse_share` of the test images)
     and the Clopper-Pearson interval of the collapse rate; per loss, Fisher's exact test of
     the difference between the first two groups (two-sided); mean test accuracy of the runs
     that did not collapse.

Used by the init experiment (reports/studies/init-collapse/), which asks whether the paper's
Keras 1 initialisation or today's causes the one-class collapse.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Sequence

from lossbench.io.atomic import write_json, write_text
from lossbench.pipeline.runs import parse_run_name


def clopper_pearson(successes: int, trials: int, confidence_level: float) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial proportion."""
    from scipy import stats

    interval = stats.binomtest(successes, trials).proportion_ci(
        confidence_level=confidence_level, method="exact"
    )
    return float(interval.low), float(interval.high)


def fisher_exact(first: tuple[int, int], second: tuple[int, int]) -> float:
    """Two-sided p-value of Fisher's exact test on (collapsed, runs) of two groups."""
    from scipy import stats

    table = [[first[0], first[1] - first[0]], [second[0], second[1] - second[0]]]
    return float(stats.fisher_exact(table, alternative="two-sided").pvalue)


def collapse_table(groups: dict[str, Sequence[dict]], confidence_level: float) -> dict:
    """Collapse counts, rates and intervals per group and loss, and the tests between groups.

    `groups` maps a group's name to its runs' metrics dictionaries.
    """
    cells: dict[str, dict[str, dict]] = {}
    for group, runs in groups.items():
        for loss in sorted({run["loss"] for run in runs}):
            mine = [run for run in runs if run["loss"] == loss]
            collapsed = sum(bool(run.get("collapsed")) for run in mine)
            low, high = clopper_pearson(collapsed, len(mine), confidence_level)
            kept = [run["test_accuracy"] for run in mine if not run.get("collapsed")]
            cells.setdefault(loss, {})[group] = {
                "runs": len(mine),
                "collapsed": collapsed,
                "collapsed_seeds": sorted(run["seed"] for run in mine if run.get("collapsed")),
                "rate": collapsed / len(mine),
                "ci_low": low,
                "ci_high": high,
                "mean_test_accuracy_not_collapsed": sum(kept) / len(kept) if kept else None,
            }
    tests = {}
    for loss, by_group in cells.items():
        for first, second in itertools.combinations(by_group, 2):
            tests[f"{loss}: {first} vs {second}"] = {
                "loss": loss, "groups": [first, second], "test": "Fisher's exact, two-sided",
                "p_value": fisher_exact(
                    (by_group[first]["collapsed"], by_group[first]["runs"]),
                    (by_group[second]["collapsed"], by_group[second]["runs"]),
                ),
            }
    return {"confidence_level": confidence_level, "cells": cells, "tests": tests}


def render_markdown(table: dict, title: str, setup: str) -> str:
    """The table as Markdown, with one sentence per test that says what it shows."""
    level = round(100 * table["confidence_level"])
    alpha = 1 - table["confidence_level"]
    lines = [f"# {title}", "", setup, "",
             f"| Loss | Setting | Runs | Collapsed | Rate ({level} % Clopper–Pearson) "
             "| Mean test accuracy, not collapsed |",
             "|---|---|---|---|---|---|"]
    for loss, by_group in table["cells"].items():
        for group, cell in by_group.items():
            accuracy = cell["mean_test_accuracy_not_collapsed"]
            lines.append(
                f"| `{loss}` | {group} | {cell['runs']} | {cell['collapsed']} | "
                f"{100 * cell['rate']:.0f} % ({100 * cell['ci_low']:.0f}–{100 * cell['ci_high']:.0f} %) | "
                f"{'—' if accuracy is None else f'{100 * accuracy:.1f} %'} |"
            )
    lines += ["", "## What the tests show", ""]
    for name, test in table["tests"].items():
        first, second = test["groups"]
        a, b = (table["cells"][test["loss"]][group] for group in (first, second))
        verdict = (
            f"a significant difference (p = {test['p_value']:.3g} < {alpha:.2g})"
            if test["p_value"] < alpha else
            f"no significant difference at this sample size (p = {test['p_value']:.3g})"
        )
        lines.append(
            f"- `{test['loss']}`: {a['collapsed']} of {a['runs']} runs collapsed with {first}, "
            f"{b['collapsed']} of {b['runs']} with {second}; Fisher's exact test: {verdict}."
        )
    return "\n".join(lines) + "\n"


def read_run(path: str | Path) -> dict:
    """One run's metrics: a full evaluation (`reports/evaluation/<loss>-seed<seed>.json`) or
    the review metrics beside it (`reports/metrics/`), which hold numbers only, so their loss
    and seed are read from the file name."""
    path = Path(path)
    metrics = json.loads(path.read_text())
    parsed = parse_run_name(path.stem)
    if ("loss" not in metrics or "seed" not in metrics) and parsed:
        metrics = {"loss": parsed[0], "seed": parsed[1], **metrics}
    missing = [key for key in ("loss", "seed", "test_accuracy") if key not in metrics]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: pass the metrics files of `lossbench evaluate`.")
    return metrics


def run(groups: dict[str, Sequence[str | Path]], output_dir: str | Path, title: str, setup: str,
        confidence_level: float) -> dict:
    """The CLI's entry point: read each group's metrics files, write collapse.json and .md;
    `confidence_level` is params.yaml's compare.confidence_level (the intervals' level)."""
    runs = {}
    for group, paths in groups.items():
        if not paths:
            raise ValueError(f"The group {group!r} has no metrics files; pass --group NAME=FILE,FILE...")
        runs[group] = [read_run(path) for path in paths]
    table = collapse_table(runs, confidence_level)
    output_dir = Path(output_dir)
    write_json(output_dir / "collapse.json", table)
    write_text(output_dir / "collapse.md", render_markdown(table, title, setup))
    return table
