"""DynDS's relatives as schedule kinds: progressive resizing (Composer), Mix&Match (Hoffer et al. 2019), and
FixRes BatchNorm recalibration (Touvron et al. 2019): their pure functions, their specs, and through the trainer."""

import pytest
import torch
import torch.nn as nn

from dynds_core.bn_recalibration import recalibrate_bn
from dynds_core.flops import step_flops
from dynds_core.models import create_model
from dynds_core.op_settings import FULL_KERNELS
from dynds_core.ops import downsample_input, resize_input
from dynds_core.schedules import (
    SCHEDULE_DEFAULTS,
    make_schedule,
    mixsize_scale,
    progressive_scale,
    progressive_size,
    scaled_size,
)
from dynds_core.spec import JobSpec, SpecError, spec_hash
from dynds_core.trainer import train

# ------------------------------------------------------------------ progressive: Composer's defaults


def test_progressive_defaults_are_composers():
    d = SCHEDULE_DEFAULTS["progressive"]
    assert (d["initial_scale"], d["delay_fraction"], d["finetune_fraction"], d["size_increment"]) == (0.5, 0.5, 0.2, 4)


def test_progressive_scale_holds_then_ramps_linearly_then_full():
    n = 100
    assert [progressive_scale(s, n) for s in (0, 25, 49)] == [0.5, 0.5, 0.5]  # delay: first half at 0.5
    assert progressive_scale(50, n) == 0.5  # the ramp starts at 0.5 ...
    assert progressive_scale(65, n) == pytest.approx(0.75)  # ... halfway up at half the ramp ...
    assert progressive_scale(80, n) == 1.0 and progressive_scale(99, n) == 1.0  # ... full for the last 20 %
    scales = [progressive_scale(s, n) for s in range(n)]
    assert scales == sorted(scales)  # never shrinks


def test_progressive_sizes_are_multiples_of_the_increment_within_bounds():
    n = 200
    sizes = [progressive_size(s, n, (32, 32)) for s in range(n)]
    assert sizes[0] == (16, 16) and sizes[-1] == (32, 32)
    assert {w for _, w in sizes} == {16, 20, 24, 28, 32}  # any size on the way, not only integer factors
    assert all(w % 4 == 0 and 16 <= w <= 32 and h == w for h, w in sizes)
    # rounding follows the width, the height follows it; never above the data's size nor below one increment
    assert scaled_size((32, 48), 0.5, 4) == (16, 24)
    assert scaled_size((8, 8), 0.1, 4) == (4, 4)
    assert scaled_size((6, 6), 1.0, 8) == (6, 6)


@pytest.mark.parametrize(
    "args, match",
    [((0, 10, 0.0), "initial_scale"), ((0, 10, 1.5), "initial_scale"), ((0, 10, 0.5, 0.6, 0.5), "delay_fraction"), ((10, 10), "step")],
)
def test_progressive_scale_refuses_bad_settings(args, match):
    with pytest.raises(ValueError, match=match):
        progressive_scale(*args)


def test_progressive_schedule_decides_by_size_and_final_full_fraction():
    s = make_schedule({"kind": "progressive"}, total_steps=10, image_size=(32, 32))
    assert [s.input_size(i) for i in range(10)] == [(16, 16)] * 6 + [(20, 20), (28, 28), None, None]
    assert s.plan() == ["reduced"] * 8 + ["full"] * 2
    assert s.size_shares() == {(16, 16): 0.6, (20, 20): 0.1, (28, 28): 0.1}
    assert s.expected_reduced_fraction() == pytest.approx(0.8) and s.can_reduce
    tail = make_schedule({"kind": "progressive", "final_full_fraction": 0.5}, total_steps=10, image_size=(32, 32))
    assert tail.plan() == ["reduced"] * 5 + ["full"] * 5
    # the whole run at full scale: nothing to reduce
    assert not make_schedule({"kind": "progressive", "initial_scale": 1.0}, 10, image_size=(32, 32)).can_reduce


