"""cpu-class-scores: the pre-registered tests (README.md), from the committed tuning results.

In:  `relu/` and `linear/` beside this file, each holding the arm's tune results
     (`tune/<loss>.json`) and its tuning runs' records (`runs/<loss>/<run>/logs/run.json`, or,
     where those were lost, the start lines of the arm's job log `snakemake.log`), and
     `preregistration.json`.
Out: `analysis.md` (written by `python analyse.py` from this folder's parent's parent's parent,
     or any directory) and `analysis.json`; every sentence comes from `verdict_rows` and
     `selected_rates`, which tests/test_studies.py checks on synthetic tuning tables.

Refuses (ValueError) when any tuning run started before the pre-registration's commit.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from scipy import stats
from statsmodels.stats.multitest import multipletests

STUDY = Path(__file__).resolve().parent
ARMS = ("relu", "linear")
LOSSES = {"hinge": "H1", "categorical_crossentropy": "H2"}
HIGH_RATES = (0.1, 0.3)
HOLDOUT_IMAGES = 1000
ALPHA = 0.05


def at_chance(run: dict, images: int = HOLDOUT_IMAGES, classes: int = 10) -> bool:
    """True when the run's correct hold-out images do not beat 1/classes by an exact
    one-sided binomial test at ALPHA (a diverged run, with no accuracy, is at chance)."""
    accuracy = run.get("holdout_accuracy")
    if run.get("diverged") or accuracy is None:
        return True
    correct = round(accuracy * images)
    return bool(stats.binomtest(correct, images, 1 / classes, alternative="greater").pvalue >= ALPHA)


def high_rate_counts(tuning: dict) -> tuple[int, int]:
    """(runs at chance, runs) at the fixed grid's rates >= 0.1."""
    runs = [run for run in tuning["runs"] if float(run["learning_rate"]) in HIGH_RATES]
    return sum(at_chance(run) for run in runs), len(runs)


def verdict_rows(tunings: dict[str, dict[str, dict]]) -> list[dict]:
    """H1 and H2 from {arm: {loss: tune result}}: counts, shares with Clopper-Pearson
    intervals, one-sided Fisher p-values both ways, Holm over the two, and the verdict."""
    rows = []
    for loss, hypothesis in LOSSES.items():
        (relu_chance, relu_runs), (linear_chance, linear_runs) = (
            high_rate_counts(tunings[arm][loss]) for arm in ARMS)
        table = [[relu_chance, relu_runs - relu_chance], [linear_chance, linear_runs - linear_chance]]
        row = {"hypothesis": hypothesis, "loss": loss,
               "relu": [relu_chance, relu_runs], "linear": [linear_chance, linear_runs],
               "p_predicted": stats.fisher_exact(table, alternative="greater").pvalue,
               "p_reversed": stats.fisher_exact(table, alternative="less").pvalue}
        for arm, (chance, runs) in (("relu", row["relu"]), ("linear", row["linear"])):
            interval = stats.binomtest(chance, runs).proportion_ci(0.95, method="exact")
            row[f"{arm}_interval"] = [interval.low, interval.high]
        rows.append(row)
    for direction in ("predicted", "reversed"):
        adjusted = multipletests([row[f"p_{direction}"] for row in rows], method="holm")[1]
        for row, value in zip(rows, adjusted):
            row[f"p_{direction}_holm"] = float(value)
    for row in rows:
        if row["relu"][0] == 0:
            row["verdict"] = "not testable"
        elif row["p_predicted_holm"] < ALPHA:
            row["verdict"] = "reproduced"
        elif row["p_reversed_holm"] < ALPHA:
            row["verdict"] = "reversed"
        else:
            row["verdict"] = "inconclusive"
    return rows


def selected_rates(tunings: dict[str, dict[str, dict]], loss: str = "hinge") -> dict:
    """H3: each arm's selected rate for `loss`, or "not testable" where no run of the arm is
    above chance; and whether the rate moved."""
    chosen = {}
    for arm in ARMS:
        tuning = tunings[arm][loss]
        trainable = any(not at_chance(run) for run in tuning["runs"])
        chosen[arm] = tuning["selected_learning_rate"] if trainable else "not testable"
    testable = all(value != "not testable" for value in chosen.values())
    return {"loss": loss, "selected": chosen,
            "moved": (chosen["relu"] != chosen["linear"]) if testable else "not testable"}


