import pytest
import torch
import torch.nn as nn

from dynds_core.callbacks import Callback
from dynds_core.data import DataError
from dynds_core.reduced import ReducedPassError
from dynds_core.result import RunResult
from dynds_core.spec import JobSpec, NoneSchedule, SpecError
from dynds_core.trainer import (
    MIN_FULL_STEPS_FOR_SIZING,
    ProcessSettings,
    compare,
    equal_time_budget,
    equal_time_steps,
    estimated_baseline_time,
    time_to_target,
    train,
)
from dynds_core.training.recipe import lr_at

BATCH = 16


def tiny_spec(**over) -> JobSpec:
    data = {
        "name": "tiny",
        "model": {"arch": "resnet20"},
        "data": {"dataset": "synthetic", "image_size": 16, "synthetic_size": 64},
        "train": {"epochs": 2, "batch_size": BATCH, "lr": 0.05, "device": "cpu"},
        "dynds": {"schedule": {"kind": "periodic", "pattern": "FR"}},
        "baseline": True,
    }
    for key, value in over.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return JobSpec.parse(data)


class Recorder(Callback):
    def __init__(self, stop_after: int | None = None):
        self.starts, self.steps, self.epochs, self.ends = [], [], [], []
        self.stop_after = stop_after

    def on_run_start(self, run, info):
        self.starts.append((run, info))

    def on_step(self, m):
        self.steps.append(m)

    def on_epoch(self, m):
        self.epochs.append(m)

    def on_run_end(self, result):
        self.ends.append(result)

    def should_stop(self):
        return self.stop_after is not None and len(self.steps) >= self.stop_after


def test_paired_runs_measure_and_stream_metrics():
    rec = Recorder()
    res = train(tiny_spec(), rec)
    assert [r for r, _ in rec.starts] == ["baseline", "dynds"]
    assert rec.starts[0][1]["total_steps"] == 8  # 64 images // 16 per batch * 2 epochs
    for run in (res.baseline, res.dynds):
        steps = [m for m in rec.steps if m.run == run.run]
        assert [m.step for m in steps] == list(range(8))
        # the step times add up to the train time, and so do the per-type times
        assert sum(m.step_time_s for m in steps) == pytest.approx(run.train_time_s, rel=1e-9)
        assert run.time_full_s + run.time_reduced_s == pytest.approx(run.train_time_s, rel=1e-9)
        assert steps[-1].train_time_s == pytest.approx(run.train_time_s)
        assert [e.epoch for e in run.epochs] == [0, 1]
        assert run.final_val_acc == run.epochs[-1].val_acc
        assert 0 <= run.final_val_acc <= 100
    assert [m.batch_type for m in rec.steps if m.run == "dynds"] == ["full", "reduced"] * 4
    assert (res.dynds.steps_full, res.dynds.steps_reduced) == (4, 4)
    assert res.baseline.steps_reduced == 0
    assert res.dynds.total_flops == 4 * res.dynds.flops_full_step + 4 * res.dynds.flops_reduced_step
    assert res.flop_saving == pytest.approx(1 - res.dynds.total_flops / res.baseline.total_flops)
    # the clock's figure; time_saving itself (steps paired in time) is pinned down in test_loop.py
    assert res.time_saving_total == pytest.approx(1 - res.dynds.train_time_s / res.baseline.train_time_s)
    assert res.pairing == "lockstep" and res.time_saving is not None
    assert res.acc_delta == pytest.approx(res.dynds.final_val_acc - res.baseline.final_val_acc)
    assert res.target_accuracy == min(res.dynds.final_val_acc, res.baseline.final_val_acc)
    assert len(rec.epochs) == 4 and len(rec.ends) == 2
    assert res.spec_hash == tiny_spec().spec_hash and not res.cancelled


