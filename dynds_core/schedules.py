"""Schedules: which training steps run reduced.

Each kind is a pure function of (step, total_steps, seed, settings) returning True for a reduced
step; :class:`Schedule` is a thin object on top that the trainer asks once per step::

    sched = make_schedule(spec.dynds.schedule, total_steps=390, seed=0)
    sched.decide(step=0, epoch=0)      # "full" or "reduced"
    sched.plan()                       # every decision up front (not for adaptive)

Randomness comes from a counter-based hash of (seed, step), never from global RNG state, so the
same seed gives the same decisions on every run and machine, and a schedule can be asked about
any step in any order.

The adaptive schedule (ours; none of the prior work has one) follows training signals: see
:class:`AdaptiveState`.

DynDS's relatives (``RELATIVE_KINDS``) schedule input *sizes*: each step's size is a pure function of
(seed, step, total steps, the data's size); a step below the data's size is a reduced step, run through
the same reduced pass with full kernels::

    sched = make_schedule({"kind": "progressive"}, total_steps=100, image_size=(32, 32))
    sched.input_size(0), sched.input_size(70), sched.input_size(99)   # (16, 16) (24, 24) None (full)

- ``progressive``: Composer's ProgressiveResizing (:func:`progressive_scale`, :func:`progressive_size`).
- ``mixsize``: Mix&Match, Hoffer et al. 2019, arXiv:1908.08986 (:func:`mixsize_scale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from .spec import (
    RELATIVE_KINDS,
    AdaptiveSchedule,
    MixSizeSchedule,
    NoneSchedule,
    PeriodicSchedule,
    PhaseSchedule,
    ProgressiveSchedule,
    StochasticSchedule,
)

BatchType = Literal["full", "reduced"]

# Each kind's settings and their defaults, as the spec's schedule sections declare them (the one
# definition): a plain dict that leaves a setting out gets the spec's default.
SCHEDULE_DEFAULTS: dict[str, dict[str, Any]] = {
    section.model_fields["kind"].default: section().model_dump()
    for section in (NoneSchedule, StochasticSchedule, PeriodicSchedule, PhaseSchedule, AdaptiveSchedule, ProgressiveSchedule, MixSizeSchedule)
}
_PERIODIC, _ADAPTIVE = SCHEDULE_DEFAULTS["periodic"], SCHEDULE_DEFAULTS["adaptive"]
_PROGRESSIVE, _MIXSIZE = SCHEDULE_DEFAULTS["progressive"], SCHEDULE_DEFAULTS["mixsize"]

_MASK64 = (1 << 64) - 1
# Salts keep the schedule's random stream apart from any other use of the same seed.
_STREAM_STOCHASTIC = 0x5EED_5C4E
_STREAM_ADAPTIVE = 0xADA9_7135
_STREAM_MIXSIZE = 0x312E_5175


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def uniform(seed: int, step: int, stream: int = 0) -> float:
    """A uniform number in [0, 1) fixed by (seed, step, stream): pure integer arithmetic, same everywhere.

    >>> uniform(0, 5) == uniform(0, 5)
    True
    """
    h = _splitmix64(_splitmix64(_splitmix64(stream & _MASK64) ^ (seed & _MASK64)) ^ (step & _MASK64))
    return (h >> 11) * (1.0 / (1 << 53))


# ---------------------------------------------------------------------------------------------
# Pure decision functions (True = reduced)
# ---------------------------------------------------------------------------------------------


def _check_step(step: int, total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1: {total_steps}")
    if not 0 <= step < total_steps:
        raise ValueError(f"step must be in [0, {total_steps}): {step}")


def final_full_start(total_steps: int, final_full_fraction: float) -> int:
    """First step of the always-full tail: the last round(total * fraction) steps are full."""
    if not 0 <= final_full_fraction <= 1:
        raise ValueError(f"final_full_fraction must be between 0 and 1: {final_full_fraction}")
    return total_steps - int(round(total_steps * final_full_fraction))


def stochastic_p(step: int, total_steps: int, p: float, p_end: float | None = None) -> float:
    """Reduction probability at ``step``: ``p`` annealed linearly to ``p_end`` (reached at the last step)."""
    if p_end is None or total_steps <= 1:
        return p
    return p + (p_end - p) * step / (total_steps - 1)


def stochastic_reduced(step: int, total_steps: int, seed: int, p: float, p_end: float | None = None) -> bool:
    _check_step(step, total_steps)
    return uniform(seed, step, _STREAM_STOCHASTIC) < stochastic_p(step, total_steps, p, p_end)


def periodic_pattern(every: int | None = _PERIODIC["every"], pattern: str | None = None) -> str:
    """The repeating pattern of R (reduced) and F (full): ``every: 3`` -> ``"RRF"``; ``pattern`` overrides."""
    if pattern is not None:
        if not pattern or set(pattern) - {"R", "F"}:
            raise ValueError(f"pattern must be a non-empty string of R and F: {pattern!r}")
        return pattern
    if every is None or every < 1:
        raise ValueError(f"every must be a positive integer: {every}")
    return "R" * (every - 1) + "F"


def periodic_reduced(step: int, total_steps: int, every: int | None = _PERIODIC["every"], pattern: str | None = None) -> bool:
    _check_step(step, total_steps)
    pat = periodic_pattern(every, pattern)
    return pat[step % len(pat)] == "R"


def phase_window(total_steps: int, start: float, end: float) -> tuple[int, int]:
    """[first, last) reduced step of a phase schedule: fractions rounded to whole steps."""
    if not 0 <= start <= end <= 1:
        raise ValueError(f"phase needs 0 <= start <= end <= 1: start={start}, end={end}")
    return int(round(total_steps * start)), int(round(total_steps * end))


def phase_reduced(step: int, total_steps: int, start: float, end: float) -> bool:
    _check_step(step, total_steps)
    lo, hi = phase_window(total_steps, start, end)
    return lo <= step < hi


def adaptive_p(rate_reduced: float | None, rate_full: float | None, p_min: float, p_max: float) -> float:
    """Reduction probability from the two progress rates (loss decrease per second).

    The probability moves from the midpoint of [p_min, p_max] towards p_max as reduced steps buy
    relatively more progress per second, and towards p_min as full steps do:
    ``p = p_min + (p_max - p_min) * (0.5 + 0.5 * (r_R - r_F) / (|r_R| + |r_F|))``.
    Without both rates yet, the midpoint.
    """
    if not 0 <= p_min <= p_max <= 1:
        raise ValueError(f"adaptive needs 0 <= p_min <= p_max <= 1: p_min={p_min}, p_max={p_max}")
    if rate_reduced is None or rate_full is None:
        return 0.5 * (p_min + p_max)
    scale = abs(rate_reduced) + abs(rate_full)
    share = 0.5 if scale == 0 else 0.5 + 0.5 * (rate_reduced - rate_full) / scale
    return p_min + (p_max - p_min) * min(1.0, max(0.0, share))


# ---------------------------------------------------------------------------------------------
# Input sizes of the relatives (a step's size; the data's own size is a full step)
# ---------------------------------------------------------------------------------------------

Size = tuple[int, int]


def scaled_size(image_size: Size, scale: float, size_increment: int = 1) -> Size:
    """(H, W) of ``image_size`` scaled by ``scale``, the width rounded to a multiple of ``size_increment``
    (at least one increment, never above the data's size) and the height following the rounded width, as
    Composer's ProgressiveResizing rounds.

    >>> scaled_size((32, 32), 0.5, 4), scaled_size((32, 32), 0.6, 4), scaled_size((28, 28), 0.75)
    ((16, 16), (20, 20), (21, 21))
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1]: {scale}")
    if size_increment < 1:
        raise ValueError(f"size_increment must be a positive integer: {size_increment}")
    h, w = image_size
    new_w = min(w, max(size_increment, int(round(w * scale / size_increment)) * size_increment))
    return min(h, max(1, int(round(h * new_w / w)))), new_w


