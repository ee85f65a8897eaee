"""reduced_pass: shapes layer by layer, padding, gradients, restoration, BatchNorm modes, refusals."""


import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dynds_core.models import create_model
from dynds_core.ops import downsample_input, pool_kernel
from dynds_core.reduced import ReducedPassError, attach_separate_bn, check_reduced_pass, reduced_pass
from dynds_core.spec import KernelPooling

KERNELS = [
    dict(mode="none"),
    dict(mode="avg"),
    dict(mode="avg", stride=2),
    dict(mode="max", scale="none"),
    dict(mode="resize", size=(2, 2)),
    dict(mode="resize", size=(3, 3)),
    dict(mode="avg", pad_side="end"),
    dict(mode="avg", pad_side="start"),
]


def _shapes(model, x):
    """Output shape of every module for one forward of ``model(x)``."""
    shapes, handles = {}, []
    for name, m in model.named_modules():
        handles.append(m.register_forward_hook(lambda mod, args, out, name=name: shapes.__setitem__(name, tuple(out.shape))))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


class OddCNN(nn.Module):
    """A user's own CNN: 5x5 stem, stride-2, dilated, grouped, 'same', 'valid', reflect and biased convs."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 5, padding=2),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2),
            nn.Conv2d(8, 8, 3, padding=2, dilation=2, padding_mode="reflect"),
            nn.Conv2d(8, 8, 3, padding="same", bias=False),
            nn.Conv2d(8, 8, (3, 5), stride=(1, 2), padding=(1, 2)),
            nn.Conv2d(8, 8, 3, padding="valid"),
            nn.Conv2d(8, 4, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: "-".join(map(str, k.values())))
def test_resnet20_shapes_match_model_on_small_input(kernel):
    torch.manual_seed(0)
    model = create_model("resnet20")
    x_small = downsample_input(torch.randn(2, 3, 32, 32), 2)
    expected = _shapes(model, x_small)
    with reduced_pass(model, kernel):
        got = _shapes(model, x_small)
    assert got == expected
    assert got["layer3.0.conv1"] == (2, 64, 4, 4)


@pytest.mark.parametrize("kernel", [dict(mode="avg"), dict(mode="avg", stride=2), dict(mode="resize", size=(3, 3))])
def test_torchvision_resnet18_stem_shapes_match(kernel):
    torch.manual_seed(0)
    model = create_model("resnet18")
    x_small = downsample_input(torch.randn(2, 3, 64, 64), 2)
    expected = _shapes(model, x_small)
    with reduced_pass(model, kernel):
        got = _shapes(model, x_small)
    assert got == expected
    assert got["conv1"] == (2, 64, 16, 16) and got["maxpool"] == (2, 64, 8, 8)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: "-".join(map(str, k.values())))
def test_user_cnn_shapes_match(kernel):
    model = OddCNN()
    for size in (32, 30, 25):
        x_small = downsample_input(torch.randn(2, 3, size, size), 2)
        expected = _shapes(model, x_small)
        with reduced_pass(model, kernel):
            assert _shapes(model, x_small) == expected


def test_one_conv_equals_explicit_pooled_conv_and_padding():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(conv)
    x = torch.randn(2, 3, 16, 16)
    with reduced_pass(model, dict(pad_side="end")):
        y = model(x)
    assert torch.allclose(y, F.conv2d(F.pad(x, (0, 1, 0, 1)), pool_kernel(conv.weight), conv.bias), atol=1e-6)
    with reduced_pass(model, dict(pad_side="start")):
        y = model(x)
    assert torch.allclose(y, F.conv2d(F.pad(x, (1, 0, 1, 0)), pool_kernel(conv.weight), conv.bias), atol=1e-6)


def test_stride2_2x2_on_16x16_runs_unpadded():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
    x = torch.randn(1, 3, 16, 16)
    with reduced_pass(nn.Sequential(conv), dict(pad_side="end")):
        y = conv(x)
    assert y.shape == (1, 4, 8, 8)
    assert torch.allclose(y, F.conv2d(x, pool_kernel(conv.weight), stride=2), atol=1e-6)


def _impulse_centroid(pad_side, layers=4):
    # Identity 3x3 convs: the pooled 2x2 kernel is a half-pixel blur, so each padded side shifts the map.
    convs = [nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(layers)]
    for c in convs:
        nn.init.zeros_(c.weight)
        c.weight.data[0, 0, 1, 1] = 1.0
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 16, 16] = 1.0
    model = nn.Sequential(*convs)
    with torch.no_grad(), reduced_pass(model, dict(pad_side=pad_side)):
        y = model(x)[0, 0]
    rows = torch.arange(32.0)
    return float((y.sum(1) * rows).sum() / y.sum()), float((y.sum(0) * rows).sum() / y.sum())


def test_pad_side_drift_and_its_cancellation():
    assert _impulse_centroid("end") == pytest.approx((14.0, 14.0))  # half a pixel per layer
    assert _impulse_centroid("start") == pytest.approx((18.0, 18.0))
    assert _impulse_centroid("alternate") == pytest.approx((16.0, 16.0))


def test_gradients_land_on_original_weights():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(conv)
    x = torch.randn(2, 3, 16, 16)
    with reduced_pass(model, dict(pad_side="end")):
        model(x).square().sum().backward()
    w = conv.weight.detach().clone().requires_grad_()
    b = conv.bias.detach().clone().requires_grad_()
    F.conv2d(F.pad(x, (0, 1, 0, 1)), pool_kernel(w), b).square().sum().backward()
    assert torch.allclose(conv.weight.grad, w.grad, atol=1e-4)
    assert torch.allclose(conv.bias.grad, b.grad, atol=1e-4)


@pytest.mark.parametrize("mode", ["avg", "resize"])
def test_channels_last_weights_pool_and_backprop_like_contiguous_ones(mode):
    """channels_last weights take a layout-preserving path; it must give the same output and gradients."""
    torch.manual_seed(0)
    kernel = dict(mode=mode, size=(2, 2) if mode == "resize" else None)
    x = torch.randn(2, 8, 16, 16)
    grads, outs = [], []
    for fmt in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(1)
        conv = nn.Conv2d(8, 6, 3, padding=1).to(memory_format=fmt)
        assert conv.weight.is_contiguous(memory_format=fmt)
        with reduced_pass(nn.Sequential(conv), kernel):
            out = conv(x.contiguous(memory_format=fmt))
        out.square().sum().backward()
        outs.append(out)
        grads.append(conv.weight.grad)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-4)


def _fingerprint(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [(n, type(m), sorted(m.__dict__), len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()],
        [id(p) for p in model.parameters()],
        [getattr(m, "track_running_stats", None) for m in model.modules()],
    )


def _same(a, b):
    assert a[0].keys() == b[0].keys()
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1:] == b[1:]


@pytest.mark.parametrize("bn", ["frozen", "shared"])
def test_model_is_exactly_restored(bn):
    torch.manual_seed(0)
    model = create_model("resnet20")
    model.eval()  # eval: even bn="shared" leaves the running statistics alone
    before = _fingerprint(model)
    with reduced_pass(model, bn=bn):
        model(torch.randn(2, 3, 16, 16))
    _same(before, _fingerprint(model))


def test_model_is_restored_after_an_exception():
    model = create_model("resnet20")
    before = _fingerprint(model)
    with pytest.raises(KeyError):
        with reduced_pass(model):
            model(torch.randn(2, 3, 16, 16))
            raise KeyError("boom")
    _same(before, _fingerprint(model))
    # ... and the full pass is the plain model again.
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_nested_reduced_pass_is_refused():
    model = create_model("resnet20")
    with reduced_pass(model):
        with pytest.raises(ReducedPassError, match="nested"):
            with reduced_pass(model):
                pass


def test_kernel_settings_forms():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1))
    x = torch.randn(1, 1, 8, 8)
    with reduced_pass(model, KernelPooling(mode="avg", stride=2)):
        a = model(x)
    with reduced_pass(model, {"mode": "avg", "stride": 2}):
        b = model(x)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="scale"):
        with reduced_pass(model, {"mode": "max"}):
            pass
    with pytest.raises(ValueError, match="'batch'"):
        with reduced_pass(model, bn="batch"):
            pass


# ---- BatchNorm modes ---------------------------------------------------------------------------------


def _bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_bn_frozen_uses_batch_stats_but_keeps_running_stats():
    model = _bn_model().train()
    bn = model[1]
    stats = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(4, 3, 8, 8) * 3 + 2
    with reduced_pass(model, bn="frozen"):
        h = model[0](x)
        y = bn(h)
    assert all(torch.equal(stats[k], v) for k, v in bn.state_dict().items())
    assert torch.allclose(y, F.batch_norm(h, None, None, bn.weight, bn.bias, True), atol=1e-5)
    # Outside the context the running statistics move again.
    model(x)
    assert bn.num_batches_tracked.item() == 1 and not torch.equal(bn.running_mean, stats["running_mean"])


def test_bn_shared_updates_running_stats():
    model = _bn_model().train()
    with reduced_pass(model, bn="shared"):
        model(torch.randn(4, 3, 8, 8) + 2)
    assert model[1].num_batches_tracked.item() == 1


def test_bn_separate_needs_attach():
    with pytest.raises(ReducedPassError, match="attach_separate_bn"):
        with reduced_pass(_bn_model(), bn="separate"):
            pass


def test_bn_separate_uses_its_own_set():
    model = attach_separate_bn(_bn_model().train())
    bn = model[1]
    assert {"1.reduced_weight", "1.reduced_bias", "1.reduced_running_mean", "1.reduced_running_var"} <= set(model.state_dict())
    assert attach_separate_bn(model) is model and len(list(bn.parameters())) == 4  # idempotent
    original = {k: v.clone() for k, v in bn.state_dict().items() if not k.startswith("reduced_")}
    with reduced_pass(model, bn="separate"):
        model(torch.randn(4, 3, 8, 8) + 2).sum().backward()
    assert bn.reduced_num_batches_tracked.item() == 1 and bn.reduced_running_mean.abs().sum() > 0
    assert all(torch.equal(original[k], bn.state_dict()[k]) for k in original)
    assert bn.reduced_weight.grad is not None and bn.weight.grad is None
    # Full passes use (and update) the original set.
    model(torch.randn(4, 3, 8, 8))
    assert bn.num_batches_tracked.item() == 1 and bn.reduced_num_batches_tracked.item() == 1


# ---- refusals ----------------------------------------------------------------------------------------


class FixedHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * 16 * 16, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class ViewHead(FixedHead):
    def forward(self, x):
        return self.classifier[1](self.features(x).view(x.shape[0], 4, 256))


def test_fixed_spatial_head_is_refused_naming_the_layer():
    model = FixedHead()
    with pytest.raises(ReducedPassError, match=r"layer 'classifier.1' \(Linear, in_features=1024\) needs a fixed spatial input size"):
        with reduced_pass(model):
            model(torch.randn(2, 3, 8, 8))
    # the refusal leaves the plain model behind: full-size passes work again
    assert "_conv_forward" not in model.features[0].__dict__
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_shape_error_inside_a_module_is_named():
    model = ViewHead()
    with pytest.raises(ReducedPassError, match="ViewHead"):
        with reduced_pass(model):
            model(torch.randn(2, 3, 8, 8))


def test_check_reduced_pass_refuses_fixed_head_and_leaves_state():
    model = FixedHead().train()
    model.features[1].eval()  # a mixed train/eval model keeps its flags
    before = _fingerprint(model)
    with pytest.raises(ReducedPassError, match="classifier.1"):
        check_reduced_pass(model, (3, 16, 16))
    _same(before, _fingerprint(model))
    assert model.training and not model.features[1].training


def test_check_reduced_pass_accepts_resnets():
    model = create_model("resnet20").train()
    before = _fingerprint(model)
    check_reduced_pass(model, (3, 32, 32))
    check_reduced_pass(create_model("resnet18", small_input=True), (8, 3, 32, 32), kernel={"mode": "avg", "stride": 2})
    _same(before, _fingerprint(model))


def test_check_reduced_pass_reports_a_too_small_input():
    with pytest.raises(ReducedPassError, match="too small"):
        # Valid 3x3 convs: 8 -> 6 -> 4 at full size, but 2 -> nothing at factor 4.
        check_reduced_pass(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)), (3, 8, 8), factor=4)


def test_alternate_pads_stride1_convs_only(monkeypatch):
    import dynds_core.reduced as reduced

    calls = []
    original = reduced._pad
    monkeypatch.setattr(reduced, "_pad", lambda x, pads: calls.append(pads) or original(x, pads))
    model = create_model("resnet20")
    with reduced_pass(model):
        model(torch.randn(2, 3, 16, 16))
    # 19 pooled convs; the two stride-2 ones (2x2 on 16x16 and 8x8) need no pad at all.
    assert len(calls) == 17
    assert sorted(set(calls)) == [(0, 1, 0, 1), (1, 0, 1, 0)]
    assert calls.count((0, 1, 0, 1)) in (8, 9)


def test_reduced_step_benchmark_quick_runs(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "reduced_step.py"
    spec = importlib.util.spec_from_file_location("reduced_step_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--quick", "--threads", "1", "--formats", "channels_last"])
    torch.set_num_threads(1)
    out = capsys.readouterr().out
    assert "reduced avg s1 (default)" in out and "FLOP ratio" in out
    row = next(line for line in out.splitlines() if "reduced avg s1 (default)" in line)
    flop_ratio = float(row.split()[-3].rstrip("x"))
    assert 8.0 < flop_ratio < 9.5  # METHOD.md: 8.9x fewer FLOPs for input /2 with 2x2 kernels


@pytest.mark.parametrize(
    "kernel,match",
    [
        (KernelPooling.model_construct(mode="avg", window=2, stride=3, size=None, scale="none", pad_side="end"), "stride"),
        (KernelPooling.model_construct(mode="resize", window=2, stride=1, size=(0, 2), scale="sum", pad_side="end"), r"\(0, 2\)"),
    ],
)
def test_reduced_pass_checks_kernel_settings_like_pool_kernel(kernel, match):
    """The linear modes skip pool_kernel: a stride that skips taps or an empty target must still be refused."""
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1))
    with pytest.raises(ValueError, match=match) as ei:
        with reduced_pass(model, kernel):
            model(torch.randn(1, 1, 8, 8))
    assert not isinstance(ei.value, ReducedPassError)  # a bad setting, not a model that needs a fixed size
    assert "_conv_forward" not in model[0].__dict__


def test_non_shape_runtime_error_passes_through_unchained():
    model = create_model("resnet20")
    with pytest.raises(RuntimeError, match="out of memory") as ei:
        with reduced_pass(model):
            raise RuntimeError("CUDA out of memory")
    assert ei.value.__cause__ is None  # not its own cause: code walking the chain would never stop