def test_relatives_need_the_image_size():
    with pytest.raises(ValueError, match="image_size"):
        make_schedule({"kind": "mixsize"}, total_steps=10)


# ------------------------------------------------------------------ mixsize: Hoffer et al. 2019


def test_mixsize_draws_are_deterministic_per_seed_and_follow_the_probabilities():
    scales, probs = [0.5, 0.75, 1.0], [0.2, 0.3, 0.5]
    draws = [mixsize_scale(i, 7, scales, probs) for i in range(4000)]
    assert draws == [mixsize_scale(i, 7, scales, probs) for i in range(4000)]  # the same seed, the same sizes
    assert draws != [mixsize_scale(i, 8, scales, probs) for i in range(4000)]  # another seed, others
    # any step in any order: a pure function of (seed, step)
    assert [mixsize_scale(i, 7, scales, probs) for i in reversed(range(100))] == draws[:100][::-1]
    for scale, p in zip(scales, probs, strict=True):
        assert draws.count(scale) / len(draws) == pytest.approx(p, abs=0.03)


def test_mixsize_schedule_sizes_and_decisions():
    s = make_schedule({"kind": "mixsize"}, total_steps=500, seed=3, image_size=(32, 32))
    sizes = [s.input_size(i) or (32, 32) for i in range(500)]
    assert set(sizes) == {(16, 16), (24, 24), (32, 32)}  # CIFAR: 16-32 px, never above the data's 32
    assert [d == "reduced" for d in s.plan()] == [sz != (32, 32) for sz in sizes]
    assert s.size_shares() == {(16, 16): pytest.approx(0.2), (24, 24): pytest.approx(0.3)}
    assert s.expected_reduced_fraction() == pytest.approx(0.5)
    # on 28 px Fashion-MNIST the same defaults are 14/21/28 px: fractions of the data's own size
    fm = make_schedule({"kind": "mixsize"}, total_steps=50, seed=3, image_size=(28, 28))
    assert set(fm.size_shares()) == {(14, 14), (21, 21)}


# ------------------------------------------------------------------ specs: validated where they enter


@pytest.mark.parametrize(
    "schedule, key, words",
    [
        ({"kind": "progressive", "initial_scale": 0}, "dynds.schedule.initial_scale", "greater than 0"),
        ({"kind": "progressive", "initial_scale": 1.2}, "dynds.schedule.initial_scale", "less than or equal to 1"),
        ({"kind": "progressive", "delay_fraction": 0.7, "finetune_fraction": 0.5}, "dynds.schedule.finetune_fraction", "at most 1"),
        ({"kind": "progressive", "size_increment": 0}, "dynds.schedule.size_increment", "greater than or equal to 1"),
        ({"kind": "mixsize", "scales": [0.5, 1.5], "probs": [0.5, 0.5]}, "dynds.schedule.scales", "upsamples"),
        ({"kind": "mixsize", "scales": [0.5, 1.0], "probs": [1.0]}, "dynds.schedule.probs", "one probability per scale"),
        ({"kind": "mixsize", "scales": [0.5, 1.0], "probs": [0.5, 0.6]}, "dynds.schedule.probs", "sum to 1"),
        ({"kind": "progressive", "p": 0.5}, "dynds.schedule.p", "unknown key"),
    ],
)
def test_bad_relative_settings_are_spec_errors_naming_the_key(schedule, key, words):
    with pytest.raises(SpecError) as exc:
        JobSpec.parse({"dynds": {"schedule": schedule}})
    assert any(path == key and words in msg for path, msg in exc.value.errors), exc.value.errors


def test_bn_recalibration_is_validated_and_leaves_existing_hashes_alone():
    with pytest.raises(SpecError) as exc:
        JobSpec.parse({"dynds": {"bn_recalibration": {"batches": 0}}})
    assert exc.value.errors[0][0] == "dynds.bn_recalibration.batches"
    plain = JobSpec.parse({"train": {"epochs": 3}})
    # the hash of a spec without the option is the one it had before the option existed
    canonical = plain.canonical()
    del canonical["dynds"]["bn_recalibration"]
    import hashlib
    import json

    canonical.pop("name")
    del canonical["train"]["hardware"], canonical["train"]["checkpoint_every_s"]
    before = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert spec_hash(plain) == before
    assert JobSpec.parse({"train": {"epochs": 3}, "dynds": {"bn_recalibration": {}}}).spec_hash != plain.spec_hash