def progressive_scale(
    step: int,
    total_steps: int,
    initial_scale: float = _PROGRESSIVE["initial_scale"],
    delay_fraction: float = _PROGRESSIVE["delay_fraction"],
    finetune_fraction: float = _PROGRESSIVE["finetune_fraction"],
) -> float:
    """Composer's ProgressiveResizing scale at ``step``: ``initial_scale`` for the first ``delay_fraction``
    of training, rising linearly to 1 where the last ``finetune_fraction`` begins, 1 after.

    >>> [progressive_scale(s, 10) for s in (0, 4, 5, 6, 7, 8, 9)]
    [0.5, 0.5, 0.5, 0.6666666666666666, 0.8333333333333333, 1.0, 1.0]
    """
    _check_step(step, total_steps)
    if not 0 < initial_scale <= 1:
        raise ValueError(f"initial_scale must be between 0 and 1: {initial_scale}")
    if not (0 <= delay_fraction <= 1 and 0 <= finetune_fraction <= 1 and delay_fraction + finetune_fraction <= 1):
        raise ValueError(f"delay_fraction + finetune_fraction must be at most 1, each in [0, 1]: {delay_fraction}, {finetune_fraction}")
    elapsed = step / total_steps
    if elapsed < delay_fraction:
        return initial_scale
    ramp = 1.0 - finetune_fraction - delay_fraction
    done = 1.0 if ramp <= 0 else min(1.0, (elapsed - delay_fraction) / ramp)
    return initial_scale + (1.0 - initial_scale) * done


