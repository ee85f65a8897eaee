"""The reduced pass intercepts the functional convolution: any conv layer, any thread, torch.compile."""

import threading

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dynds_core import create_model
from dynds_core.flops import step_flops
from dynds_core.ops import downsample_input, pool_kernel
from dynds_core.reduced import ReducedPassError, attach_separate_bn, reduced_pass


class StdConv2d(nn.Conv2d):
    """timm's weight-standardised conv, as timm writes it: its own forward calling F.conv2d."""

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.0, eps=1e-6)
        return F.conv2d(x, w.reshape_as(self.weight), self.bias, self.stride, self.padding, self.dilation, self.groups)


class FunctionalConv(nn.Module):
    """A user's module holding a raw weight and calling the functional op."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.1)

    def forward(self, x):
        return F.conv2d(x, self.weight, padding=1)


def std_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        StdConv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), StdConv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16),
        nn.ReLU(), FunctionalConv(16, 16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip


def test_a_conv_subclass_with_its_own_forward_is_pooled():
    model = std_cnn()
    full = step_flops(model, (8, 3, 32, 32), reduced=False)
    reduced = step_flops(model, (8, 3, 32, 32), reduced=True)
    assert full / reduced == pytest.approx(9.0, rel=0.1)  # input /2 (4x) and 3x3 -> 2x2 kernels (2.25x); 4.0 if unpooled


def test_the_subclass_convolves_with_its_own_transform_pooled_and_grads_reach_its_weight():
    conv = StdConv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    with reduced_pass(conv):
        out = conv(x)
    w = F.batch_norm(conv.weight.reshape(1, 4, -1), None, None, training=True, momentum=0.0, eps=1e-6).reshape_as(conv.weight)
    # the alternate pad side puts the first stride-1 conv's extra row and column at the end
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), pool_kernel(w), conv.bias)
    assert out.shape == (2, 4, 8, 8) and torch.allclose(out, expected, atol=1e-5)
    out.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_a_module_calling_the_functional_op_is_pooled():
    m = FunctionalConv(3, 4)
    x = torch.randn(2, 3, 8, 8)
    with reduced_pass(m):
        out = m(x)
    assert torch.allclose(out, F.conv2d(F.pad(x, (0, 1, 0, 1)), pool_kernel(m.weight)), atol=1e-5)


def test_a_full_forward_in_another_thread_during_a_reduced_pass_sees_the_full_kernels():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def reduced_worker():
        with reduced_pass(model):
            model(downsample_input(x))
            inside.set()
            release.wait(10)  # hold the reduced pass open while the other thread runs the full model
            model(downsample_input(x))

    def full_worker():
        inside.wait(10)
        with torch.no_grad():
            seen["out"] = model(x)
        release.set()

    threads = [threading.Thread(target=reduced_worker), threading.Thread(target=full_worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert inside.is_set() and torch.equal(seen["out"], expected)


def test_frozen_bn_in_one_thread_leaves_another_threads_training_forward_updating_statistics():
    torch.manual_seed(0)
    model = create_model("resnet20").train()
    inside, release = threading.Event(), threading.Event()

    def reduced_worker():
        with reduced_pass(model):
            model(torch.randn(4, 3, 16, 16))
            inside.set()
            release.wait(10)

    t = threading.Thread(target=reduced_worker)
    t.start()
    inside.wait(10)
    before = model.bn1.running_mean.clone()
    model(torch.randn(4, 3, 32, 32))  # a plain training forward in this thread: statistics move
    release.set()
    t.join(10)
    assert not torch.equal(before, model.bn1.running_mean)


def test_nested_reduced_pass_in_one_thread_is_refused():
    model = std_cnn()
    with reduced_pass(model):
        with pytest.raises(ReducedPassError, match="cannot be nested"):
            with reduced_pass(model):
                pass


# -------------------------------------------------------------------------------- torch.compile


def _steps(model, step_model, x, y, n=6):
    """Alternate full and reduced training steps; return the outputs and the first conv's gradients."""
    outs, grads = [], []
    for i in range(n):
        model.zero_grad(set_to_none=True)
        if i % 2:
            with reduced_pass(model):
                out = step_model(downsample_input(x))
        else:
            out = step_model(x)
        F.cross_entropy(out, y).backward()
        outs.append(out.detach())
        grads.append(model.conv1.weight.grad.clone())
    return outs, grads


def test_compiled_model_matches_eager_with_one_graph_per_resolution_and_no_graph_break():
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = create_model("resnet20").train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    # BatchNorm in train mode would drift between the two runs: each starts from its own copy
    state = {k: v.clone() for k, v in model.state_dict().items()}
    eager_outs, eager_grads = _steps(model, model, x, y)
    model.load_state_dict(state)

    dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="aot_eager")
    outs, grads = _steps(model, compiled, x, y)
    assert dict(counters["graph_break"]) == {}  # nothing in the pooling breaks the graph
    assert counters["stats"]["unique_graphs"] <= 2  # one for full steps, one for reduced ones, over 6 alternating steps
    # aot_eager runs the same kernels; reordered reductions leave float32 rounding only
    for a, b in zip(outs, eager_outs, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads, eager_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    dynamo.reset()


def test_separate_bn_under_ddp_without_unused_parameter_search_is_refused_with_what_to_set(monkeypatch):
    model = attach_separate_bn(create_model("resnet20"))

    class FakeDDP(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, module):
            nn.Module.__init__(self)
            self.module = module
            self.find_unused_parameters = False

    with pytest.raises(ReducedPassError, match="find_unused_parameters=True"):
        with reduced_pass(FakeDDP(model), bn="separate"):
            pass
