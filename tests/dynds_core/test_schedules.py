import math

import pytest

from dynds_core.schedules import (
    AdaptiveState,
    adaptive_p,
    final_full_start,
    make_schedule,
    periodic_pattern,
    phase_window,
    stochastic_p,
    uniform,
)
from dynds_core.spec import AdaptiveSchedule, JobSpec, NoneSchedule, PeriodicSchedule, PhaseSchedule, StochasticSchedule


def reduced_steps(plan):
    return [i for i, d in enumerate(plan) if d == "reduced"]


def test_uniform_is_a_fixed_function_of_seed_and_step():
    # Pinned values: a change in the hash would silently change every stored run's decisions.
    assert uniform(0, 0) == 0.13870941014555427
    assert uniform(42, 7) == 0.18523329785230813
    plan = make_schedule({"kind": "stochastic", "p": 0.5}, 32, seed=0).plan()
    assert "".join(d[0].upper() for d in plan) == "RFRFFRRRFFFFRFRRFRFFRFFFFRFFRFRR"
    assert uniform(0, 1) != uniform(0, 0)
    assert uniform(1, 0) != uniform(0, 0)
    xs = [uniform(7, i) for i in range(20000)]
    assert all(0 <= x < 1 for x in xs)
    assert abs(sum(xs) / len(xs) - 0.5) < 0.01


def test_none_is_all_full():
    s = make_schedule({"kind": "none"}, total_steps=50, seed=0)
    assert s.plan() == ["full"] * 50
    assert s.expected_reduced_fraction() == 0
    assert not s.can_reduce


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_stochastic_fraction_matches_p(p):
    n = 4000
    plan = make_schedule({"kind": "stochastic", "p": p}, total_steps=n, seed=3).plan()
    frac = len(reduced_steps(plan)) / n
    # binomial std at n=4000 is <= 0.008: 4 sigma
    assert abs(frac - p) < 0.032
    assert make_schedule({"kind": "stochastic", "p": p}, total_steps=n, seed=3).expected_reduced_fraction() == pytest.approx(p)


def test_stochastic_annealing_is_linear_and_observed():
    n = 6000
    assert stochastic_p(0, n, 0.9, 0.1) == pytest.approx(0.9)
    assert stochastic_p(n - 1, n, 0.9, 0.1) == pytest.approx(0.1)
    assert stochastic_p((n - 1) // 2, n, 0.9, 0.1) == pytest.approx(0.5, abs=1e-3)
    plan = make_schedule({"kind": "stochastic", "p": 0.9, "p_end": 0.1}, total_steps=n, seed=1).plan()
    first, last = plan[: n // 3], plan[-n // 3 :]
    # mean p over the first third is 0.9 - 0.8/6 ~= 0.767, over the last third ~= 0.233
    assert abs(first.count("reduced") / len(first) - 0.767) < 0.04
    assert abs(last.count("reduced") / len(last) - 0.233) < 0.04


def test_periodic_every_and_pattern_exact():
    assert periodic_pattern(every=3) == "RRF"
    assert periodic_pattern(every=1) == "F"
    s = make_schedule({"kind": "periodic", "every": 3}, total_steps=9, seed=0)
    assert s.plan() == ["reduced", "reduced", "full"] * 3
    s = make_schedule({"kind": "periodic", "every": 3, "pattern": "RFF"}, total_steps=7, seed=0)
    assert s.plan() == ["reduced", "full", "full", "reduced", "full", "full", "reduced"]
    assert s.expected_reduced_fraction() == pytest.approx(3 / 7)


def test_phase_window_exact():
    assert phase_window(100, 0.0, 0.5) == (0, 50)
    s = make_schedule({"kind": "phase", "start": 0.2, "end": 0.6}, total_steps=10, seed=0)
    assert reduced_steps(s.plan()) == [2, 3, 4, 5]
    assert s.expected_reduced_fraction() == pytest.approx(0.4)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "stochastic", "p": 1.0},
        {"kind": "periodic", "pattern": "R"},
        {"kind": "phase", "start": 0.0, "end": 1.0},
    ],
)
def test_final_full_fraction_exact_for_every_kind(spec):
    n = 40
    s = make_schedule({**spec, "final_full_fraction": 0.25}, total_steps=n, seed=0)
    assert final_full_start(n, 0.25) == 30
    assert s.plan() == ["reduced"] * 30 + ["full"] * 10
    assert s.expected_reduced_fraction() == pytest.approx(0.75)


def test_final_full_fraction_applies_to_adaptive():
    s = make_schedule({"kind": "adaptive", "p_min": 1.0, "p_max": 1.0, "final_full_fraction": 0.5}, 20, seed=0)
    assert [s.decide(i) for i in range(20)] == ["reduced"] * 10 + ["full"] * 10


def test_same_seed_same_decisions_different_seed_differs():
    spec = JobSpec.parse({"dynds": {"schedule": {"kind": "stochastic", "p": 0.5}}}).dynds.schedule
    a = make_schedule(spec, 500, seed=11)
    b = make_schedule(spec, 500, seed=11)
    assert a.plan() == b.plan()
    # asked out of order, one at a time: the same answers (no hidden state)
    assert [b.decide(i) for i in reversed(range(500))][::-1] == a.plan()
    assert make_schedule(spec, 500, seed=12).plan() != a.plan()