def progressive_size(
    step: int,
    total_steps: int,
    image_size: Size,
    initial_scale: float = _PROGRESSIVE["initial_scale"],
    delay_fraction: float = _PROGRESSIVE["delay_fraction"],
    finetune_fraction: float = _PROGRESSIVE["finetune_fraction"],
    size_increment: int = _PROGRESSIVE["size_increment"],
) -> Size:
    """The input size of ``step`` under progressive resizing (the data's own size: a full step).

    >>> [progressive_size(s, 10, (32, 32))[1] for s in range(10)]
    [16, 16, 16, 16, 16, 16, 20, 28, 32, 32]
    """
    return scaled_size(image_size, progressive_scale(step, total_steps, initial_scale, delay_fraction, finetune_fraction), size_increment)


def mixsize_scale(step: int, seed: int, scales: list[float] = _MIXSIZE["scales"], probs: list[float] = _MIXSIZE["probs"]) -> float:
    """The scale Mix&Match draws for ``step``: ``scales[i]`` with probability ``probs[i]``, from the
    counter-based hash of (seed, step), so any step can be asked in any order.

    >>> mixsize_scale(3, seed=0) == mixsize_scale(3, seed=0)
    True
    """
    if not scales or len(scales) != len(probs):
        raise ValueError(f"mixsize needs one probability per scale: {len(probs)} for {len(scales)} scales")
    u, acc = uniform(seed, step, _STREAM_MIXSIZE), 0.0
    for scale, p in zip(scales, probs, strict=True):
        acc += p
        if u < acc:
            return scale
    return scales[-1]  # float rounding of a sum of 1


def smallest_size(schedule: Any, image_size: Size) -> Size:
    """The smallest input size a relative's schedule section (or dict) can use on ``image_size`` images, without
    walking its steps (what a spec is checked against at the door); ``image_size`` for DynDS's own kinds.

    >>> smallest_size({"kind": "progressive"}, (32, 32)), smallest_size({"kind": "mixsize"}, (28, 28))
    ((16, 16), (14, 14))
    """
    kind, s = _settings(schedule)
    if kind == "progressive":
        return scaled_size(image_size, s["initial_scale"], s["size_increment"])
    if kind == "mixsize":
        return min((scaled_size(image_size, sc) for sc, p in zip(s["scales"], s["probs"], strict=True) if p > 0), default=image_size)
    return image_size


# ---------------------------------------------------------------------------------------------
# Adaptive signals
# ---------------------------------------------------------------------------------------------


