"""Step timing (dynds_core.training.timing): the clock at step boundaries, how often step signals are read,
and the cyclic collector kept out of the timed steps."""

import gc

import pytest
import torch
from test_trainer import GcRecorder, tiny_spec

from dynds_core.trainer import ProcessSettings, train
from dynds_core.training import timing


def test_cuda_step_boundaries_are_recorded_on_the_training_devices_stream(monkeypatch):
    """With device cuda:1 the current device may be cuda:0: an event there would not see the step's kernels."""
    recorded, streams = [], {}

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing

        def record(self, stream=None):
            recorded.append(stream)

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: streams.setdefault(str(device), object()))
    ev = timing.step_clock(torch.device("cuda:1"))
    assert isinstance(ev, FakeEvent) and recorded == [streams["cuda:1"]]
    assert isinstance(timing.step_clock(torch.device("cpu")), float)


def test_the_cyclic_collector_is_off_during_steps_and_on_again_after(monkeypatch):
    rec = GcRecorder()
    calls = []
    real_collect = gc.collect
    monkeypatch.setattr(timing, "COLLECT_EVERY_STEPS", 3)
    monkeypatch.setattr(gc, "collect", lambda generation=2: calls.append((rec.steps, generation)) or real_collect(generation))
    assert gc.isenabled()
    train(tiny_spec(baseline=False), rec, process=ProcessSettings(pause_collector=True))
    assert rec.steps == 8 and not any(rec.enabled_in_steps)  # no full collection can land inside a timed step
    assert gc.isenabled()
    # a full collection before the first step; young ones after steps 3 and 6 and at both epochs' ends (4, 8)
    run_calls = [c for c in calls if c[0] > 0 or c[1] == 2]
    assert (0, 2) in run_calls
    assert [c for c in run_calls if c[1] == 1] == [(3, 1), (4, 1), (6, 1), (8, 1)]


def test_a_caller_that_turned_the_collector_off_finds_it_off():
    gc.disable()
    try:
        train(tiny_spec(baseline=False), process=ProcessSettings.measured())
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_cuda_reads_step_signals_in_batches_for_every_schedule():
    """On CUDA the adaptive schedule gets its timings up to CUDA_FLUSH_EVERY steps late, like its
    baseline, rather than a synchronisation every step that its baseline does not pay."""
    assert timing.flush_interval(torch.device("cuda")) == timing.CUDA_FLUSH_EVERY > 1
    assert timing.flush_interval(torch.device("cpu")) == 1


def test_lockstep_ratio_takes_each_type_s_median_ratio_to_the_baseline_around_it():
    # baseline steps of 1.0 s back to back; DynDS steps between them: full 1.0, reduced 0.25, and one
    # reduced step of 5 s (a burst) that the median of its type leaves out
    b_at = [0.0, 1.5, 3.0, 4.5, 6.0]
    b_t = [1.0] * 5
    d_at = [1.0, 2.5, 4.0, 5.5]
    d_t = [0.25, 0.25, 5.0, 0.25]
    d_red = [1, 1, 1, 1]
    assert timing.lockstep_time_ratio(d_t, d_red, d_at, b_t, b_at) == pytest.approx(0.25)
    # half full steps at the baseline's pace: 0.5 * 1.0 + 0.5 * 0.25
    assert timing.lockstep_time_ratio([1.0, 0.25], [0, 1], [1.0, 2.5], b_t[:3], b_at[:3]) == pytest.approx(0.625)


def test_lockstep_ratio_takes_a_median_per_input_size_of_a_relative_s_reduced_steps():
    # A relative's reduced steps at two sizes: five 16 px steps of 0.25 s and three 24 px steps of 0.5 s
    # against a 1 s baseline. One median over all eight is the 16 px cost (0.25): the ratio would read
    # 0.25 where the steps took 0.34 of the baseline's time on average. Per size: (5 * 0.25 + 3 * 0.5) / 8.
    sizes = [(16, 16)] * 5 + [(24, 24)] * 3
    d_t = [0.25] * 5 + [0.5] * 3
    d_at = [1.0 + 1.5 * i for i in range(8)]
    b_at = [1.5 * i for i in range(9)]
    b_t = [1.0] * 9
    shapes = [timing.step_shape("reduced", hw) for hw in sizes]
    assert timing.lockstep_time_ratio(d_t, shapes, d_at, b_t, b_at) == pytest.approx((5 * 0.25 + 3 * 0.5) / 8)
    assert timing.lockstep_time_ratio(d_t, [1] * 8, d_at, b_t, b_at) == pytest.approx(0.25)  # what one median gave
    assert len({timing.step_shape("full"), timing.step_shape("reduced"), *shapes}) == 4


def test_lockstep_ratio_interpolates_the_baseline_to_each_step_s_midpoint():
    # the baseline's steps slow from 1 s to 3 s; a reduced step a quarter of the way from one baseline
    # midpoint to the next is compared with the baseline's pace there (1.5 s), not with either neighbour
    b_at, b_t = [0.0, 2.0], [1.0, 3.0]  # midpoints 0.5 and 3.5
    d_at, d_t = [1.0], [0.5]  # midpoint 1.25
    assert timing.lockstep_time_ratio(d_t, [1], d_at, b_t, b_at) == pytest.approx(0.5 / 1.5)
    # before the first or after the last baseline step: the nearest one
    assert timing.lockstep_time_ratio([0.5], [1], [-5.0], b_t, b_at) == pytest.approx(0.5)
    assert timing.lockstep_time_ratio([0.5], [1], [9.0], b_t, b_at) == pytest.approx(0.5 / 3.0)


def test_lockstep_ratio_without_a_timed_baseline_step_is_none():
    assert timing.lockstep_time_ratio([0.5], [1], [0.0], [], []) is None
    assert timing.lockstep_time_ratio([0.5], [1], [0.0], [0.0], [0.0]) is None
