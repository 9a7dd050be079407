"""cpu-crammer-singer: the pre-registered tests (README.md), from the committed per-run files.

In:  each arm's folder beside this file (`relu-lr0.01/`, `relu-lr0.001/`, `linear-lr0.01/`),
     holding the arm's per-run evaluations (`evaluation/<loss>-seed<seed>.json`, from
     `lossbench evaluate`: the review metrics beside them, `metrics/`, lack the dead-layer
     flag) and run records (`training/<loss>-seed<seed>/run.json`), and
     `preregistration.json`.
Out: `analysis.md` and `analysis.json` (written by `python analyse.py` from any directory);
     every sentence comes from `verdict_rows` and `describe`, which tests/test_studies.py
     checks on synthetic counts.

Refuses (ValueError) when any run started before the pre-registration's commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scipy import stats
from statsmodels.stats.multitest import multipletests

STUDY = Path(__file__).resolve().parent
CONTROL = "relu-lr0.01"
# {hypothesis: the arm predicted to collapse less often than the control}
HYPOTHESES = {"H1": "linear-lr0.01", "H2": "relu-lr0.001"}
ARMS = (CONTROL, *HYPOTHESES.values())
ALPHA = 0.05
# The control must collapse in at least this share of its runs for a reduction to be testable.
TESTABLE_SHARE = 0.5


def share_interval(collapsed: int, runs: int) -> list[float]:
    interval = stats.binomtest(collapsed, runs).proportion_ci(0.95, method="exact")
    return [float(interval.low), float(interval.high)]


def verdict_rows(counts: dict[str, tuple[int, int]]) -> list[dict]:
    """H1 and H2 from {arm: (collapsed runs, runs)}: one-sided Fisher p-values both ways, Holm
    over the two per direction, the difference in shares with Clopper-Pearson intervals, and
    the verdict by the README's rules."""
    control_collapsed, control_runs = counts[CONTROL]
    rows = []
    for hypothesis, arm in HYPOTHESES.items():
        collapsed, runs = counts[arm]
        table = [[control_collapsed, control_runs - control_collapsed], [collapsed, runs - collapsed]]
        rows.append({
            "hypothesis": hypothesis, "arm": arm, "control": [control_collapsed, control_runs],
            "treated": [collapsed, runs],
            "difference": collapsed / runs - control_collapsed / control_runs,
            "control_interval": share_interval(control_collapsed, control_runs),
            "treated_interval": share_interval(collapsed, runs),
            "p_predicted": float(stats.fisher_exact(table, alternative="greater").pvalue),
            "p_reversed": float(stats.fisher_exact(table, alternative="less").pvalue),
        })
    for direction in ("predicted", "reversed"):
        adjusted = multipletests([row[f"p_{direction}"] for row in rows], method="holm")[1]
        for row, value in zip(rows, adjusted):
            row[f"p_{direction}_holm"] = float(value)
    for row in rows:
        if control_collapsed < TESTABLE_SHARE * control_runs:
            row["verdict"] = "not testable"
        elif row["p_predicted_holm"] < ALPHA:
            row["verdict"] = "reproduced"
        elif row["p_reversed_holm"] < ALPHA:
            row["verdict"] = "reversed"
        else:
            row["verdict"] = "inconclusive"
    return rows


WHAT = {"H1": "without the ReLU on `conv_9` (lr 0.01)", "H2": "at lr 0.001 with the ReLU"}


def describe(rows: list[dict], arms: dict[str, dict]) -> list[str]:
    """The analysis's sentences, each from the numbers of `verdict_rows` and `arm_summary`."""
    lines = []
    for row in rows:
        (control, control_runs), (treated, runs) = row["control"], row["treated"]
        low, high = row["treated_interval"]
        lines.append(
            f"- **{row['hypothesis']}**: collapsed in {treated} of {runs} runs {WHAT[row['hypothesis']]} "
            f"(95 % CI {100 * low:.0f} to {100 * high:.0f} %), against {control} of {control_runs} "
            f"with the ReLU at lr 0.01 (difference {100 * row['difference']:+.0f} points; Fisher "
            f"one-sided p = {row['p_predicted']:.3g}, Holm {row['p_predicted_holm']:.3g}): "
            f"**{row['verdict']}**.")
    for arm, summary in arms.items():
        if summary["dead"] is None:
            dead = "`conv_9` has no ReLU (it cannot die)"
        elif summary["dead"] == "unknown":
            dead = "whether `conv_9` died is unknown (an evaluation lacks the flag)"
        else:
            dead = f"`conv_9` dead in {summary['dead']} of {summary['runs']} runs"
        accuracy = ("none (every run collapsed)" if summary["mean_accuracy_not_collapsed"] is None
                    else f"{100 * summary['mean_accuracy_not_collapsed']:.1f} %")
        lines.append(f"- `{arm}` (descriptive): {dead}; mean test accuracy of the runs that did not "
                     f"collapse: {accuracy}.")
    return lines


def arm_summary(evaluations: list[dict], relu: bool) -> dict:
    """Counts of one arm's runs: collapsed, dead final layer (None without the ReLU; "unknown"
    when an evaluation lacks the flag: never counted as alive), and the mean test accuracy of
    the runs that did not collapse (None when all did)."""
    kept = [run["test_accuracy"] for run in evaluations if not run["collapsed"]]
    dead = None
    if relu:
        flags = [run.get("final_layer_dead") for run in evaluations]
        dead = "unknown" if None in flags else sum(map(bool, flags))
    return {"runs": len(evaluations), "collapsed": sum(bool(run["collapsed"]) for run in evaluations),
            "dead": dead, "mean_accuracy_not_collapsed": sum(kept) / len(kept) if kept else None}


def load_arm(arm: str) -> tuple[list[dict], dict[str, dict]]:
    """The arm's per-run evaluations and its run records by name."""
    folder = STUDY / arm
    evaluations = [json.loads(path.read_text()) for path in sorted((folder / "evaluation").glob("*.json"))]
    records = {f"{arm}/{path.parent.name}": json.loads(path.read_text())
               for path in sorted((folder / "training").glob("*/run.json"))}
    if not evaluations or len(records) != len(evaluations):
        raise ValueError(f"{arm}: {len(evaluations)} evaluation files and {len(records)} run records; "
                         "copy the arm's reports/evaluation/ and reports/training/ here first.")
    return evaluations, records


def main() -> int:
    sys.path.insert(0, str(STUDY.parents[2] / "workflow"))
    from lossbench.io.preregistration import check_runs

    summaries, records = {}, {}
    for arm in ARMS:
        evaluations, arm_records = load_arm(arm)
        summaries[arm] = arm_summary(evaluations, relu=not arm.startswith("linear"))
        records.update(arm_records)
    check_runs(STUDY, records)
    rows = verdict_rows({arm: (summary["collapsed"], summary["runs"]) for arm, summary in summaries.items()})
    (STUDY / "analysis.json").write_text(json.dumps({"hypotheses": rows, "arms": summaries}, indent=2) + "\n")
    (STUDY / "analysis.md").write_text("\n".join([
        "# cpu-crammer-singer: verdicts", "", "Written by `python analyse.py` from the committed "
        "per-run evaluations (pre-registration checked against every run's start).", "",
        *describe(rows, summaries), "",
        "Collapsed: one class predicted for at least 90 % of the 1,000 test images; dead `conv_9`: "
        "at least 99 % of its activations on the test set are zero.", ""]))
    print((STUDY / "analysis.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
