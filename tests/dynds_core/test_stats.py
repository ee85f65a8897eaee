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


def test_t_quantile_matches_the_table_and_known_values():
    from dynds_core.stats import _T975, t_cdf, t_quantile

    assert all(t_quantile(0.975, df) == pytest.approx(t, abs=1e-3) for df, t in enumerate(_T975, 1))
    # Textbook values: t(0.995, 1) = 63.657, t(0.999, 5) = 5.893, t(0.975, 200) = 1.972.
    assert t_quantile(0.995, 1) == pytest.approx(63.657, abs=1e-3)
    assert t_quantile(0.999, 5) == pytest.approx(5.893, abs=1e-3)
    assert t_quantile(0.975, 200) == pytest.approx(1.972, abs=1e-3)
    assert t_cdf(t_quantile(0.9917, 3), 3) == pytest.approx(0.9917, abs=1e-9)
    with pytest.raises(ValueError, match="p must be"):
        t_quantile(1.0, 3)


def test_mean_ci_at_95_is_mean_ci95_and_wider_at_higher_levels():
    from dynds_core.stats import mean_ci

    values = [0.30, 0.34, 0.32, 0.29]
    mean, ci = mean_ci(values, 0.95)
    assert mean == pytest.approx(mean_ci95(values)[0]) and ci == pytest.approx(mean_ci95(values)[1], abs=1e-4)
    _, wide = mean_ci(values, 0.99)
    assert wide[0] < ci[0] and wide[1] > ci[1]
    assert mean_ci([0.3], 0.99) == (0.3, None)