def test_relatives_run_with_their_defaults_and_other_kinds_are_listed():
    for kind in ("progressive", "mixsize"):
        spec = JobSpec.parse({"dynds": {"schedule": {"kind": kind}}})
        assert spec.dynds.schedule.kind == kind
    with pytest.raises(SpecError, match="progressive, mixsize"):
        JobSpec.parse({"dynds": {"schedule": {"kind": "fixres"}}})


# ------------------------------------------------------------------ resize_input: one mechanism with downsample_input


def test_resize_input_any_size_and_equal_to_downsample_at_integer_factors():
    x = torch.rand(2, 3, 32, 32)
    for mode in ("avg", "bilinear", "nearest"):
        assert torch.equal(resize_input(x, (16, 16), mode), downsample_input(x, 2, mode))
        assert resize_input(x, (20, 28), mode).shape == (2, 3, 20, 28)
    assert resize_input(x, (32, 32)) is x
    # area average at a non-integer ratio keeps the mean of a flat image
    assert torch.allclose(resize_input(torch.full((1, 1, 32, 32), 0.3), (20, 20)), torch.full((1, 1, 20, 20), 0.3))
    with pytest.raises(ValueError, match="shrinks only"):
        resize_input(x, (48, 48))


# ------------------------------------------------------------------ FixRes BatchNorm recalibration


