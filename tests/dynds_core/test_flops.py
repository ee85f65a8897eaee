import pytest
import torch
import torch.nn as nn

from dynds_core.flops import _CACHE, estimate_spec, spec_input_shape, step_flops
from dynds_core.models import create_model
from dynds_core.spec import JobSpec


def test_resnet20_step_flops_match_the_measured_figures():
    # METHOD.md: full step 31.2 G (batch 128, forward + backward), input /2 only 7.8 G (4x fewer).
    m = create_model("resnet20")
    full = step_flops(m, (128, 3, 32, 32), reduced=False)
    input_only = step_flops(m, (128, 3, 32, 32), reduced=True, kernel={"mode": "none"})
    pooled = step_flops(m, (128, 3, 32, 32), reduced=True)
    assert full == pytest.approx(31.2e9, rel=0.02)
    assert full / input_only == pytest.approx(4.0, rel=0.02)
    assert pooled < input_only / 1.8  # 3x3 -> 2x2 kernels cut FLOPs by about (4/9) more


def test_counting_on_a_small_batch_is_exact():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    _CACHE.clear()
    small = step_flops(m, (6, 3, 10, 10), reduced=False, count_batch=2)
    _CACHE.clear()
    real = step_flops(m, (6, 3, 10, 10), reduced=False, count_batch=6)
    # conv forward 2*N*8*3*9*100, backward (input and weight grads) twice that; linear 3x 2*N*8*5
    n = 6
    expected = 3 * (2 * n * 8 * 3 * 9 * 100) + 3 * (2 * n * 8 * 5)
    # the first conv needs no input gradient: torch skips it
    expected -= 2 * n * 8 * 3 * 9 * 100
    assert small == real == expected


def test_counting_leaves_the_model_untouched():
    m = create_model("resnet20")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    _CACHE.clear()
    step_flops(m, (4, 3, 32, 32), reduced=False)
    step_flops(m, (4, 3, 32, 32), reduced=True)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(p.grad is None for p in m.parameters())


def test_input_shapes_come_from_the_spec():
    assert spec_input_shape(JobSpec.parse({"data": {"dataset": "fashion-mnist"}})) == ((1, 28, 28), 60000)
    assert spec_input_shape(JobSpec.parse({"data": {"dataset": "synthetic", "image_size": 16, "synthetic_size": 100}})) == ((3, 16, 16), 100)
    assert spec_input_shape(JobSpec.parse({"data": {"dataset": "imagefolder", "train_subset": 5000}})) == ((3, 32, 32), 5000)


def test_estimate_spec_predicts_saving_from_schedule_and_flops():
    spec = JobSpec.parse(
        {"data": {"dataset": "synthetic", "image_size": 16}, "dynds": {"schedule": {"kind": "periodic", "every": 2}}, "train": {"batch_size": 32}}
    )
    est = estimate_spec(spec)
    assert est["reduced_fraction"] == pytest.approx(0.5)
    assert est["flops_reduced_step"] < est["flops_full_step"] / 4
    assert est["predicted_flop_saving"] == pytest.approx(0.5 * (1 - est["flops_reduced_step"] / est["flops_full_step"]))


def test_estimate_spec_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    estimate_spec(JobSpec.parse({"model": {"arch": "resnet32"}, "data": {"dataset": "cifar10"}}))
    assert torch.equal(torch.rand(3), expected)


def test_estimate_spec_counts_separate_bn_like_frozen():
    # estimate_spec builds a fresh model: bn="separate" must not need attach_separate_bn from the caller.
    base = {"data": {"dataset": "synthetic", "image_size": 16}, "train": {"batch_size": 32}}
    _CACHE.clear()  # counts are cached without bn: make this one count afresh
    separate = estimate_spec(JobSpec.parse({**base, "dynds": {"bn": "separate"}}))
    frozen = estimate_spec(JobSpec.parse(base))
    assert separate["flops_reduced_step"] == frozen["flops_reduced_step"] > 0
