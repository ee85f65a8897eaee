"""The sequential rule (dynds_core.sequential): its looks, its decision, and its error rate by simulation."""

import numpy as np
import pytest

from dynds_core.sequential import judge_interval, look_level, n_looks, sequential_decision
from dynds_core.stats import mean_ci


def test_looks_are_planned_from_min_to_max_seeds_and_share_alpha():
    assert n_looks(3, 5) == 3 and n_looks(3, 3) == 1
    assert look_level(3, 5) == pytest.approx(1 - 0.05 / 3)
    assert look_level(3, 3) == pytest.approx(0.95)  # one look: the plain 95 % interval
    with pytest.raises(ValueError, match="min_seeds must be >= 2"):
        look_level(1, 3)
    with pytest.raises(ValueError, match="max_seeds must be >= min_seeds"):
        look_level(4, 3)


def test_an_interval_decides_only_when_it_clears_the_threshold():
    assert judge_interval((0.1, 0.9), 0.0) == "pass"
    assert judge_interval((-0.9, -0.1), 0.0) == "fail"
    assert judge_interval((-0.1, 0.9), 0.0) is None
    assert judge_interval((-0.4, 0.2), -0.5) == "pass"  # no-worse: the delta's interval above -Y


def test_the_first_deciding_look_is_the_decision():
    # Too few seeds: undecided; enough and clear: pass at the first look; max reached without: inconclusive.
    assert sequential_decision([1.0, 1.2], threshold=0, min_seeds=3, max_seeds=5).outcome == "undecided"
    d = sequential_decision([0.9, 1.3, 1.1, -5.0], threshold=0, min_seeds=3, max_seeds=5)
    assert d.outcome == "pass" and [look.n_seeds for look in d.looks] == [3]  # the later seed does not undo it
    assert d.last.ci == pytest.approx(mean_ci([0.9, 1.3, 1.1], 1 - 0.05 / 3)[1])
    noisy = [1.0, -1.0, 0.5, -0.5, 0.2, 9.0]
    d = sequential_decision(noisy, threshold=0, min_seeds=3, max_seeds=5)
    assert d.outcome == "inconclusive" and [look.n_seeds for look in d.looks] == [3, 4, 5]
    assert sequential_decision([-2.0, -2.2, -1.9], threshold=-0.5, min_seeds=3, max_seeds=3).outcome == "fail"


def _false_pass_rate(level: float | None, *, sequences: int = 4000, min_seeds: int = 3, max_seeds: int = 10) -> float:
    """Sequences of normal per-seed values whose true mean is the threshold itself (a setting exactly as good as
    the equal-time baseline): the share the gate passes, with the Bonferroni levels (None) or a fixed per-look level."""
    rng = np.random.default_rng(19)
    values = rng.normal(0.0, 1.0, size=(sequences, max_seeds))
    passes = sum(
        sequential_decision(row.tolist(), threshold=0.0, min_seeds=min_seeds, max_seeds=max_seeds, level=level).outcome == "pass" for row in values
    )
    return passes / sequences


def test_under_the_null_the_gate_passes_at_most_5_percent_and_the_naive_rule_does_not():
    """Looks at 3..10 seeds. Bonferroni's bound is 2.5 % false passes (measured about 1.3 %); a plain 95 % interval
    at every look passes about 8 % (one look alone: 2.5 %): the test catches a gate that forgets the correction."""
    corrected = _false_pass_rate(None)
    naive = _false_pass_rate(0.95)
    assert corrected <= 0.05 and corrected <= 0.025 + 0.006  # the union bound's 2.5 %, with 2.5 sigma of simulation noise
    assert naive > 0.05


def test_the_corrected_gate_still_passes_a_real_gain():
    rng = np.random.default_rng(7)
    values = rng.normal(1.5, 1.0, size=(300, 10))  # the setting beats the baseline by 1.5 standard deviations
    passes = sum(sequential_decision(row.tolist(), threshold=0.0, min_seeds=3, max_seeds=10).outcome == "pass" for row in values)
    assert passes / len(values) > 0.8