def describe(rows: list[dict], rates: dict) -> list[str]:
    """The analysis's sentences, each from the numbers above."""
    lines = []
    for row in rows:
        (relu_chance, relu_runs), (linear_chance, linear_runs) = row["relu"], row["linear"]
        lines.append(
            f"- **{row['hypothesis']}** (`{row['loss']}`, rates 0.1 and 0.3): at chance in "
            f"{relu_chance} of {relu_runs} runs with the ReLU and {linear_chance} of {linear_runs} "
            f"without (difference {100 * (relu_chance / relu_runs - linear_chance / linear_runs):+.0f} "
            f"points; Fisher one-sided p = {row['p_predicted']:.3g}, Holm {row['p_predicted_holm']:.3g}): "
            f"**{row['verdict']}**.")
    selected = rates["selected"]
    if rates["moved"] == "not testable":
        lines.append("- **H3**: not testable: in at least one arm no hinge run rose above chance.")
    else:
        verb = "moved" if rates["moved"] else "did not move"
        lines.append(f"- **H3** (descriptive): the hinge's selected rate {verb}: {selected['relu']} "
                     f"with the ReLU, {selected['linear']} without.")
    return lines


def log_starts(log: Path) -> dict[str, dict]:
    """{name: {"started": ISO time}} of each tuning run's "Training <loss>, seed <n>" line of a
    job log (UTC, as the machine's clock wrote it), for an arm whose run.json files were lost."""
    starts = {}
    for index, line in enumerate(log.read_text().splitlines()):
        match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ lossbench\.train\.packs INFO: "
                         r"Training (\w+), seed (\d+),", line)
        if match:
            started = match[1].replace(" ", "T") + "+00:00"
            starts[f"{log.parent.name}/log line {index + 1}: {match[2]} seed {match[3]}"] = {"started": started}
    return starts


def rate_table(tunings: dict[str, dict[str, dict]]) -> list[str]:
    """Markdown: per loss and rate, each arm's mean hold-out accuracy with its 95 % t interval
    over the tuning seeds (the tune stage's own summary) and its runs at chance."""
    lines = ["| Loss | Rate | relu: hold-out accuracy (95 % CI) | relu: at chance | "
             "linear: hold-out accuracy (95 % CI) | linear: at chance |", "|---|---|---|---|---|---|"]
    for loss in LOSSES:
        rates = sorted({float(run["learning_rate"]) for arm in ARMS for run in tunings[arm][loss]["runs"]})
        for rate in rates:
            cells = []
            for arm in ARMS:
                runs = [run for run in tunings[arm][loss]["runs"] if float(run["learning_rate"]) == rate]
                summary = tunings[arm][loss].get("holdout_accuracy_by_rate", {}).get(f"{rate:g}")
                if not runs or not summary or summary.get("mean") is None:
                    cells += ["—", "—"]
                    continue
                # A t interval of 3 seeds can reach past 0 or 1: shown clipped to what is possible.
                interval = ("" if summary.get("ci_low") is None else
                            f" ({100 * max(0.0, summary['ci_low']):.1f} to "
                            f"{100 * min(1.0, summary['ci_high']):.1f})")
                chosen = " **selected**" if tunings[arm][loss]["selected_learning_rate"] == rate else ""
                cells += [f"{100 * summary['mean']:.1f} %{interval}{chosen}",
                          f"{sum(at_chance(run) for run in runs)} of {len(runs)}"]
            lines.append(f"| `{loss}` | {rate:g} | " + " | ".join(cells) + " |")
    return lines


def load_arm(arm: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """The arm's tune results by loss and its tuning runs' start records by name: their
    run.json files, else the start lines of the arm's job log (snakemake.log)."""
    folder = STUDY / arm
    tunings = {loss: json.loads((folder / "tune" / f"{loss}.json").read_text()) for loss in LOSSES}
    records = {f"{arm}/{path.parent.parent.parent.name}/{path.parent.parent.name}": json.loads(path.read_text())
               for path in sorted((folder / "runs").glob("*/*/logs/run.json"))}
    if not records and (folder / "snakemake.log").is_file():
        records = log_starts(folder / "snakemake.log")
    runs = sum(len(tuning["runs"]) for tuning in tunings.values())
    if len(records) != runs:
        raise ValueError(f"{arm}: {len(records)} start records for {runs} tuning runs.")
    return tunings, records


def main() -> int:
    sys.path.insert(0, str(STUDY.parents[2] / "workflow"))
    from lossbench.io.preregistration import check_runs

    tunings, records = {}, {}
    for arm in ARMS:
        tunings[arm], arm_records = load_arm(arm)
        records.update(arm_records)
    check_runs(STUDY, records)
    rows, rates = verdict_rows(tunings), selected_rates(tunings)
    (STUDY / "analysis.json").write_text(json.dumps({"hypotheses": rows, "H3": rates}, indent=2) + "\n")
    (STUDY / "analysis.md").write_text("\n".join([
        "# cpu-class-scores: verdicts", "", "Written by `python analyse.py` from the committed "
        "tuning results (pre-registration checked against every run's start).", "",
        *describe(rows, rates), "", "## Hold-out accuracy per rate", "", *rate_table(tunings), "",
        "Hold-out: 1,000 images held out of the 10,000 training images, 3 tuning seeds; interval: "
        "the tune stage's 95 % t interval over the seeds; at chance: not above 10 % by an exact "
        "one-sided binomial test (alpha 0.05).", ""]))
    print((STUDY / "analysis.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
