"""reduced_pass: the model exactly restored, the forms of its settings, no nesting; check_reduced_pass.
The pooled convolutions, BatchNorm modes and refusals have their own files (test_pooled_conv,
test_reduced_bn, test_reduced_diagnostics), as the modules do."""

import pytest
import torch
import torch.nn as nn
from test_reduced_diagnostics import FixedHead

from dynds_core.models import create_model
from dynds_core.reduced import ReducedPassError, check_reduced_pass, reduced_pass
from dynds_core.spec import KernelPooling


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
