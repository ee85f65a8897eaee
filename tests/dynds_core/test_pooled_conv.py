"""The pooled convolution of a reduced pass (dynds_core.pooled_conv): every layer's output as large as the
model's on the small input, the padding and its side, gradients to the original weights, both layouts."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dynds_core import pooled_conv
from dynds_core.models import create_model
from dynds_core.ops import downsample_input, pool_kernel
from dynds_core.reduced import reduced_pass

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


def _reduced_shapes(model, size, kernel):
    """Every module's output shape in the reduced pass on a (2, 3, size, size) batch halved, checked
    against the model's own on that small input."""
    x_small = downsample_input(torch.randn(2, 3, size, size), 2)
    expected = _shapes(model, x_small)
    with reduced_pass(model, kernel):
        got = _shapes(model, x_small)
    assert got == expected
    return got


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: "-".join(map(str, k.values())))
def test_resnet20_shapes_match_model_on_small_input(kernel):
    torch.manual_seed(0)
    assert _reduced_shapes(create_model("resnet20"), 32, kernel)["layer3.0.conv1"] == (2, 64, 4, 4)


@pytest.mark.parametrize("kernel", [dict(mode="avg"), dict(mode="avg", stride=2), dict(mode="resize", size=(3, 3))])
def test_torchvision_resnet18_stem_shapes_match(kernel):
    torch.manual_seed(0)
    got = _reduced_shapes(create_model("resnet18"), 64, kernel)
    assert got["conv1"] == (2, 64, 16, 16) and got["maxpool"] == (2, 64, 8, 8)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: "-".join(map(str, k.values())))
def test_user_cnn_shapes_match(kernel):
    model = OddCNN()
    for size in (32, 30, 25):
        _reduced_shapes(model, size, kernel)


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


def test_alternate_pads_stride1_convs_only(monkeypatch):
    calls = []
    original = pooled_conv._pad
    monkeypatch.setattr(pooled_conv, "_pad", lambda x, pads: calls.append(pads) or original(x, pads))
    model = create_model("resnet20")
    with reduced_pass(model):
        model(torch.randn(2, 3, 16, 16))
    # 19 pooled convs; the two stride-2 ones (2x2 on 16x16 and 8x8) need no pad at all.
    assert len(calls) == 17
    assert sorted(set(calls)) == [(0, 1, 0, 1), (1, 0, 1, 0)]
    assert calls.count((0, 1, 0, 1)) in (8, 9)
