"""Pre-registered hypotheses: one verdict per pair of the primary family, the rest exploratory.

In:  per-run test accuracies by loss ({loss: {seed: accuracy}}), params.yaml's `compare`
     section (`primary_pairs`, `equivalence_margin`, `power`, `confidence_level`) and the
     losses judged untrainable (`untrainable_losses`).
Out: `primary_family_verdicts`, the summary's "hypotheses" entry:

     {"alpha": 0.05, "equivalence_margin": 0.02, "power": 0.8, "family_size": 3,
      "pairs": [{"loss_a", "loss_b", "n", "seeds", "tested", "mean_difference", "ci_low",
                 "ci_high", "std_difference", "effect_size", "t_statistic", "p_value",
                 "p_value_holm", "equivalence_p_value", "equivalence_p_value_holm",
                 "minimum_detectable_difference", "verdict"}, ...],
      "untrainable_losses": {loss: reason}}

     and `family_of`, which says whether a pair of losses is primary or exploratory.

Why this shape: the paper claims an order (cross-entropy > squared hinge > hinge). Those three
claims are fixed in params.yaml before any run (`compare.primary_pairs`, each "a beats b"), so
the family a p-value is corrected over cannot be chosen after the results are seen. Every other
pair is exploratory and corrected within its own family (lossbench.compare).

Each primary pair gets exactly one verdict:
- **reproduced**: the paired t-test over seeds (scipy.stats.ttest_rel), Holm-adjusted within
  the primary family (statsmodels' multipletests), is below alpha and a beats b;
- **reversed**: the same, but b beats a;
- **equivalent**: not different, and the paired two one-sided tests (statsmodels'
  ttost_paired) put the mean difference within ±`equivalence_margin`, Holm-adjusted too;
- **inconclusive**: neither; `minimum_detectable_difference` then says which difference the
  study could have detected: the effect size a paired t-test of this many seeds finds with
  probability `power` at level alpha / family size (Holm's first, strictest step; statsmodels'
  TTestPower), times the observed standard deviation of the differences;
- **not tested**: fewer than 3 paired seeds, or no spread in the differences;
- **not testable**: a loss of the pair is untrainable (compare's rule,
  `lossbench.compare.judge_untrainable_losses`: at least half of its runs collapsed to one
  class): its accuracy measures the collapse, not the loss, so the claim cannot be tested,
  whatever the p-value. Such a pair leaves the family before Holm's correction, as an untested
  pair does (its numbers are kept, unadjusted, for the record).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from lossbench.compare.seed_statistics import MINIMUM_PAIRED_SEEDS, paired_comparison

VERDICTS = ("reproduced", "reversed", "equivalent", "inconclusive", "not tested", "not testable")


def pair_key(loss_a: str, loss_b: str) -> str:
    """The summary's name of a pair of losses: "a vs b"."""
    return f"{loss_a} vs {loss_b}"


