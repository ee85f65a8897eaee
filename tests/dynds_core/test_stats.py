import math

import pytest

from dynds_core.stats import mean_ci95, mean_std, t975


def test_t_quantiles_match_the_table_and_approach_the_normal():
    assert t975(1) == 12.706 and t975(2) == 4.303 and t975(30) == 2.042
    assert t975(31) == pytest.approx(2.0395, abs=2e-4) and t975(120) == pytest.approx(1.9799, abs=2e-4)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t975(0)


def test_interval_by_hand_for_three_seeds():
    mean, (lo, hi) = mean_ci95([0.30, 0.34, 0.32])
    half = 4.303 * 0.02 / math.sqrt(3)  # t(2) x sample std / sqrt(n)
    assert mean == pytest.approx(0.32) and lo == pytest.approx(0.32 - half) and hi == pytest.approx(0.32 + half)


def test_one_value_has_no_interval_and_none_has_no_mean():
    assert mean_ci95([0.3]) == (0.3, None)
    assert mean_ci95([]) == (None, None)
    assert mean_std([2.0]) == (2.0, 0.0)
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