@pytest.mark.parametrize("pairing", ["lockstep", "sequential"])
def test_baseline_and_dynds_start_alike_and_see_the_same_data(pairing):
    """Same seed: identical initial weights and the same first batch (step 0 is full in both runs)."""
    torch.manual_seed(123)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    seen = []

    def record(module, args):
        x = args[0]
        # only training steps: FLOP counting and the reduced-pass check run on 2 samples, evaluation without grad
        if module.training and torch.is_grad_enabled() and x.shape[0] == BATCH:
            seen.append((x.detach().clone(), {k: v.detach().clone() for k, v in module.state_dict().items()}))

    model.register_forward_pre_hook(record)
    res = train(tiny_spec(train={"pairing": pairing}), model=model)
    assert res.baseline.steps == res.dynds.steps == 8 and res.pairing == pairing
    # first the untimed warm-up (2 full + 2 reduced steps on a throwaway copy), then the two runs
    assert len(seen) == 4 + 16
    assert [s[0].shape[-1] for s in seen[:4]] == [16, 8, 16, 8]
    seen = seen[4:]
    if pairing == "lockstep":  # one step of each in turn, in ABBA order: b0 d0 d1 b1 b2 d2 ...
        assert [s[0].shape[-1] for s in seen] == [16, 16, 8, 16] * 4
        first = [i for i in range(16) if (i % 4) in (0, 3)]  # the baseline's steps
        seen = [seen[i] for i in first] + [seen[i] for i in range(16) if i not in first]  # as in sequential order
    (x_b, w_b), (x_d, w_d) = seen[0], seen[8]
    assert torch.equal(x_b, x_d)
    assert all(torch.equal(w_b[k], w_d[k]) for k in w_b)
    # the reduced step 1 of the DynDS run gets the downsampled version of the baseline's second batch
    assert seen[9][0].shape[-1] == 8 and torch.allclose(seen[9][0], torch.nn.functional.avg_pool2d(seen[1][0], 2))


def test_cancel_stops_within_one_step():
    rec = Recorder(stop_after=3)
    res = train(tiny_spec(train={"pairing": "sequential"}), rec)
    assert res.cancelled
    assert res.baseline.cancelled and res.baseline.steps == 3
    assert res.dynds.cancelled and res.dynds.steps == 0
    assert [r for r, _ in rec.starts] == ["baseline"]
    assert res.time_saving is None and res.acc_delta is None


def test_cancel_in_lockstep_stops_both_runs_within_one_step():
    rec = Recorder(stop_after=3)  # ABBA: baseline step 0, DynDS steps 0 and 1: then stop
    res = train(tiny_spec(equal_time_baseline=True), rec)
    assert res.cancelled and res.pairing == "lockstep"
    assert res.baseline.cancelled and res.baseline.steps == 1
    assert res.dynds.cancelled and res.dynds.steps == 2
    assert res.equal_time is None and res.time_saving is None and res.verdict is None


def test_cancel_during_dynds_keeps_the_finished_baseline():
    rec = Recorder(stop_after=8 + 5)
    res = train(tiny_spec(equal_time_baseline=True, train={"pairing": "sequential"}), rec)
    assert not res.baseline.cancelled and res.baseline.steps == 8 and res.baseline.final_val_acc is not None
    assert res.dynds.cancelled and res.dynds.steps == 5
    assert res.equal_time is None and res.cancelled
    assert len(res.dynds.epochs) == 1  # the finished first epoch was evaluated


@pytest.mark.parametrize("pairing", ["lockstep", "sequential"])
def test_equal_time_baseline_gets_the_time_matched_step_count(pairing):
    rec = Recorder()
    res = train(tiny_spec(equal_time_baseline=True, train={"epochs": 3, "pairing": pairing}), rec)
    if pairing == "lockstep":  # the baseline timed step for step beside the DynDS run sizes it: 1 - time_saving of the steps
        assert res.equal_time_sizing == "lockstep_baseline"
        expected = equal_time_steps(12, 1.0 - res.time_saving, 1.0)
    else:  # 6 full steps in the DynDS run: their mean time, not the drift-prone paired baseline's
        assert res.dynds.steps_full == 6 and res.equal_time_sizing == "own_full_steps"
        expected = equal_time_steps(12, res.dynds.train_time_s, res.dynds.time_full_s / 6 * 12)
    assert [r for r, _ in rec.starts][-1] == "equal_time"  # it runs afterwards, alone
    assert res.equal_time.steps == expected
    assert res.equal_time.steps_reduced == 0
    info = dict(rec.starts)["equal_time"]
    assert info["total_steps"] == expected
    # the learning rate schedule completes over the shorter run
    lrs = [m.lr for m in rec.steps if m.run == "equal_time"]
    assert lrs[-1] == pytest.approx(lr_at(expected - 1, expected, peak=0.05, kind="onecycle"))
    assert res.equal_time_gap == pytest.approx(res.dynds.final_val_acc - res.equal_time.final_val_acc)