def test_recalibrate_bn_changes_only_running_statistics():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10)
    params = {k: v.clone() for k, v in model.named_parameters()}
    stats = {k: v.clone() for k, v in model.named_buffers()}
    model.train()
    batches = [torch.rand(8, 3, 32, 32) * 2 + 1 for _ in range(4)]
    assert recalibrate_bn(model, iter(batches), num_batches=3) == 3
    for k, v in model.named_parameters():
        assert torch.equal(v, params[k]), k
        assert v.grad is None
    changed = [k for k, v in model.named_buffers() if not torch.equal(v, stats[k])]
    assert changed and all(k.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked") for k in changed)
    assert model.training  # flags as they were
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    # a plain average over the 3 batches: the first BatchNorm's mean is the first conv's output mean
    first_bn = model.bn1 if hasattr(model, "bn1") else next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(first_bn.num_batches_tracked) == 3


def test_recalibrate_bn_without_batches_or_batchnorm_changes_nothing():
    model = create_model("resnet20", num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert recalibrate_bn(model, iter([]), num_batches=5) == 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert recalibrate_bn(nn.Linear(3, 2), iter([torch.zeros(1, 3)]), num_batches=1) == 0
    with pytest.raises(ValueError, match="num_batches"):
        recalibrate_bn(model, iter([]), num_batches=0)


# ------------------------------------------------------------------ through the trainer


def _spec(schedule: dict, **dynds) -> JobSpec:
    return JobSpec.parse(
        {
            "data": {"dataset": "synthetic", "image_size": 32, "synthetic_size": 64},
            "train": {"epochs": 2, "batch_size": 16, "lr": 0.05, "device": "cpu"},
            "dynds": {"schedule": schedule, **dynds},
            "equal_time_baseline": True,
        }
    )


class _Shapes(nn.Module):
    """A tiny global-pooling CNN that records the input size of every training forward."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)
        self.seen: list[tuple[int, int]] = []
        self.register_forward_pre_hook(lambda m, args: m.seen.append(tuple(args[0].shape[-2:])) if m.training else None)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


@pytest.mark.parametrize("kind", ["progressive", "mixsize"])
def test_a_resized_batch_reaches_the_model_and_flops_count_each_size(kind):
    model = _Shapes()
    spec = _spec({"kind": kind})
    result = train(spec, model=model, keep_baseline_model=True)
    sched = make_schedule(spec.dynds.schedule, 8, spec.train.seed, image_size=(32, 32))  # 64 images / 16 x 2 epochs
    want = [sched.input_size(i) or (32, 32) for i in range(8)]
    d = result.dynds
    # the trained model is a copy: the sizes its hook saw, step by step, in the result's per-size counts
    seen = result.model.seen[-8:]
    assert seen == want
    assert any(s != (32, 32) for s in seen)
    assert d.steps_reduced == sum(s != (32, 32) for s in want)
    assert d.steps_by_size == {f"{h}x{w}": want.count((h, w)) for h, w in set(want) if (h, w) != (32, 32)}
    # FLOPs: each reduced step at the size it had (counted once per size), never one mean or one factor's count
    per_size = {
        k: step_flops(model, (16, 3, 32, 32), reduced=True, kernel=FULL_KERNELS, input_size=tuple(map(int, k.split("x")))) for k in d.steps_by_size
    }
    assert d.total_flops == pytest.approx(d.flops_full_step * d.steps_full + sum(per_size[k] * n for k, n in d.steps_by_size.items()))
    assert d.total_flops < result.baseline.total_flops
    assert result.time_saving is not None and result.equal_time is not None and result.verdict is not None
    assert result.pairing == "lockstep"


def test_progressive_flops_follow_the_sizes_used():
    result = train(_spec({"kind": "progressive"}), model=_Shapes())
    d = result.dynds
    per_pixel = d.flops_full_step / (32 * 32)  # conv-dominated: FLOPs ~ pixels
    expected = sum(n * per_pixel * int(k.split("x")[0]) * int(k.split("x")[1]) for k, n in d.steps_by_size.items())
    assert d.flops_reduced_step * d.steps_reduced == pytest.approx(expected, rel=0.05)


def test_bn_recalibration_runs_after_training_on_the_dynds_run_only():
    torch.manual_seed(0)
    base = train(_spec({"kind": "progressive"}), model=_Shapes(), keep_baseline_model=True)
    torch.manual_seed(0)
    recal = train(_spec({"kind": "progressive"}, bn_recalibration={"batches": 2}), model=_Shapes(), keep_baseline_model=True)
    # the same training; only the DynDS run's BatchNorm running statistics differ afterwards
    a, b = base.model.state_dict(), recal.model.state_dict()
    for k in a:
        same = torch.equal(a[k], b[k])
        assert same != (k.startswith("bn.") and k.split(".")[1] in ("running_mean", "running_var", "num_batches_tracked")), k
    assert all(torch.equal(v, recal.models["baseline"].state_dict()[k]) for k, v in base.models["baseline"].state_dict().items())
    assert recal.dynds.bn_recalibration_s > 0 and base.dynds.bn_recalibration_s is None
    assert recal.baseline.bn_recalibration_s is None
    # no training step more: the recalibration's forwards run the model in eval mode, BatchNorm alone in train
    assert recal.model.seen == base.model.seen


def test_a_relative_too_small_for_the_network_is_refused_before_training():
    spec = JobSpec.parse(
        {
            "model": {"arch": "resnet18"},
            "data": {"dataset": "synthetic", "image_size": 8, "synthetic_size": 32},
            "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
            "dynds": {"schedule": {"kind": "mixsize", "scales": [0.25, 1.0], "probs": [0.5, 0.5]}},
        }
    )
    with pytest.raises(SpecError) as exc:
        train(spec)
    assert exc.value.errors[0][0] == "dynds.schedule.scales"


@pytest.mark.parametrize("kind", ["progressive", "mixsize"])
def test_a_relative_resumes_bit_for_bit_with_its_sizes(kind, tmp_path, monkeypatch):
    from test_checkpoint import _assert_same_job, _fixed_lockstep_ratio, _run_interrupted, _uninterrupted
    from test_trainer import tiny_spec

    _fixed_lockstep_ratio(monkeypatch)
    spec = tiny_spec(dynds={"schedule": {"kind": kind}, "bn_recalibration": {"batches": 2}}, equal_time_baseline=False)
    whole, seen = _uninterrupted(spec)
    resumed, seen_r = _run_interrupted(spec, ("dynds", 5), tmp_path)  # mid-epoch (4 steps per epoch)
    _assert_same_job(whole, seen, resumed, seen_r)
    assert resumed.dynds.steps_by_size == whole.dynds.steps_by_size and whole.dynds.steps_by_size
    assert resumed.dynds.total_flops == whole.dynds.total_flops


def test_the_estimate_weights_each_size_by_its_share_of_steps():
    from dynds_core.flops import estimate_spec

    spec = JobSpec.parse(
        {"data": {"dataset": "synthetic", "image_size": 32}, "dynds": {"schedule": {"kind": "progressive"}}, "train": {"batch_size": 32}}
    )
    est = estimate_spec(spec, timeout_s=None)
    sched = make_schedule(spec.dynds.schedule, 2 * (512 // 32), image_size=(32, 32))
    assert est["reduced_fraction"] == pytest.approx(sched.expected_reduced_fraction())
    # conv FLOPs scale with pixels: the weighted mean of the sizes' pixel ratios, within a few percent
    shares = sched.size_shares()
    ratio = sum(p * h * w / 32**2 for (h, w), p in shares.items()) / sum(shares.values())
    assert est["flops_reduced_step"] / est["flops_full_step"] == pytest.approx(ratio, rel=0.05)


def test_the_library_object_runs_a_relative_in_your_own_loop():
    from dynds_core.method import DynDS

    dynds = DynDS(schedule={"kind": "progressive"}, total_steps=10, image_size=(32, 32))
    model = _Shapes().train()
    for step in range(10):
        with dynds.batch(model, torch.rand(4, 3, 32, 32), step) as x_in:
            model(x_in)
    assert model.seen == [(16, 16)] * 6 + [(20, 20), (28, 28), (32, 32), (32, 32)]
    with pytest.raises(ValueError, match="image_size"):
        DynDS(schedule={"kind": "mixsize"}, total_steps=10)


# ------------------------------------------------------------------ kernels pooled where the ratio allows


def test_relative_kernels_are_pooled_only_at_the_data_size_over_the_factor():
    from dynds_core.op_settings import kernel_settings, relative_kernel

    pooled = JobSpec.parse({"dynds": {"schedule": {"kind": "mixsize", "kernels": "pooled"}}}).dynds
    assert relative_kernel(pooled, (32, 32), (16, 16)) == kernel_settings(pooled.kernel) != FULL_KERNELS
    assert relative_kernel(pooled, (32, 32), (24, 24)) == FULL_KERNELS  # 32/24: no integer ratio
    assert relative_kernel(pooled, (32, 32), (8, 8)) == FULL_KERNELS  # an integer ratio, but not the factor
    assert relative_kernel(pooled, (28, 30), (14, 15)) == kernel_settings(pooled.kernel)
    three = JobSpec.parse({"dynds": {"schedule": {"kind": "mixsize", "kernels": "pooled"}, "input": {"factor": 3}}}).dynds
    assert relative_kernel(three, (32, 32), (10, 10)) == FULL_KERNELS  # 32 px does not divide by 3
    full = JobSpec.parse({"dynds": {"schedule": {"kind": "mixsize"}}}).dynds
    assert relative_kernel(full, (32, 32), (16, 16)) == FULL_KERNELS
    with pytest.raises(SpecError) as exc:
        JobSpec.parse({"dynds": {"schedule": {"kind": "progressive", "kernels": "some"}}})
    assert exc.value.errors[0][0] == "dynds.schedule.kernels"


def test_pooled_kernels_are_a_setting_of_their_own_and_full_ones_keep_old_hashes():
    from app.leaderboard.keys import setting_key

    plain = JobSpec.parse({"dynds": {"schedule": {"kind": "progressive"}}})
    full = JobSpec.parse({"dynds": {"schedule": {"kind": "progressive", "kernels": "full"}}})
    pooled = JobSpec.parse({"dynds": {"schedule": {"kind": "progressive", "kernels": "pooled"}}})
    assert plain.spec_hash == full.spec_hash != pooled.spec_hash
    import hashlib
    import json

    canonical = plain.canonical()  # hashed as a progressive spec was before the option existed
    del canonical["dynds"]["schedule"]["kernels"], canonical["train"]["hardware"], canonical["train"]["checkpoint_every_s"]
    del canonical["name"], canonical["dynds"]["bn_recalibration"]
    before = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert plain.spec_hash == before
    assert setting_key(plain.canonical()["dynds"]).split(" | ")[1] == "kernel full"
    assert setting_key(pooled.canonical()["dynds"]).split(" | ")[1].endswith("at /2, else full")


def test_a_pooled_relative_step_at_the_factors_size_is_dynds_own_reduced_pass():
    from dynds_core.method import DynDS
    from dynds_core.reduced import reduced_pass

    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10).eval()
    x = torch.rand(4, 3, 32, 32)
    relative = DynDS(schedule={"kind": "progressive", "kernels": "pooled"}, total_steps=10, image_size=(32, 32))
    default = JobSpec.parse({}).dynds
    with reduced_pass(model, default.kernel, "frozen"):
        dynds_out = model(downsample_input(x, 2))
    with relative.batch(model, x, 0) as x_in:  # step 0: 16 px, the data's 32 px over the factor 2
        assert x_in.shape[-2:] == (16, 16)
        out = model(x_in)
    assert torch.equal(out, dynds_out)
    full = DynDS(schedule={"kind": "progressive"}, total_steps=10, image_size=(32, 32))
    with full.batch(model, x, 0) as x_in:
        assert not torch.allclose(model(x_in), dynds_out, atol=1e-4)  # full kernels: another function
    with relative.batch(model, x, 6) as x_in, torch.no_grad():  # step 6: 20 px, no integer ratio: full kernels
        a = model(x_in)
    with full.batch(model, x, 6) as x_in, torch.no_grad():
        assert torch.equal(a, model(x_in))


def test_a_pooled_relative_counts_each_size_at_the_kernels_it_ran():
    from dynds_core.op_settings import relative_kernel

    spec = _spec({"kind": "progressive", "kernels": "pooled"})
    result = train(spec, model=_Shapes())
    plain = train(_spec({"kind": "progressive"}), model=_Shapes())
    d = result.dynds
    assert d.steps_by_size == plain.dynds.steps_by_size and "16x16" in d.steps_by_size
    per_size = {
        k: step_flops(_Shapes(), (16, 3, 32, 32), reduced=True, kernel=relative_kernel(spec.dynds, (32, 32), hw), input_size=hw)
        for k in d.steps_by_size
        for hw in [tuple(map(int, k.split("x")))]
    }
    assert d.total_flops == pytest.approx(d.flops_full_step * d.steps_full + sum(per_size[k] * n for k, n in d.steps_by_size.items()))
    assert d.total_flops < plain.dynds.total_flops  # 2x2 kernels at 16 px instead of 3x3


def test_lockstep_pairs_each_input_size_of_a_relative_apart(monkeypatch):
    """The trainer hands lockstep pairing each reduced step's size, so each size gets its own median."""
    from dynds_core import trainer
    from dynds_core.training.timing import step_shape

    seen = {}
    real = trainer.lockstep_time_ratio

    def spy(d_times, d_shapes, *rest):
        seen["shapes"] = list(d_shapes)
        return real(d_times, d_shapes, *rest)

    monkeypatch.setattr(trainer, "lockstep_time_ratio", spy)
    spec = _spec({"kind": "progressive"})
    result = train(spec, model=_Shapes())
    sched = make_schedule(spec.dynds.schedule, 8, spec.train.seed, image_size=(32, 32))
    want = [step_shape("reduced", sched.input_size(i)) if sched.input_size(i) else 0 for i in range(8)]
    assert seen["shapes"] == want and len(set(want)) >= 3  # 16, 24 px and full steps at least
    assert result.pairing == "lockstep"
