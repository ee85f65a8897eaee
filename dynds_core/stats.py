"""Statistics over seeds: the mean and a Student-t 95 % confidence interval.

    mean_ci95([0.31, 0.35, 0.29])   # (0.3167, (0.2410, 0.3923))

One seed has no interval (``None``): a figure from one run is an anecdote, and callers say so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Two-sided 95 % quantiles of Student's t (0.975), degrees of freedom 1..30; past 30 the Cornish-Fisher
# expansion around the normal quantile is within 0.0002 of the exact value.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (``df >= 1``)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1: {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); one value has a spread of 0, none gives (None, None)."""
    n = len(values)
    if n == 0:
        return None, None
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def mean_ci95(values: Sequence[float]) -> tuple[float | None, tuple[float, float] | None]:
    """Mean and 95 % confidence interval of the mean (Student t over ``len(values) - 1`` degrees of freedom).

    Fewer than two values: no interval.
    """
    mean, std = mean_std(values)
    if mean is None or std is None or len(values) < 2:
        return mean, None
    half = t975(len(values) - 1) * std / math.sqrt(len(values))
    return mean, (mean - half, mean + half)