def test_equal_time_without_baseline_estimates_baseline_time():
    res = train(tiny_spec(baseline=False, equal_time_baseline=True))
    assert res.baseline is None and res.time_saving is None
    t_base = estimated_baseline_time(res.dynds, 8)
    assert res.equal_time.steps == equal_time_steps(8, res.dynds.train_time_s, t_base)
    assert res.equal_time_sizing == "own_full_steps"


def _timed_run(steps_full: int, steps_reduced: int, full_s: float, reduced_s: float) -> RunResult:
    return RunResult(
        run="dynds",
        steps=steps_full + steps_reduced,
        steps_full=steps_full,
        steps_reduced=steps_reduced,
        time_full_s=full_s,
        time_reduced_s=reduced_s,
        train_time_s=full_s + reduced_s,
        flops_full_step=9.0,
        flops_reduced_step=1.0,
    )


def test_equal_time_budget_prefers_the_runs_own_full_steps_to_a_drifted_baseline():
    # 10 full steps of 0.2 s inside the DynDS run; the baseline ran while the machine was twice as slow
    dynds = _timed_run(10, 10, 2.0, 0.5)
    baseline = RunResult(run="baseline", steps=20, train_time_s=8.0)
    assert equal_time_budget(dynds, baseline, 20) == (pytest.approx(4.0), "own_full_steps")
    # too few full steps to time: the paired baseline
    few = _timed_run(MIN_FULL_STEPS_FOR_SIZING - 1, 16, 0.8, 0.8)
    assert equal_time_budget(few, baseline, 20) == (8.0, "paired_baseline")
    # and without a baseline, all reduced: scaled by the FLOP ratio (0.05 s per step x 9 x 20 steps)
    none_full = _timed_run(0, 20, 0.0, 1.0)
    assert equal_time_budget(none_full, None, 20) == (pytest.approx(9.0), "flop_ratio")


def test_a_given_baseline_run_is_reused_not_run_again():
    first = train(tiny_spec(dynds={"schedule": {"kind": "none"}}, baseline=False))
    base = first.dynds.model_copy(update={"run": "baseline"})
    rec = Recorder()
    res = train(tiny_spec(equal_time_baseline=True), rec, baseline_run=base)
    assert [r for r, _ in rec.starts] == ["dynds", "equal_time"]  # no second baseline
    assert res.baseline is base
    assert res.time_saving == pytest.approx(1 - res.dynds.train_time_s / base.train_time_s)
    assert res.equal_time.steps == equal_time_steps(8, res.dynds.train_time_s, base.train_time_s)
    assert res.equal_time_sizing == "paired_baseline"  # 4 full steps only


def test_fixed_size_head_is_refused_before_training():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 10))
    rec = Recorder()
    with pytest.raises(ReducedPassError, match=r"layer '3' \(Linear"):
        train(tiny_spec(), rec, model=model)
    assert rec.starts == [] and rec.steps == []
    # without reduced batches the same model trains
    res = train(tiny_spec(baseline=False, dynds={"schedule": {"kind": "none"}}, train={"epochs": 1}), model=model)
    assert res.dynds.steps == 4


def test_adaptive_schedule_trains_and_separate_bn_runs():
    res = train(tiny_spec(baseline=False, dynds={"schedule": {"kind": "adaptive", "window": 5}, "bn": "separate"}))
    assert res.dynds.steps == 8 and not res.cancelled


def test_errors_before_training():
    with pytest.raises(SpecError, match="train.batch_size"):
        train(tiny_spec(train={"batch_size": 128}))
    with pytest.raises(DataError):
        train(tiny_spec(data={"dataset": "imagefolder", "root": "/nonexistent/data.tar.gz"}))
    if not torch.cuda.is_available():
        with pytest.raises(SpecError, match="train.device"):
            train(tiny_spec(train={"device": "cuda"}))


def test_same_seed_reproduces_the_run():
    a = train(tiny_spec(baseline=False))
    b = train(tiny_spec(baseline=False))
    assert [e.train_loss for e in a.dynds.epochs] == [e.train_loss for e in b.dynds.epochs]
    assert a.dynds.final_val_acc == b.dynds.final_val_acc


# -- pure parts -------------------------------------------------------------------------------


