"""The training loop (dynds_core.training.loop) pinned down: what is timed, lockstep pairing under a
changing load, and that the spec's reduced-pass settings reach every reduced step."""

import pytest
import torch
import torch.nn as nn
from test_trainer import BATCH, tiny_spec

from dynds_core.callbacks import Callback
from dynds_core.ops import downsample_input
from dynds_core.schedules import make_schedule
from dynds_core.spec import AdaptiveSchedule
from dynds_core.trainer import train
from dynds_core.training import timing


class Machine:
    """A simulated machine: the loop's clock, where a training step's forward costs its pixel count
    times the machine's load at that moment. ``slow`` is a window of simulated time in which the
    load doubles (another process took half the cores)."""

    def __init__(self, slow=(float("inf"), float("inf")), factor=2.0, ramp=0.0, reduced_factor=None):
        self.now = 0.0
        self.slow = slow
        self.factor = factor
        # in the slow window a reduced step's work may slow by another factor than a full step's
        # (a neighbour spinning on the cores hurts many small operations more than a few large ones)
        self.reduced_factor = factor if reduced_factor is None else reduced_factor
        self.ramp = ramp  # the pace also slows steadily: 1 + ramp * t (time per unit of work)

    def perf_counter(self):
        return self.now

    def work(self, units: float, reduced: bool = False) -> None:
        """Let ``units`` of work pass: at the load's pace, changing pace where the slow window starts or ends."""
        if self.ramp:  # a steady drift, small within one step: charged at the step's start
            self.now += units * (1.0 + self.ramp * self.now)
            return
        while units > 1e-12:
            slow = self.slow[0] <= self.now < self.slow[1]
            pace = (self.reduced_factor if reduced else self.factor) if slow else 1.0
            edge = self.slow[1] if slow else (self.slow[0] if self.now < self.slow[0] else float("inf"))
            done = min(units, (edge - self.now) / pace)
            self.now = edge if done < units else self.now + done * pace
            units -= done

    def charge(self, module, args):
        x = args[0]
        if module.training and torch.is_grad_enabled() and x.shape[0] == BATCH:  # training steps only
            self.work(x.shape[-1] * x.shape[-2] / 256.0, reduced=x.shape[-1] < 16)  # a full 16x16 step: 1 unit


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip


def simulated_job(monkeypatch, machine: Machine, **over):
    monkeypatch.setattr(timing, "time", machine)
    model = cnn()
    model.register_forward_pre_hook(lambda m, a: machine.charge(m, a))  # a closure: the run's deep copies share it
    # 32 steps per run, every other one reduced (8x8 input: a quarter of a full step's cost)
    spec = tiny_spec(data={"synthetic_size": 256}, **over)
    return train(spec, model=model)


TRUE_SAVING = 1 - (16 * 1.0 + 16 * 0.25) / 32.0  # 0.375 on a steady machine


@pytest.mark.parametrize("pairing", ["lockstep", "sequential"])
def test_a_steady_machine_gives_the_true_saving_in_either_order(monkeypatch, pairing):
    res = simulated_job(monkeypatch, Machine(), train={"pairing": pairing})
    assert res.pairing == pairing
    assert res.baseline.train_time_s == pytest.approx(32.0)
    assert res.time_saving == pytest.approx(TRUE_SAVING)
    assert not res.timing_noisy


def test_lockstep_keeps_the_true_saving_when_the_load_doubles_partway(monkeypatch):
    # The load doubles from t=28 to t=80: in sequential order that is the end of the baseline (0-32)
    # and the whole DynDS run; in lockstep both runs are inside it, step for step.
    seq = simulated_job(monkeypatch, Machine(slow=(28.0, 80.0)), train={"pairing": "sequential"})
    lock = simulated_job(monkeypatch, Machine(slow=(28.0, 80.0)), train={"pairing": "lockstep"})
    assert lock.time_saving == pytest.approx(TRUE_SAVING, abs=0.02)
    assert abs(seq.time_saving - TRUE_SAVING) > 0.2  # the DynDS run paid the slow machine alone
    # the interleaved cross-check disagrees with the sequential figure, and the job says so
    assert seq.timing_noisy and "paired and interleaved" in seq.timing_noise
    assert seq.verdict_sentence.endswith("the time saving is not reliable.") or "noisy" in seq.verdict_sentence


def test_lockstep_in_abba_order_cancels_a_steady_drift(monkeypatch):
    """A machine that slows steadily (3x by the end): with a fixed order the second run of each pair would
    always meet more of the slowdown; ABBA order keeps the saving within 0.5 points."""
    res = simulated_job(monkeypatch, Machine(ramp=0.04))
    assert res.time_saving == pytest.approx(TRUE_SAVING, abs=0.005)


@pytest.mark.parametrize("burst", [(4.0, 14.0), (22.0, 32.0), (38.0, 48.0)])
def test_lockstep_keeps_the_true_saving_through_a_burst_that_slows_reduced_steps_more(monkeypatch, burst):
    """A neighbour for 10 s somewhere in the ~52 s job slows reduced steps 6x and full steps 1.5x: the
    two runs' total times then give a saving that depends on where the burst fell; the steps paired in
    time (medians per batch type) give the steady machine's saving wherever it falls."""
    res = simulated_job(monkeypatch, Machine(slow=burst, factor=1.5, reduced_factor=6.0))
    assert res.pairing == "lockstep"
    assert res.time_saving == pytest.approx(TRUE_SAVING, abs=1e-9)
    assert res.time_saving_total < TRUE_SAVING - 0.05  # what the clock said: the burst cost the DynDS run more
    assert res.timing_noisy and "the load changed during the job" in res.timing_noise


