"""BatchNorm in a reduced pass (dynds_core.reduced_bn): frozen, shared and separate."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dynds_core.reduced import ReducedPassError, attach_separate_bn, reduced_pass


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
