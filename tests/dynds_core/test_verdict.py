import pytest

from dynds_core.verdict import VERDICT_KINDS, classify, judge


@pytest.mark.parametrize(
    "gap, ci, n, kind",
    [
        (None, None, 5, "no_equal_time"),
        (1.0, (0.2, 1.8), 2, "needs_seeds"),
        (1.0, (0.2, 1.8), 3, "beats_equal_time"),
        (-1.0, (-1.8, -0.2), 3, "loses_to_equal_time"),
        (0.1, (-0.5, 0.7), 4, "tie"),
        (0.1, None, 3, "needs_seeds"),
    ],
)
def test_classify(gap, ci, n, kind):
    assert classify(gap, ci, n, min_seeds=3) == kind
    assert kind in VERDICT_KINDS


def test_the_issue_example_sentence():
    v = judge(time_saving=0.36, acc_delta=-5.6, gap_mean=-0.4, n_seeds=1)
    assert v.kind == "needs_seeds"
    assert v.sentence == (
        "Not worth it here: 36 % less time for 5.6 pt less accuracy; the baseline trained for the same time is "
        "0.4 pt better (1 seed: not conclusive, run at least 3)."
    )


@pytest.mark.parametrize(
    "kwargs, start",
    [
        (dict(gap_mean=1.2, gap_ci95=(0.4, 2.0), n_seeds=3), "Worth it:"),
        (dict(gap_mean=-1.2, gap_ci95=(-2.0, -0.4), n_seeds=3), "Not worth it:"),
        (dict(gap_mean=0.2, gap_ci95=(-0.4, 0.8), n_seeds=3), "Not conclusive:"),
        (dict(gap_mean=None), "Not conclusive:"),
        (dict(gap_mean=0.5, n_seeds=1), "Worth it here:"),
    ],
)
def test_every_sentence_starts_with_one_of_three_leads(kwargs, start):
    v = judge(time_saving=0.3, acc_delta=-1.0, **kwargs)
    assert v.sentence.startswith(start)
    assert v.sentence.split(":")[0] in ("Worth it", "Worth it here", "Not worth it", "Not worth it here", "Not conclusive")
    assert " pp" not in v.sentence and v.sentence.endswith(".")


def test_interval_and_noise_are_spelled_out():
    v = judge(time_saving=0.3, acc_delta=-1.0, gap_mean=0.9, gap_ci95=(0.1, 1.7), n_seeds=4, timing_noisy=True)
    assert "95 % interval +0.1 to +1.7 pt over 4 seeds" in v.sentence
    assert "timing was noisy" in v.sentence
    assert "no paired baseline ran" in judge(time_saving=None, acc_delta=None, gap_mean=0.4).sentence
    assert "equal_time_baseline: true" in judge(time_saving=0.3, acc_delta=-1.0, gap_mean=None).sentence