def family_of(loss_a: str, loss_b: str, primary_pairs: Sequence[Sequence[str]]) -> str:
    """"primary" when {a, b} is one of the pre-registered pairs (in either order), else
    "exploratory"."""
    wanted = {frozenset(pair) for pair in primary_pairs}
    return "primary" if frozenset((loss_a, loss_b)) in wanted else "exploratory"


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (statsmodels' multipletests); None entries stay None and do
    not count towards the family's size."""
    from statsmodels.stats.multitest import multipletests

    present = [index for index, value in enumerate(p_values) if value is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    if present:
        corrected = multipletests([p_values[index] for index in present], method="holm")[1]
        for index, value in zip(present, corrected):
            adjusted[index] = float(value)
    return adjusted


def minimum_detectable_difference(n: int, std_difference: float | None, alpha: float,
                                  power: float) -> float | None:
    """The smallest mean difference a two-sided paired t-test of `n` seeds detects with
    probability `power` at level `alpha`, given the differences' standard deviation."""
    from statsmodels.stats.power import TTestPower

    if n < 2 or not std_difference:
        return None
    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                      alternative="two-sided")
    return float(effect) * std_difference


def _equivalence_p_value(first: list[float], second: list[float], margin: float) -> float | None:
    """The paired TOST p-value for |mean(first - second)| < margin (statsmodels)."""
    from statsmodels.stats.weightstats import ttost_paired

    differences = [a - b for a, b in zip(first, second)]
    if len(differences) < MINIMUM_PAIRED_SEEDS or len(set(differences)) < 2:
        return None
    p_value = float(ttost_paired(np.asarray(first), np.asarray(second), -margin, margin)[0])
    return p_value if math.isfinite(p_value) else None


def _pair_test(values_a: dict, values_b: dict, confidence_level: float, margin: float) -> dict:
    """The paired t-test, the effect size and the TOST of one pair (not yet adjusted)."""
    comparison = paired_comparison(values_a, values_b, confidence_level)
    seeds = comparison["seeds"]
    first = [float(values_a[seed]) for seed in seeds]
    second = [float(values_b[seed]) for seed in seeds]
    differences = [a - b for a, b in zip(first, second)]
    std = None
    if len(differences) >= 2:
        mean = sum(differences) / len(differences)
        std = math.sqrt(sum((value - mean) ** 2 for value in differences) / (len(differences) - 1))
    comparison["std_difference"] = std
    comparison["effect_size"] = comparison["mean_difference"] / std if comparison["tested"] and std else None
    comparison["equivalence_p_value"] = (
        _equivalence_p_value(first, second, margin) if comparison["tested"] else None
    )
    return comparison


def verdict(pair: dict, alpha: float) -> str:
    """One word from VERDICTS for a pair whose p-values are already Holm-adjusted."""
    if not pair["tested"] or pair["p_value_holm"] is None:
        return "not tested"
    if pair["p_value_holm"] < alpha:
        return "reproduced" if pair["mean_difference"] > 0 else "reversed"
    equivalence = pair.get("equivalence_p_value_holm")
    if equivalence is not None and equivalence < alpha:
        return "equivalent"
    return "inconclusive"


def primary_family_verdicts(accuracies: dict[str, dict[int, Any]], compare_params: dict,
                        alpha: float, untrainable_losses: dict[str, str]) -> dict[str, Any]:
    """The "hypotheses" entry of the summary (layout in the module docstring)."""
    margin = float(compare_params["equivalence_margin"])
    power = float(compare_params["power"])
    confidence_level = float(compare_params["confidence_level"])
    pairs = []
    for loss_a, loss_b in compare_params["primary_pairs"]:
        test = _pair_test(accuracies.get(loss_a, {}), accuracies.get(loss_b, {}),
                          confidence_level, margin)
        pairs.append({"loss_a": loss_a, "loss_b": loss_b, **test})
    testable = [not ({pair["loss_a"], pair["loss_b"]} & set(untrainable_losses)) for pair in pairs]
    for key in ("p_value", "equivalence_p_value"):
        kept = [pair[key] if keep else None for pair, keep in zip(pairs, testable)]
        for pair, adjusted in zip(pairs, holm(kept)):
            pair[f"{key}_holm"] = adjusted
    family_size = max(1, sum(pair["p_value"] is not None and keep
                             for pair, keep in zip(pairs, testable)))
    for pair, keep in zip(pairs, testable):
        pair["verdict"] = verdict(pair, alpha) if keep else "not testable"
        pair["minimum_detectable_difference"] = minimum_detectable_difference(
            pair["n"], pair["std_difference"], alpha / family_size, power,
        )
    return {
        "alpha": alpha,
        "equivalence_margin": margin,
        "power": power,
        "family_size": family_size,
        "pairs": pairs,
        "untrainable_losses": dict(untrainable_losses),
    }


def _points(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f}"


def _p_text(value: float | None) -> str:
    return "—" if value is None else (f"{value:.2g}" if value >= 0.001 else f"{value:.1e}")


def verdict_table(arms: dict[str, dict]) -> list[str]:
    """Markdown rows of every arm's primary verdicts: {arm name: summary["hypotheses"]}."""
    lines = [
        "| Arm | Claim | n | Difference (points, 95 % CI) | d_z | Holm p | TOST Holm p | Verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, family in arms.items():
        for pair in family["pairs"]:
            interval = ("" if pair["ci_low"] is None else
                        f" ({_points(pair['ci_low'])} to {_points(pair['ci_high'])})")
            effect = "—" if pair.get("effect_size") is None else f"{pair['effect_size']:.2f}"
            verdict_text = pair["verdict"]
            if verdict_text == "inconclusive" and pair.get("minimum_detectable_difference"):
                verdict_text += (f" (could detect ≥ {100 * pair['minimum_detectable_difference']:.1f}"
                                 " points)")
            lines.append(
                f"| {arm} | `{pair['loss_a']}` > `{pair['loss_b']}` | {pair['n']} | "
                f"{_points(pair['mean_difference'])}{interval} | {effect} | "
                f"{_p_text(pair['p_value_holm'])} | {_p_text(pair.get('equivalence_p_value_holm'))} | "
                f"**{verdict_text}** |"
            )
    return lines


def survival_sentence(reference: dict, tuned: dict, reference_name: str = "the paper's learning rate",
                      tuned_name: str = "a tuned learning rate",
                      condition: str = "a fair learning rate") -> str:
    """One sentence: does each primary pair keep its verdict from the reference arm to the
    other? `reference` and `tuned` are two summaries' "hypotheses" entries; `condition` names
    what the second arm changes ("a fair learning rate", "40 % label noise")."""
    before = {(pair["loss_a"], pair["loss_b"]): pair["verdict"] for pair in reference["pairs"]}
    after = {(pair["loss_a"], pair["loss_b"]): pair["verdict"] for pair in tuned["pairs"]}
    if set(before) != set(after):
        raise ValueError("The two families test different pairs; compare like with like.")
    untested = [pair for pair in before if {"not tested", "not testable"} & {before[pair], after[pair]}]
    if untested:
        return (f"Whether the paper's ranking survives {condition} cannot be said yet: "
                + ", ".join(f"`{a}` > `{b}`" for a, b in untested)
                + (" was" if len(untested) == 1 else " were") + " not tested in both arms.")
    changed = [pair for pair in before if before[pair] != after[pair]]
    if not changed:
        kinds = sorted(set(before.values()))
        return (f"Every verdict at {reference_name} is the same at {tuned_name} "
                f"({', '.join(kinds)}): the paper's ranking "
                + (f"survives {condition}." if kinds == ["reproduced"] else
                   f"fares the same under both, so {condition} does not change the answer."))
    listing = "; ".join(f"`{a}` > `{b}`: {before[(a, b)]} → {after[(a, b)]}" for a, b in changed)
    if all(before[pair] == "reproduced" and after[pair] == "inconclusive" for pair in changed):
        # Significance lost is not a claim contradicted: the data no longer decide.
        return (f"The paper's ranking is not shown to survive {condition}: {listing} "
                "(inconclusive, not reversed).")
    return f"The paper's ranking does not survive {condition} unchanged: {listing}."


def verdicts_markdown(arms: dict[str, dict], condition: str = "a fair learning rate") -> str:
    """`verdict_table` of the arms ({name: summary["hypotheses"]}) and, for two arms, the
    sentence on whether the verdicts survive `condition`, from the first arm to the second."""
    lines = verdict_table(arms)
    if len(arms) == 2:
        lines += ["", survival_sentence(*arms.values(), *(f"the {name}" for name in arms),
                                        condition=condition)]
    return "\n".join(lines) + "\n"
