"""The numbers reviewers read in DVC's tables: rounded, so that they fit a screen and diff cleanly.

In:  a value bound for a file that `dvc metrics show/diff` or `dvc exp show` prints (the
     headline of compare, the per-run review files of evaluate).
Out: `review_number`: a float rounded to `REVIEW_DECIMALS` decimals with -0.0 made 0.0, an
     int or None unchanged, a bool as 0/1.

Why round at all: DVC prints a difference as the new value minus the old, rounded to 5
decimals, so two runs that agree to 7 decimals showed up as a change of "-0.0", and values
that differ only in their last bits as a change of "0.0". Rounded to 4 decimals, any two
values either are equal (and DVC leaves them out) or differ by at least 0.0001. Four decimals
keep every test accuracy exact up to 10,000 test images (CIFAR-10's test set). The full
precision stays in the evaluation and summary files.
"""

from __future__ import annotations

import math
from typing import Any

REVIEW_DECIMALS = 4


def review_number(value: Any) -> int | float | None:
    """`value` as DVC should show it: None (missing or not finite) stays None, a bool becomes
    0/1 (`dvc metrics diff` leaves out what is not a number), an int stays, a float is rounded
    to `REVIEW_DECIMALS` decimals with -0.0 written as 0.0."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    number = float(value)
    if not math.isfinite(number):
        return None
    # Adding 0.0 turns -0.0 (a tiny negative number rounded) into 0.0.
    return round(number, REVIEW_DECIMALS) + 0.0
