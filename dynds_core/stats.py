"""Statistics over seeds: the mean and a Student-t 95 % confidence interval.

    mean_ci95([0.31, 0.35, 0.29])   # (0.3167, (0.2410, 0.3923))

One seed has no interval (``None``): a figure from one run is an anecdote, and callers say so.
"""

from __future__ import annotations

import functools
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


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes' betacf)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)), -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``0.5 <= p < 1``, ``df >= 1``), by bisection
    on ``t_cdf`` to 1e-12: ``t_quantile(0.975, 2)`` is 4.303 (``t975``'s table), ``t_quantile(0.995, 1)`` 63.657."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1: {df}")
    if not 0.5 <= p < 1.0:
        raise ValueError(f"p must be in [0.5, 1): {p}")
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    while high - low > 1e-12 * max(1.0, high):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


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


def mean_ci(values: Sequence[float], level: float) -> tuple[float | None, tuple[float, float] | None]:
    """Mean and two-sided ``level`` confidence interval of the mean (Student t), e.g. ``level=0.99`` for 99 %.

    ``mean_ci(v, 0.95)`` equals ``mean_ci95(v)`` (to the table's three decimals). Fewer than two values: no interval.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1: {level}")
    mean, std = mean_std(values)
    if mean is None or std is None or len(values) < 2:
        return mean, None
    half = t_quantile(0.5 + level / 2.0, len(values) - 1) * std / math.sqrt(len(values))
    return mean, (mean - half, mean + half)
