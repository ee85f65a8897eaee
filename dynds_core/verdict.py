"""Was DynDS worth it? One sentence from the equal-time comparison, and the class behind it.

    v = judge(time_saving=0.36, acc_delta=-5.6, gap_mean=-0.4, gap_ci95=None, n_seeds=1)
    v.kind       # "needs_seeds"
    v.sentence   # "Not worth it here: 36 % less time for 5.6 pt less accuracy; the baseline trained for
                 #  the same time is 0.4 pt better (1 seed: not conclusive)."

The equal-time baseline (the baseline recipe cut to DynDS's train time) is what a user would do instead,
so it decides: DynDS is worth it where its accuracy beats that run's. With enough seeds the 95 %
interval of the gap decides (``beats_equal_time`` above 0, ``loses_to_equal_time`` below, else ``tie``);
with fewer the sentence follows the point estimate and says it is not conclusive.
Accuracy differences are in percentage points, written "pt" everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VerdictKind = Literal["beats_equal_time", "loses_to_equal_time", "tie", "needs_seeds", "no_equal_time"]
VERDICT_KINDS: tuple[str, ...] = ("beats_equal_time", "loses_to_equal_time", "tie", "needs_seeds", "no_equal_time")
DEFAULT_MIN_SEEDS = 3


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    sentence: str


def classify(gap_mean: float | None, gap_ci95: tuple[float, float] | None, n_seeds: int, min_seeds: int = DEFAULT_MIN_SEEDS) -> VerdictKind:
    """The verdict class of a cell: from the gap's 95 % interval once ``n_seeds >= min_seeds``."""
    if gap_mean is None:
        return "no_equal_time"
    if n_seeds < min_seeds or gap_ci95 is None:
        return "needs_seeds"
    low, high = gap_ci95
    if low > 0:
        return "beats_equal_time"
    if high < 0:
        return "loses_to_equal_time"
    return "tie"


def _pct(x: float) -> str:
    return f"{abs(x) * 100:.0f} %"


def _pt(x: float) -> str:
    return f"{abs(x):.1f} pt"


def _cost(time_saving: float | None, acc_delta: float | None) -> str:
    """'36 % less time for 5.6 pt less accuracy' (what DynDS gave against its paired baseline)."""
    if time_saving is None:
        return "no paired baseline ran, so its time saving is unknown"
    time = f"{_pct(time_saving)} {'less' if time_saving >= 0 else 'more'} time"
    if acc_delta is None:
        return time
    if abs(acc_delta) < 0.05:
        return f"{time} at the same accuracy"
    return f"{time} for {_pt(acc_delta)} {'less' if acc_delta < 0 else 'more'} accuracy"


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def judge(
    *,
    time_saving: float | None,
    acc_delta: float | None,
    gap_mean: float | None,
    gap_ci95: tuple[float, float] | None = None,
    n_seeds: int = 1,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    timing_noisy: bool = False,
    contended: bool = False,
) -> Verdict:
    """The verdict and its sentence for one job (``n_seeds=1``) or one leaderboard cell; ``timing_noisy``
    and ``contended`` (its runs did not have the hardware to themselves) say why its time saving is not reliable."""
    kind = classify(gap_mean, gap_ci95, n_seeds, min_seeds)
    cost = _cost(time_saving, acc_delta)
    noise = "; its timing was noisy (the savings disagreed or the step times varied), so the time saving is not reliable" if timing_noisy else ""
    if contended:
        noise += "; it did not have the machine to itself (another process took CPU time or the GPU from its steps), so the time saving "
        noise += "is not this hardware's"
    if kind == "no_equal_time":
        return Verdict(
            kind,
            f"Not conclusive: {cost}, but no equal-time baseline ran, so nothing says whether training the baseline "
            f"for less time does as well (set equal_time_baseline: true){noise}.",
        )
    assert gap_mean is not None
    if abs(gap_mean) < 0.05:
        other = "the baseline trained for the same time is as accurate"
    else:
        other = f"the baseline trained for the same time is {_pt(gap_mean)} {'worse' if gap_mean > 0 else 'better'}"
    interval = f" (95 % interval {gap_ci95[0]:+.1f} to {gap_ci95[1]:+.1f} pt over {_seeds(n_seeds)})" if gap_ci95 is not None else ""
    if kind == "needs_seeds":
        lead = "Worth it here" if gap_mean > 0 else "Not worth it here"
        return Verdict(kind, f"{lead}: {cost}; {other}{interval} ({_seeds(n_seeds)}: not conclusive, run at least {min_seeds}){noise}.")
    if kind == "beats_equal_time":
        return Verdict(kind, f"Worth it: {cost}; {other}{interval}{noise}.")
    if kind == "loses_to_equal_time":
        return Verdict(kind, f"Not worth it: {cost}; {other}{interval}{noise}.")
    return Verdict(kind, f"Not conclusive: {cost}; {other}, and the interval spans zero{interval}: a tie{noise}.")