def test_a_burst_over_most_of_the_job_is_the_saving_measured(monkeypatch):
    """Medians hold a burst off only while it covers less than half of the steps: a load that stays is
    the machine the job ran on, and its saving is what lockstep reports."""
    res = simulated_job(monkeypatch, Machine(slow=(0.0, 1e9), factor=1.5, reduced_factor=4.0))
    loaded = 1 - (16 * 1.5 + 16 * 0.25 * 4.0) / (32 * 1.5)
    assert res.time_saving == pytest.approx(loaded) and res.time_saving_total == pytest.approx(loaded)
    assert not res.timing_noisy


def test_full_steps_that_vary_mark_the_timing_noisy(monkeypatch):
    # a tenfold load for a while inside both runs: lockstep still pairs them, but the steps varied
    res = simulated_job(monkeypatch, Machine(slow=(8.0, 40.0), factor=10.0))
    assert res.baseline.full_step_cv > 0.25
    assert res.timing_noisy and "coefficient of variation" in res.timing_noise


class SlowStopCheck(Callback):
    """``should_stop`` as slow as a worker polling a remote database for a cancel flag."""

    def __init__(self, machine):
        self.machine = machine
        self.calls = 0

    def should_stop(self):
        self.calls += 1
        self.machine.now += 100.0
        return False


@pytest.mark.parametrize("pairing", ["lockstep", "sequential"])
def test_should_stop_runs_outside_the_timed_interval(monkeypatch, pairing):
    machine = Machine()
    monkeypatch.setattr(timing, "time", machine)
    model = cnn()
    model.register_forward_pre_hook(lambda m, a: machine.charge(m, a))
    stop = SlowStopCheck(machine)
    res = train(tiny_spec(train={"pairing": pairing}), stop, model=model)
    assert stop.calls >= 16  # asked before every step of both runs
    assert res.baseline.train_time_s == pytest.approx(8.0)  # 8 full steps; none of the 100 s checks
    assert res.dynds.train_time_s == pytest.approx(4 * 1.0 + 4 * 0.25)


def test_lockstep_alternates_the_runs_step_by_step():
    order = []

    class Order(Callback):
        def on_step(self, m):
            order.append(m.run)

    train(tiny_spec(), Order())
    assert order == ["baseline", "dynds", "dynds", "baseline"] * 4  # ABBA: neither run always goes second


@pytest.mark.parametrize("mode", ["avg", "nearest", "bilinear"])
def test_reduced_steps_get_the_spec_input_mode(mode):
    """In lockstep, DynDS step i sees the baseline's batch i: its reduced input must be that batch
    downsampled with the spec's mode."""
    inputs = []

    def record(module, args):
        if module.training and torch.is_grad_enabled() and args[0].shape[0] == BATCH:
            inputs.append(args[0].detach().clone())

    model = cnn()
    model.register_forward_pre_hook(record)
    train(tiny_spec(dynds={"input": {"mode": mode}}), model=model)
    steps = inputs[4:]  # after the warm-up's 2 full + 2 reduced steps
    x_dynds_1, x_baseline_1 = steps[2], steps[3]  # ABBA: b0 d0 d1 b1; step 1 is reduced in the FR pattern
    assert x_dynds_1.shape[-1] == 8
    assert torch.allclose(x_dynds_1, downsample_input(x_baseline_1, 2, mode), atol=1e-6)
    others = [m for m in ("avg", "nearest", "bilinear") if m != mode]
    assert not any(torch.allclose(x_dynds_1, downsample_input(x_baseline_1, 2, m), atol=1e-6) for m in others)


@pytest.mark.parametrize("bn", ["frozen", "shared"])
def test_reduced_steps_update_running_statistics_only_when_bn_is_shared(bn):
    changed = []  # per reduced training step: did the first BatchNorm's running mean move?

    def before(module, args):
        module._mean_before = module.running_mean.clone()

    def after(module, args, out):
        x = args[0]
        if module.training and torch.is_grad_enabled() and x.shape[0] == BATCH and x.shape[-1] == 8:
            changed.append(not torch.equal(module._mean_before, module.running_mean))

    model = cnn()
    model[1].register_forward_pre_hook(before)
    model[1].register_forward_hook(after)
    train(tiny_spec(dynds={"bn": bn}, baseline=False), model=model)
    assert len(changed) == 2 + 4  # the warm-up's 2 reduced steps and the run's 4
    assert all(changed) if bn == "shared" else not any(changed)


def test_adaptive_schedule_adapts_from_lagged_timings():
    """Signals arriving in batches of CUDA_FLUSH_EVERY still steer it: reduced steps that buy the same
    loss drop in a tenth of the time push p towards p_max."""
    sched = make_schedule(AdaptiveSchedule(p_min=0.1, p_max=0.9, window=20), 600, seed=0)
    loss = {"full": 2.0, "reduced": 2.0}
    pending = []
    for step in range(600):
        kind = sched.decide(step, 0)
        loss[kind] *= 0.999
        pending.append((kind, loss[kind], 0.01 if kind == "reduced" else 0.1))
        if len(pending) == timing.CUDA_FLUSH_EVERY:
            for p in pending:
                sched.observe(*p)
            pending.clear()
    assert sched.current_p() > 0.75  # from the midpoint (0.5) it starts at, towards p_max