def test_lr_schedules():
    n = 100
    oc = [lr_at(i, n, peak=0.2, kind="onecycle") for i in range(n)]
    assert oc[0] == pytest.approx(0.2 / 25)
    assert max(oc) == pytest.approx(0.2) and oc.index(max(oc)) == 29
    assert oc[-1] == pytest.approx(0.2 / 25 / 1e4)
    cos = [lr_at(i, n, peak=0.1, kind="cosine", warmup_steps=10) for i in range(n)]
    assert cos[:10] == pytest.approx([0.1 * (i + 1) / 10 for i in range(10)])
    assert cos[10] == pytest.approx(0.1) and cos[-1] < 1e-3
    st = [lr_at(i, n, peak=0.1, kind="step") for i in range(n)]
    assert (st[49], st[50], st[75]) == pytest.approx((0.1, 0.01, 0.001))
    assert lr_at(5, n, peak=0.1, kind="constant") == 0.1
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_at(0, n, peak=0.1, kind="linear")


def _run(kind, acc, time_s, steps=10, flops=1.0):
    from dynds_core.result import EpochMetrics

    epochs = [
        EpochMetrics(run=kind, epoch=i, epochs=2, train_loss=1, train_acc=1, val_loss=1, val_acc=a, train_time_s=t,
                     time_full_s=t, time_reduced_s=0, steps_full=1, steps_reduced=0)
        for i, (a, t) in enumerate(zip(acc, time_s, strict=True))
    ]  # fmt: skip
    return RunResult(run=kind, epochs=epochs, steps=steps, steps_full=steps, train_time_s=time_s[-1], total_flops=flops, final_val_acc=acc[-1])


def test_compare_computes_the_headline_figures():
    spec = tiny_spec(equal_time_baseline=True)
    d = _run("dynds", [50, 70], [30, 60], flops=40)
    b = _run("baseline", [60, 75], [50, 100], flops=100)
    e = _run("equal_time", [55, 68], [30, 60], flops=60)
    res = compare(spec, "cpu", d, b, e)
    assert res.time_saving == pytest.approx(0.4)
    assert res.acc_delta == pytest.approx(-5)
    assert res.flop_saving == pytest.approx(0.6)
    assert res.equal_time_gap == pytest.approx(2)
    assert res.target_accuracy == 68
    assert (d.time_to_target_s, b.time_to_target_s, e.time_to_target_s) == (60, 100, 60)
    assert time_to_target(b, 60) == 50 and time_to_target(b, 99) is None


def test_interleaved_time_saving_uses_the_dynds_runs_own_full_steps():
    """10 steps: 5 full taking 10 s in all (2 s each), 5 reduced taking 2 s: the run took 12 s where
    10 full steps at the same moment would have taken 20 s, whatever the baseline run measured."""
    d = RunResult(run="dynds", steps=10, steps_full=5, steps_reduced=5, train_time_s=12.0, time_full_s=10.0, time_reduced_s=2.0, final_val_acc=50)
    b = RunResult(run="baseline", steps=10, steps_full=10, train_time_s=60.0, time_full_s=60.0, final_val_acc=55)  # a busy moment
    res = compare(tiny_spec(), "cpu", d, b, None)
    assert res.time_saving_interleaved == pytest.approx(0.4)
    assert res.time_saving == pytest.approx(0.8)
    # no reduced steps (or no full ones): nothing to interleave
    only_full = d.model_copy(update={"steps_full": 10, "steps_reduced": 0, "time_full_s": 12.0, "time_reduced_s": 0.0})
    assert compare(tiny_spec(), "cpu", only_full, b, None).time_saving_interleaved is None


def test_equal_time_steps_rounds_and_clamps():
    assert equal_time_steps(100, 60.0, 100.0) == 60
    assert equal_time_steps(100, 0.001, 100.0) == 1
    assert equal_time_steps(100, 150.0, 100.0) == 100
    with pytest.raises(ValueError):
        equal_time_steps(100, 1.0, 0.0)


def test_recipe_variants_train():
    """AdamW, cosine with warm-up, label smoothing, bfloat16 AMP on CPU, NCHW, no normalization."""
    rec = Recorder()
    spec = tiny_spec(
        baseline=False,
        data={"normalize": False, "augment": False},
        train={"epochs": 1, "optimizer": "adamw", "lr": 1e-3, "lr_schedule": "cosine", "warmup_epochs": 0.5,
               "label_smoothing": 0.1, "amp": True, "channels_last": False, "num_threads": 1},
    )  # fmt: skip
    res = train(spec, rec)
    assert res.dynds.steps == 4
    lrs = [m.lr for m in rec.steps]
    assert lrs == pytest.approx([lr_at(i, 4, peak=1e-3, kind="cosine", warmup_steps=2) for i in range(4)])
    assert all(m.loss == m.loss and m.loss > 0 for m in rec.steps)  # finite, not NaN
    assert torch.get_num_threads() == 1


