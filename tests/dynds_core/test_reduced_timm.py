"""timm's CNNs under the reduced pass: a ResNet (plain Conv2d) and a ResNetV2 built from StdConv2d."""

import pytest
import timm  # a test dependency (pyproject [test]): missing, this fails rather than skips
import torch
import torch.nn.functional as F
from timm.layers import StdConv2d
from timm.models.resnetv2 import ResNetV2

from dynds_core.flops import step_flops
from dynds_core.ops import downsample_input
from dynds_core.reduced import check_reduced_pass, reduced_pass

SHAPE = (4, 3, 64, 64)


def models():
    torch.manual_seed(0)
    return {
        "resnet10t": timm.create_model("resnet10t", pretrained=False, num_classes=10),
        "resnetv2-std": ResNetV2(layers=[1, 1, 1, 1], channels=(64, 128, 256, 512), stem_chs=32, basic=True, bottle_ratio=1.0, num_classes=10),
    }


@pytest.mark.parametrize("name", ["resnet10t", "resnetv2-std"])
def test_timm_models_take_the_reduced_pass_and_their_convs_are_pooled(name):
    model = models()[name]
    if name == "resnetv2-std":
        assert any(isinstance(m, StdConv2d) for m in model.modules())
    check_reduced_pass(model, SHAPE)
    full = step_flops(model, SHAPE, reduced=False)
    pooled = full / step_flops(model, SHAPE, reduced=True)
    unpooled = full / step_flops(model, SHAPE, reduced=True, kernel={"mode": "none"})
    assert unpooled == pytest.approx(4.0, rel=0.02)  # input /2 alone
    # Pooled kernels cut FLOPs past input /2's 4.0 (5.4 and 4.5 here: 1x1 convs, norms and the weight
    # standardisation do not shrink with the kernels); exactly 4.0 would mean the convs were skipped.
    assert pooled > 1.1 * unpooled
    x, y = torch.randn(*SHAPE), torch.randint(0, 10, (SHAPE[0],))
    with reduced_pass(model):
        loss = F.cross_entropy(model(downsample_input(x)), y)
    loss.backward()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] >= 2]
    # every conv's gradient lands on its own weight (timm zero-initialises the last BatchNorm of each
    # residual branch, so the conv before it gets a zero gradient on the first step; the stem's is not zero)
    assert convs and all(m.weight.grad is not None for m in convs) and convs[0].weight.grad.abs().sum() > 0
