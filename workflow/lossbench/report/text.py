"""Numbers as the written report spells them.

In:  fractions, differences of fractions, seconds, p-values, counts, lists of values, and the
     summary statistics `lossbench compare` writes ({"n", "mean", "std", "ci_low",
     "ci_high"}).
Out: short strings for Markdown tables and sentences: "84.3 %", "+1.2 pp", "12.5 min",
     "p < 0.001", "1,376,148", "84.3 % ± 0.6", "0.0032", "3 runs". A missing value (None)
     is written as "—".

Shared by the report stage and the modules that write its sentences (`findings`,
`paper_setup`), so a number reads the same in the table, the conclusions and the caveats.
"""

from __future__ import annotations

from typing import Any, Iterable

MISSING = "—"


def percent(fraction: float | None, decimals: int = 1) -> str:
    """0.8432 -> "84.3 %"; None -> "—"."""
    return MISSING if fraction is None else f"{100.0 * fraction:.{decimals}f} %"


def points(difference: float | None, decimals: int = 1) -> str:
    """A difference of fractions in percentage points: 0.012 -> "+1.2 pp"."""
    return MISSING if difference is None else f"{100.0 * difference:+.{decimals}f} pp"


def scale(value: float | None) -> str:
    """A positive magnitude of any size to two significant digits: 0.00321 -> "0.0032"."""
    return MISSING if value is None else f"{value:.2g}"


def plural(number: int, word: str) -> str:
    """"1 run", "4 runs", "0 runs"."""
    return f"{number} {word}{'' if number == 1 else 's'}"


def full_sentence(text: str) -> str:
    """A reason given in the summary as a sentence of its own: stripped, with a full stop."""
    text = str(text).strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def backticked(names) -> str:
    """Names as code, "`a`, `b`"."""
    return ", ".join(f"`{name}`" for name in names)


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


def seeds_text(seeds: list) -> str:
    """ "seed 3" or "seeds 0, 2": the seeds of some runs, as a finding names them."""
    return f"seed{'s' if len(seeds) > 1 else ''} {joined(seeds)}"


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


def accuracy_with_count(statistics: dict) -> str:
    """An accuracy over a subset of the runs with their number: "61.0 % ± 12.7 (n = 2)"."""
    return f"{accuracy_with_interval(statistics)} (n = {statistics['n']})"
