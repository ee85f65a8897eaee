"""Deciding over seeds added one at a time, with the error of looking again and again held under 5 %.

    d = sequential_decision([0.9, 1.3, 1.1], threshold=0.0, min_seeds=3, max_seeds=5)
    d.outcome     # "pass": at 3 seeds the interval (+0.22 to +1.98) lies above 0
    d.level       # 0.98333...: each look's interval is a 98.3 % one (alpha 0.05 spent over 3 looks)

Why a correction: a gate that adds a seed, looks at the plain 95 % interval, and adds another until the interval
clears its threshold is wrong more often than 5 %: every look is one more chance for noise to cross the line.
Simulated with normal per-seed values whose true mean sits on the threshold and looks at 3, 4, ..., 10 seeds, a
plain 95 % interval at each look passes 8.3 % of such sequences, against 2.5 % for a single look
(tests/dynds_core/test_sequential.py).

The rule (Bonferroni alpha spending over planned looks): the looks are fixed in advance, one at each seed count
from ``min_seeds`` to ``max_seeds`` (K = max_seeds - min_seeds + 1 looks), and each look uses a two-sided
(1 - alpha/K) Student-t interval. By the union bound, with probability >= 1 - alpha every interval the gate can
look at covers the true mean at once, so, wherever it stops, it passes wrongly (true mean at or below the
threshold) with probability <= alpha/2 and fails wrongly (at or above it) with probability <= alpha/2: at most
5 % wrong decisions in all at alpha = 0.05 (simulated: 1.3 % false passes for 3..10 seeds). The price is wider
intervals: with 3 looks at 3-5 seeds, the first look's interval is 1.8x a plain 95 % one (t 7.65 against 4.30 at
2 degrees of freedom). ``min_seeds == max_seeds`` is one look with the plain 95 % interval. A skipped look (two
seeds finishing together) only lowers the error. The intervals assume roughly normal per-seed values.

Looks are made on the seeds in their planned order and the first look that decides is the decision, so the same
values give the same answer however often, and whenever, one asks. The bound holds for one plan: widening
``max_seeds`` after an "inconclusive" starts a second plan on the same seeds, whose looks add to the first's error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .stats import mean_ci

ALPHA = 0.05  # the error rate of the whole sequence of looks: every interval covers at once with 95 %
LookOutcome = Literal["pass", "fail"]
Outcome = Literal["pass", "fail", "undecided", "inconclusive"]


def check_plan(min_seeds: int, max_seeds: int, alpha: float = ALPHA) -> None:
    """Raise ValueError naming the bad value: at least 2 seeds (one seed has no interval), max >= min."""
    if min_seeds < 2:
        raise ValueError(f"min_seeds must be >= 2 (one seed has no interval): {min_seeds}")
    if max_seeds < min_seeds:
        raise ValueError(f"max_seeds must be >= min_seeds ({min_seeds}): {max_seeds}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1: {alpha}")


def n_looks(min_seeds: int, max_seeds: int) -> int:
    """The planned looks: one at each seed count from ``min_seeds`` to ``max_seeds``."""
    check_plan(min_seeds, max_seeds)
    return max_seeds - min_seeds + 1


def look_level(min_seeds: int, max_seeds: int, alpha: float = ALPHA) -> float:
    """The confidence level of each look's interval: ``1 - alpha / K`` (``look_level(3, 5)`` is 0.9833)."""
    check_plan(min_seeds, max_seeds, alpha)
    return 1.0 - alpha / n_looks(min_seeds, max_seeds)


def judge_interval(ci: tuple[float, float], threshold: float) -> LookOutcome | None:
    """``"pass"`` when the interval lies above ``threshold``, ``"fail"`` when below it, None when it spans it."""
    low, high = ci
    if low > threshold:
        return "pass"
    if high < threshold:
        return "fail"
    return None


@dataclass(frozen=True)
class Look:
    """One look: the first ``n_seeds`` values, their mean and interval, and what it decided (None: nothing)."""

    n_seeds: int
    mean: float
    ci: tuple[float, float]
    outcome: LookOutcome | None


@dataclass(frozen=True)
class SequentialDecision:
    """Where a sequence of looks stands: ``outcome`` and every look made, the deciding one last."""

    outcome: Outcome
    level: float
    looks: tuple[Look, ...]

    @property
    def last(self) -> Look | None:
        return self.looks[-1] if self.looks else None


def sequential_decision(
    values: Sequence[float], *, threshold: float, min_seeds: int, max_seeds: int, alpha: float = ALPHA, level: float | None = None
) -> SequentialDecision:
    """The decision on per-seed ``values`` in their planned order (the finished ones so far; more than
    ``max_seeds`` are cut): looks at ``min_seeds``, ``min_seeds + 1``, ... values, each with a ``look_level``
    interval; the first that lies wholly above ``threshold`` passes, wholly below it fails. None decided:
    "inconclusive" once ``max_seeds`` values were looked at, else "undecided" (add a seed and ask again).

    ``level`` overrides the per-look level (``level=0.95`` is the uncorrected rule, for comparison only).
    """
    check_plan(min_seeds, max_seeds, alpha)
    level = look_level(min_seeds, max_seeds, alpha) if level is None else level
    values = list(values)[:max_seeds]
    looks: list[Look] = []
    for n in range(min_seeds, len(values) + 1):
        mean, ci = mean_ci(values[:n], level)
        assert mean is not None and ci is not None  # n >= 2
        outcome = judge_interval(ci, threshold)
        looks.append(Look(n, mean, ci, outcome))
        if outcome is not None:
            return SequentialDecision(outcome, level, tuple(looks))
    return SequentialDecision("inconclusive" if len(values) >= max_seeds else "undecided", level, tuple(looks))