@dataclass
class AdaptiveState:
    """Per-type EMAs of loss decrease per second of compute.

    The training loss of a reduced batch is measured at low resolution and is not comparable with a
    full batch's, and a loss drop after a step is caused by every step before it. So progress is
    credited only across two *consecutive steps of the same type*: the relative drop
    ``log(L_prev) - log(L_now)`` is what the earlier step bought (plus batch noise), and its cost is
    that step's wall time. Relative drops make both types' rates comparable. Each type keeps an EMA
    (span ``window``) of drop per second; with the random mixing kept between p_min and p_max,
    same-type pairs keep occurring for both types, so neither estimate starves.
    """

    window: int = _ADAPTIVE["window"]
    rate: dict[str, float | None] = field(default_factory=lambda: {"full": None, "reduced": None})
    pairs: dict[str, int] = field(default_factory=lambda: {"full": 0, "reduced": 0})
    _last: tuple[str, float, float] | None = None  # (type, loss, step time) of the previous step

    # A rate is trusted only after this many same-type pairs: early EMAs are one batch's noise.
    min_pairs: int = 5

    def observe(self, batch_type: str, loss: float, step_time_s: float) -> None:
        if batch_type not in ("full", "reduced"):
            raise ValueError(f"batch_type must be 'full' or 'reduced': {batch_type!r}")
        if not (math.isfinite(loss) and loss > 0):
            self._last = None  # a diverged or zero loss carries no usable signal
            return
        last = self._last
        if last is not None and last[0] == batch_type and last[2] > 0:
            drop_per_s = (math.log(last[1]) - math.log(loss)) / last[2]
            alpha = 2.0 / (self.window + 1)
            old = self.rate[batch_type]
            self.rate[batch_type] = drop_per_s if old is None else old + alpha * (drop_per_s - old)
            self.pairs[batch_type] += 1
        self._last = (batch_type, loss, step_time_s)

    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`observe` has learnt (a checkpoint's part): the EMAs, their counts, the last step."""
        return {"rate": dict(self.rate), "pairs": dict(self.pairs), "last": self._last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rate, self.pairs = dict(state["rate"]), dict(state["pairs"])
        last = state["last"]
        self._last = None if last is None else (str(last[0]), float(last[1]), float(last[2]))

    def trusted_rates(self) -> tuple[float | None, float | None]:
        """(reduced rate, full rate), each None until it has ``min_pairs`` observations."""
        r = self.rate["reduced"] if self.pairs["reduced"] >= self.min_pairs else None
        f = self.rate["full"] if self.pairs["full"] >= self.min_pairs else None
        return r, f


# ---------------------------------------------------------------------------------------------
# The thin class the trainer uses
# ---------------------------------------------------------------------------------------------


def _settings(spec: Any) -> tuple[str, dict[str, Any]]:
    """(kind, every setting of that kind) of a schedule section or a plain dict, defaults filled in."""
    kind = spec.get("kind", "none") if isinstance(spec, dict) else getattr(spec, "kind", "none")
    if kind not in SCHEDULE_DEFAULTS:
        raise ValueError(f"unknown schedule kind {kind!r}; allowed: {', '.join(SCHEDULE_DEFAULTS)}")
    defaults = SCHEDULE_DEFAULTS[kind]
    if isinstance(spec, dict):
        return kind, {**defaults, **spec}
    return kind, {name: getattr(spec, name, default) for name, default in defaults.items()}


class Schedule:
    """Decides, step by step, whether a batch runs full or reduced (and, for the relatives, at which input
    size). Build with :func:`make_schedule`; the relatives need the data's ``image_size`` (H, W)."""

    def __init__(self, spec: Any, total_steps: int, seed: int, image_size: Size | None = None):
        if total_steps < 1:
            raise ValueError(f"total_steps must be at least 1: {total_steps}")
        self.kind, self.settings = _settings(spec)
        self.spec = spec
        self.total_steps = int(total_steps)
        self.seed = int(seed)
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        if self.kind in RELATIVE_KINDS and self.image_size is None:
            raise ValueError(f"a {self.kind!r} schedule needs the data's image_size (H, W): its sizes are fractions of it")
        self.final_start = final_full_start(self.total_steps, float(self.settings["final_full_fraction"] or 0.0))
        self.adaptive = AdaptiveState(window=int(self.settings["window"])) if self.kind == "adaptive" else None

    # -- the scheduled (signal-free) kinds --------------------------------------------------------
    def _reduced(self, step: int) -> bool:
        s, n, k = self.settings, self.total_steps, self.kind
        _check_step(step, n)
        if step >= self.final_start:
            return False
        if k == "stochastic":
            return stochastic_reduced(step, n, self.seed, s["p"], s["p_end"])
        if k == "periodic":
            return periodic_reduced(step, n, s["every"], s["pattern"])
        if k == "phase":
            return phase_reduced(step, n, s["start"], s["end"])
        if k == "adaptive":
            return uniform(self.seed, step, _STREAM_ADAPTIVE) < self.current_p()
        if k in RELATIVE_KINDS:
            return self._size(step) != self.image_size
        return False  # none (_settings refused any other kind)

    def _size(self, step: int) -> Size:
        s, full = self.settings, self.image_size
        assert full is not None  # __init__ refused a relative without it
        if self.kind == "progressive":
            return progressive_size(
                step, self.total_steps, full, s["initial_scale"], s["delay_fraction"], s["finetune_fraction"], s["size_increment"]
            )
        return scaled_size(full, mixsize_scale(step, self.seed, s["scales"], s["probs"]))

    def input_size(self, step: int) -> Size | None:
        """The input size of a relative's reduced step; None for a full step and for DynDS's own kinds
        (their reduced steps divide the input by ``dynds.input.factor``)."""
        if self.kind not in RELATIVE_KINDS or not self._reduced(step):
            return None
        return self._size(step)

    def size_shares(self) -> dict[Size, float]:
        """Expected share of all steps at each reduced input size (the relatives; {} for the other kinds):
        exact counts for progressive, the draw probabilities for mixsize. What FLOPs and warm-up need."""
        shares: dict[Size, float] = {}
        if self.kind == "progressive":
            for i in range(self.final_start):
                size = self._size(i)
                if size != self.image_size:
                    shares[size] = shares.get(size, 0.0) + 1.0 / self.total_steps
        elif self.kind == "mixsize":
            assert self.image_size is not None
            head = self.final_start / self.total_steps
            for scale, p in zip(self.settings["scales"], self.settings["probs"], strict=True):
                size = scaled_size(self.image_size, scale)
                if size != self.image_size and p > 0:
                    shares[size] = shares.get(size, 0.0) + p * head
        return shares

    def decide(self, step: int, epoch: int = 0) -> BatchType:
        """``"reduced"`` or ``"full"`` for this step (``epoch`` is informational: kinds work in steps)."""
        return "reduced" if self._reduced(step) else "full"

    def observe(self, batch_type: str, loss: float, step_time_s: float) -> None:
        """Feed a finished step's loss and wall time; only the adaptive kind listens."""
        if self.adaptive is not None:
            self.adaptive.observe(batch_type, loss, step_time_s)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to decide as this one would: the adaptive kind's signals (the others
        are pure functions of the step and hold nothing)."""
        return {"kind": self.kind, "adaptive": None if self.adaptive is None else self.adaptive.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["kind"] != self.kind:
            raise ValueError(f"a {state['kind']!r} schedule's state cannot continue a {self.kind!r} schedule")
        if self.adaptive is not None:
            self.adaptive.load_state_dict(state["adaptive"])

    def current_p(self) -> float:
        """The adaptive kind's current reduction probability."""
        if self.adaptive is None:
            raise ValueError(f"current_p is only defined for the adaptive schedule, not {self.kind!r}")
        r, f = self.adaptive.trusted_rates()
        return adaptive_p(r, f, self.settings["p_min"], self.settings["p_max"])

    @property
    def can_reduce(self) -> bool:
        """Whether any step may run reduced (if not, the model need not support a reduced pass)."""
        if self.kind == "none" or self.final_start == 0:
            return False
        if self.kind == "adaptive":
            return self.settings["p_max"] > 0
        if self.kind in RELATIVE_KINDS:
            return bool(self.size_shares())
        return any(self._reduced(i) for i in range(self.final_start))

    def plan(self) -> list[BatchType] | None:
        """Every decision up front; None for the adaptive kind (its decisions depend on training)."""
        if self.adaptive is not None:
            return None
        return [self.decide(i) for i in range(self.total_steps)]

    def expected_reduced_fraction(self) -> float:
        """Expected share of reduced steps: exact for the scheduled kinds (the stochastic kind's
        probabilities, not its draws), the midpoint of [p_min, p_max] for the adaptive one."""
        n, k, s = self.total_steps, self.kind, self.settings
        head = self.final_start
        if k == "stochastic":
            return sum(stochastic_p(i, n, s["p"], s["p_end"]) for i in range(head)) / n
        if k == "adaptive":
            return 0.5 * (s["p_min"] + s["p_max"]) * head / n
        if k in RELATIVE_KINDS:
            return sum(self.size_shares().values())
        return sum(self._reduced(i) for i in range(head)) / n

    def __repr__(self) -> str:
        return f"Schedule(kind={self.kind!r}, total_steps={self.total_steps}, seed={self.seed})"


def make_schedule(spec: Any, total_steps: int, seed: int = 0, image_size: Size | None = None) -> Schedule:
    """Build the schedule of ``spec.dynds.schedule`` (a schedule section or a plain dict); ``image_size``
    (H, W), the data's, is needed by the relatives (progressive, mixsize).

    >>> make_schedule({"kind": "periodic", "every": 3}, total_steps=6).plan()
    ['reduced', 'reduced', 'full', 'reduced', 'reduced', 'full']
    """
    return Schedule(spec, total_steps, seed, image_size)
