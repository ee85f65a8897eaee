"""Step timing (dynds_core.training.timing): the clock at step boundaries, how often step signals are read,
and the cyclic collector kept out of the timed steps."""

import gc

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
