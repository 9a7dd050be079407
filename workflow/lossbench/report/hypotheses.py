"""The report's section on the pre-registered hypotheses: a table and one sentence per pair.

In:  a summary from `lossbench compare` whose `hypotheses` hold {"alpha",
     "equivalence_margin" (a fraction: 0.02 is 2 points), "power" (0.8), "pairs": [{"loss_a",
     "loss_b" (the paper claims a > b), "n", "tested", "mean_difference" (a - b, a fraction),
     "ci_low", "ci_high", "effect_size" (Cohen's d_z or None), "p_value", "p_value_holm",
     "equivalence_p_value" (TOST), "verdict", "minimum_detectable_difference"}],
     "untrainable_losses": {loss: reason}}.
Out: `hypotheses_section`, the section's Markdown lines: a table (pair, n, difference with its
     interval, d_z, Holm p, TOST p, verdict) and a sentence per pair saying what its verdict
     means ("reproduced", "reversed", "equivalent", "inconclusive", "not tested"); an
     inconclusive pair states the smallest difference the study could have detected at the
     planned power. No section for a summary without hypotheses.
"""

from __future__ import annotations

from lossbench.report.text import MISSING, full_sentence, p_value_text, percent, points

# Pairs sharing fewer seeds than this are not tested (`lossbench.compare.seed_statistics`).
MINIMUM_SEEDS = 3


def points_size(fraction: float) -> str:
    """A positive size in points: 0.043 -> "4.3 points"."""
    return f"{100.0 * abs(fraction):.1f} points"


def difference_cell(pair: dict) -> str:
    """"+3.2 pp (+1.0 to +5.4)", or "—" for an untested pair."""
    if pair.get("mean_difference") is None:
        return MISSING
    if pair.get("ci_low") is None or pair.get("ci_high") is None:
        return points(pair["mean_difference"])
    return f"{points(pair['mean_difference'])} ({points(pair['ci_low'])} to {points(pair['ci_high'])})"


def pair_row(pair: dict) -> list[str]:
    """One pair's cells."""
    effect = pair.get("effect_size")
    tested = pair.get("tested")
    return [
        f"`{pair['loss_a']}` > `{pair['loss_b']}`",
        str(pair.get("n", MISSING)),
        difference_cell(pair),
        MISSING if effect is None else f"{effect:.2f}",
        p_value_text(pair.get("p_value_holm")) if tested else MISSING,
        p_value_text(pair.get("equivalence_p_value")) if tested else MISSING,
        pair.get("verdict") or MISSING,
    ]


def not_tested_reason(pair: dict, untrainable: dict[str, str]) -> str:
    """Why a pair was not tested: an untrainable loss, or too few shared seeds."""
    reasons = [f"`{loss}` is untrainable here. {full_sentence(untrainable[loss])}"
               for loss in (pair["loss_a"], pair["loss_b"]) if loss in untrainable]
    if reasons:
        return " ".join(reasons)
    n = pair.get("n") or 0
    return f"{n} shared seed{'' if n == 1 else 's'}, at least {MINIMUM_SEEDS} needed."


def numbers_text(pair: dict, level: float) -> str:
    """"a − b = +3.0 pp, 95 % CI +1.0 pp to +5.0 pp, Holm-adjusted p = 0.020, n = 5"."""
    interval = ("" if pair.get("ci_low") is None or pair.get("ci_high") is None else
                f", {percent(level, 0)} CI {points(pair['ci_low'])} to {points(pair['ci_high'])}")
    return (f"a − b = {points(pair.get('mean_difference'))}{interval}, "
            f"Holm-adjusted {p_value_text(pair.get('p_value_holm'))}, n = {pair.get('n')}")


def verdict_sentence(pair: dict, hypotheses: dict, untrainable: dict[str, str], level: float) -> str:
    """What a pair's verdict means, with the numbers it rests on."""
    claim = f"`{pair['loss_a']}` > `{pair['loss_b']}`"
    margin = points_size(hypotheses.get("equivalence_margin") or 0.0)
    verdict = pair.get("verdict") or "not tested"
    if verdict == "not tested":
        return f"{claim}: not tested. {not_tested_reason(pair, untrainable)}"
    if verdict == "not testable":
        named = [loss for loss in (pair["loss_a"], pair["loss_b"]) if loss in untrainable]
        reasons = "; ".join(f"`{loss}` did not train ({full_sentence(untrainable[loss])[:-1]})"
                            for loss in named)
        return (f"{claim}: not testable. {reasons}, so its accuracy measures that, not the "
                "loss; no verdict whatever the p-value.")
    numbers = numbers_text(pair, level)
    tost = f"TOST {p_value_text(pair.get('equivalence_p_value'))}"
    if verdict == "reproduced":
        return f"{claim}: reproduced. `{pair['loss_a']}` is significantly higher ({numbers})."
    if verdict == "reversed":
        return (f"{claim}: reversed. `{pair['loss_b']}` is significantly higher, against the "
                f"paper's claim ({numbers}).")
    if verdict == "equivalent":
        return (f"{claim}: not reproduced. The two are equivalent within ±{margin} ({tost}; "
                f"{numbers}).")
    if verdict == "inconclusive":
        power = percent(hypotheses.get("power", 0.8), 0)
        detectable = pair.get("minimum_detectable_difference")
        reach = (f"with n = {pair.get('n')} the study could have detected a difference of "
                 f"{points_size(detectable)} at {power} power" if detectable is not None else
                 f"the smallest difference it could have detected at {power} power is unknown "
                 "(no spread between seeds to estimate it from)")
        return (f"{claim}: inconclusive. The difference ({numbers}) is neither significant nor "
                f"shown to lie within ±{margin} ({tost}); {reach}.")
    return f"{claim}: {verdict} ({numbers})."


def hypotheses_section(summary: dict) -> list[str]:
    """The section's Markdown lines; none for a summary without pre-registered hypotheses."""
    hypotheses = summary.get("hypotheses")
    if not hypotheses or not hypotheses.get("pairs"):
        return []
    level = summary["confidence_level"]
    untrainable = hypotheses.get("untrainable_losses") or {}
    header = ["Paper's claim", "n", f"Difference a − b ({percent(level, 0)} CI)", "d_z",
              "Holm p", "TOST p", "Verdict"]
    lines = ["## Pre-registered hypotheses", "",
             f"Each row tests one claim of the paper, that loss a beats loss b, by a paired "
             f"t-test over seeds (α = {hypotheses.get('alpha', summary.get('alpha', 0.05)):.2g}, "
             "Holm-adjusted within the primary family of pre-registered pairs) and, for equivalence, two one-sided "
             f"tests (TOST) against ±{points_size(hypotheses.get('equivalence_margin') or 0.0)}. "
             "d_z: the mean difference over its standard deviation across seeds (Cohen's d_z).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(pair_row(pair)) + " |" for pair in hypotheses["pairs"]]
    lines += [""] + [f"- {verdict_sentence(pair, hypotheses, untrainable, level)}" for pair in hypotheses["pairs"]]
    lines += [f"- `{loss}` is untrainable here, so left out of the ranking. {full_sentence(reason)}"
              for loss, reason in untrainable.items()]
    return lines + [""]