def test_settings_the_model_cannot_take_are_spec_errors_before_training():
    rec = Recorder()
    with pytest.raises(SpecError, match="window 4 is larger than a 3x3 kernel") as ei:
        train(tiny_spec(dynds={"kernel": {"window": 4}}), rec)
    assert ei.value.errors[0][0] == "dynds"
    assert rec.starts == []


class FakeClock:
    """Stands in for the training loop's clock: time passes only when told to, so the test
    measures what the loop counts, not how busy the machine is."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


class SlowListener(Callback):
    """A callback as slow as a worker writing metrics to a remote database on every step."""

    DELAY_S = 100.0

    def __init__(self, clock):
        self.clock = clock

    def on_step(self, m):
        self.clock.now += self.DELAY_S


def test_callback_time_is_not_train_time(monkeypatch):
    from dynds_core.training import timing

    clock = FakeClock()
    monkeypatch.setattr(timing, "time", clock)
    res = train(tiny_spec(baseline=False, dynds={"schedule": {"kind": "none"}}), SlowListener(clock))
    assert res.dynds.steps == 8
    # the 8 callbacks took 800 (fake) seconds; the steps themselves none
    assert res.dynds.train_time_s == 0.0


class GcRecorder(Callback):
    def __init__(self):
        self.enabled_in_steps = []
        self.steps = 0

    def on_step(self, m):
        import gc

        self.steps += 1
        self.enabled_in_steps.append(gc.isenabled())


def test_a_library_call_leaves_the_process_as_it_found_it(monkeypatch):
    """By default: the collector stays on during steps, no mallopt, and the global RNGs and cudnn.benchmark
    are as they were (the job still seeds its own runs: two calls give the same result)."""
    import gc
    import random

    import numpy as np

    from dynds_core import trainer

    calls = []
    monkeypatch.setattr(trainer, "retain_freed_memory", lambda: calls.append("mallopt"))
    rec = GcRecorder()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    torch.backends.cudnn.benchmark = False
    first = train(tiny_spec(baseline=False), rec)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
    assert all(rec.enabled_in_steps) and gc.isenabled()
    assert calls == [] and torch.backends.cudnn.benchmark is False
    second = train(tiny_spec(baseline=False), process=ProcessSettings(retain_memory=True))
    assert calls == ["mallopt"]
    assert second.dynds.final_val_acc == first.dynds.final_val_acc


@pytest.mark.parametrize("bn", ["frozen", "separate"])
def test_train_gives_back_the_trained_model_loadable_into_create_model(bn):
    from dynds_core.data import load_dataset, make_loaders
    from dynds_core.models import create_model
    from dynds_core.reduced import full_state_dict
    from dynds_core.training.evaluation import evaluate

    spec = tiny_spec(dynds={"bn": bn})
    res = train(spec, keep_baseline_model=True)
    assert set(res.models) == {"dynds", "baseline"} and res.model is res.models["dynds"]
    plain = create_model("resnet20", num_classes=10)
    plain.load_state_dict(full_state_dict(res.model))  # strict: every key of the plain model, nothing more
    ds = load_dataset(spec.data, seed=0)
    _, val = make_loaders(ds, batch_size=BATCH, device="cpu", seed=0)
    _, acc = evaluate(plain, val, torch.device("cpu"), amp=False)
    assert acc == pytest.approx(res.dynds.final_val_acc)  # the weights that scored the run's accuracy
    # Not strict: with bn="separate" the DynDS model also holds the reduced BatchNorm parameters, after the shared ones.
    assert not any(torch.equal(a, b) for a, b in zip(res.model.parameters(), res.models["baseline"].parameters(), strict=False))
    assert "baseline" not in train(spec).models  # only when asked


def test_a_reduced_input_too_small_for_the_network_is_refused_before_training():
    # 8x8 images downsampled by 8: a 1x1 first map, one pixel per image in every reduced step.
    spec = JobSpec.parse(
        {"data": {"synthetic_size": 32, "image_size": 8}, "train": {"epochs": 1, "batch_size": 16}, "dynds": {"input": {"factor": 8}}}
    )
    with pytest.raises(SpecError, match="dynds.input.factor") as err:
        train(spec)
    assert "factor 4 or less" in str(err.value)
    # Without reduced steps the same images train.
    assert train(spec.model_copy(update={"dynds": spec.dynds.model_copy(update={"schedule": NoneSchedule()})})).dynds.steps == 2
