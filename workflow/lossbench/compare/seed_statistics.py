"""Statistics over seeds: a summary with a confidence interval, a paired test, Holm's method.

In:  per-seed values (None, NaN and infinities are left out) and a confidence level.
Out: `describe` ({"n", "mean", "std", "ci_low", "ci_high"}: sample standard deviation and
     Student-t interval of the mean), `paired_comparison` (a paired t-test of two losses over
     the seeds both have, scipy.stats.ttest_rel, with the interval of the mean difference).
     Holm's adjustment is statsmodels' (lossbench.compare.hypotheses.holm). The compare stage
     builds its summary from these; the layout and the reasons are in its docstring.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

# Pairs sharing fewer seeds are listed untested: a t-test on two differences says nothing.
MINIMUM_PAIRED_SEEDS = 3


def check_confidence_level(confidence_level: float) -> None:
    if not 0.0 < float(confidence_level) < 1.0:
        raise ValueError(
            f"compare.confidence_level must lie strictly between 0 and 1, got {confidence_level}."
        )


def _finite_values(values: Iterable[Any]) -> list[float]:
    finite = []
    for value in values:
        if value is None or isinstance(value, bool):
            continue
        number = float(value)
        if math.isfinite(number):
            finite.append(number)
    return finite


def describe(values: Iterable[Any], confidence_level: float) -> dict[str, Any]:
    """n, mean, sample standard deviation and Student-t interval of the mean.

    Missing and non-finite values are left out. Returns {"n", "mean", "std", "ci_low",
    "ci_high"}; std and the interval are None for n < 2, the mean too for n = 0.
    """
    from scipy import stats

    check_confidence_level(confidence_level)
    finite = _finite_values(values)
    count = len(finite)
    result: dict[str, Any] = {"n": count, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    if count == 0:
        return result
    mean = math.fsum(finite) / count
    result["mean"] = mean
    if count < 2:
        return result
    if max(finite) - min(finite) <= 1e-12 * max(1.0, abs(mean)):
        # Equal values up to rounding (0.8 - 0.7 and 0.7 - 0.6 differ in the last bit):
        # an exact zero, so that a paired test reports "no variation" instead of a huge t.
        std = 0.0
    else:
        std = math.sqrt(math.fsum((value - mean) ** 2 for value in finite) / (count - 1))
    # The quantile times the standard error, computed directly rather than through
    # scipy.stats.t.interval, which returns NaN bounds when every value is equal.
    half_width = float(stats.t.ppf(0.5 + confidence_level / 2.0, count - 1)) * std / math.sqrt(count)
    result.update(std=std, ci_low=mean - half_width, ci_high=mean + half_width)
    return result


def paired_comparison(
    values_a: dict[int, Any],
    values_b: dict[int, Any],
    confidence_level: float,
    minimum_seeds: int = MINIMUM_PAIRED_SEEDS,
) -> dict[str, Any]:
    """Paired t-test of a - b over the seeds where both have a finite value.

    Args:
        values_a, values_b: {seed: value} of the two losses.
        confidence_level: the level of the interval of the mean difference.
        minimum_seeds: fewer shared seeds than this give `tested: False`.

    Returns:
        {"n", "seeds", "tested", "mean_difference", "ci_low", "ci_high", "t_statistic",
         "p_value"}; the statistics are None when not tested. When every seed shows the
        same difference the t statistic is undefined and `p_value` is None.
    """
    from scipy import stats

    seeds = sorted(
        seed for seed in set(values_a) & set(values_b)
        if _finite_values([values_a[seed]]) and _finite_values([values_b[seed]])
    )
    result: dict[str, Any] = {
        "n": len(seeds), "seeds": seeds, "tested": False, "mean_difference": None,
        "ci_low": None, "ci_high": None, "t_statistic": None, "p_value": None,
    }
    if len(seeds) < minimum_seeds:
        return result
    first = [float(values_a[seed]) for seed in seeds]
    second = [float(values_b[seed]) for seed in seeds]
    differences = describe([a - b for a, b in zip(first, second)], confidence_level)
    result.update(
        tested=True,
        mean_difference=differences["mean"],
        ci_low=differences["ci_low"],
        ci_high=differences["ci_high"],
    )
    if differences["std"] and differences["std"] > 0:
        test = stats.ttest_rel(first, second)
        result.update(t_statistic=float(test.statistic), p_value=float(test.pvalue))
    return result