def test_step_out_of_range_is_refused():
    s = make_schedule({"kind": "stochastic"}, 10, seed=0)
    with pytest.raises(ValueError, match="step must be in"):
        s.decide(10)
    with pytest.raises(ValueError, match="total_steps"):
        make_schedule({"kind": "none"}, 0)


def test_adaptive_p_follows_the_better_rate():
    assert adaptive_p(None, 1.0, 0.1, 0.9) == pytest.approx(0.5)
    assert adaptive_p(1.0, 1.0, 0.1, 0.9) == pytest.approx(0.5)
    assert adaptive_p(3.0, 1.0, 0.1, 0.9) == pytest.approx(0.1 + 0.8 * 0.75)
    assert adaptive_p(1.0, 3.0, 0.1, 0.9) == pytest.approx(0.1 + 0.8 * 0.25)
    assert adaptive_p(1.0, -1.0, 0.1, 0.9) == pytest.approx(0.9)  # full steps currently make no progress
    assert adaptive_p(-1.0, 1.0, 0.1, 0.9) == pytest.approx(0.1)


def test_adaptive_state_credits_consecutive_same_type_pairs_only():
    st = AdaptiveState(window=9, min_pairs=1)
    st.observe("full", 2.0, 0.5)
    st.observe("reduced", 3.0, 0.1)  # different type: no pair
    assert st.pairs == {"full": 0, "reduced": 0}
    st.observe("reduced", 3.0 * math.exp(-0.2), 0.1)  # log drop 0.2 over the previous step's 0.1 s
    assert st.pairs["reduced"] == 1
    assert st.rate["reduced"] == pytest.approx(2.0)
    st.observe("reduced", 3.0 * math.exp(-0.2), 0.1)  # no drop: EMA moves by alpha = 0.2 towards 0
    assert st.rate["reduced"] == pytest.approx(2.0 * 0.8)
    st.observe("reduced", float("nan"), 0.1)  # ignored, breaks the pair chain
    st.observe("reduced", 1.0, 0.1)
    assert st.pairs["reduced"] == 2


def _simulate_adaptive(seed, reduced_rate, full_rate, steps=600):
    """A toy training loss: a reduced step (0.05 s) lowers log-loss by reduced_rate*0.05, a full one (0.2 s) by full_rate*0.2."""
    s = make_schedule({"kind": "adaptive", "p_min": 0.1, "p_max": 0.9, "window": 20}, steps, seed=seed)
    loss, decisions = 2.0, []
    for i in range(steps):
        d = s.decide(i)
        dt = 0.05 if d == "reduced" else 0.2
        s.observe(d, loss * (1.0 if d == "full" else 1.3), dt)  # reduced losses sit on another scale
        loss *= math.exp(-(reduced_rate if d == "reduced" else full_rate) * dt)
        decisions.append(d)
    return decisions, s


def test_adaptive_moves_towards_the_type_that_buys_more_progress_per_second():
    dec_r, s_r = _simulate_adaptive(0, reduced_rate=2.0, full_rate=0.5)
    dec_f, s_f = _simulate_adaptive(0, reduced_rate=0.5, full_rate=2.0)
    assert s_r.current_p() == pytest.approx(0.1 + 0.8 * (0.5 + 0.5 * 1.5 / 2.5), abs=0.02)
    assert s_f.current_p() == pytest.approx(0.1 + 0.8 * (0.5 - 0.5 * 1.5 / 2.5), abs=0.02)
    assert dec_r[300:].count("reduced") > 2 * dec_f[300:].count("reduced")


def test_adaptive_is_deterministic_given_seed_and_signals():
    a, _ = _simulate_adaptive(5, 2.0, 0.5)
    b, _ = _simulate_adaptive(5, 2.0, 0.5)
    c, _ = _simulate_adaptive(6, 2.0, 0.5)
    assert a == b
    assert a != c


def test_adaptive_has_no_plan_and_expects_the_midpoint():
    s = make_schedule({"kind": "adaptive", "p_min": 0.2, "p_max": 0.6}, 100, seed=0)
    assert s.plan() is None
    assert s.expected_reduced_fraction() == pytest.approx(0.4)
    assert s.can_reduce
    with pytest.raises(ValueError, match="only defined for the adaptive"):
        make_schedule({"kind": "none"}, 10).current_p()


@pytest.mark.parametrize("section", [NoneSchedule, StochasticSchedule, PeriodicSchedule, PhaseSchedule, AdaptiveSchedule])
def test_a_dict_that_leaves_settings_out_gets_the_specs_defaults(section):
    """One definition of each kind's defaults (the spec's sections): a plain dict schedules as the section does."""
    defaults = section()
    from_dict, from_spec = make_schedule({"kind": defaults.kind}, 100, seed=3), make_schedule(defaults, 100, seed=3)
    assert from_dict.settings == from_spec.settings == defaults.model_dump()
    assert from_dict.plan() == from_spec.plan()
    assert from_dict.expected_reduced_fraction() == from_spec.expected_reduced_fraction()
    if defaults.kind == "adaptive":
        assert from_dict.current_p() == pytest.approx(0.5 * (defaults.p_min + defaults.p_max))
        assert from_dict.adaptive.window == AdaptiveState().window == defaults.window
    assert periodic_pattern() == periodic_pattern(PeriodicSchedule().every)


def test_an_unknown_kind_is_refused_when_the_schedule_is_built():
    with pytest.raises(ValueError, match="unknown schedule kind 'cyclic'; allowed: none, stochastic, periodic, phase, adaptive"):
        make_schedule({"kind": "cyclic"}, 10)
