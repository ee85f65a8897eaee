"""Models that cannot take a reduced pass are told which layer and what to change (dynds_core.reduced_diagnostics)."""

import pytest
import torch
import torch.nn as nn

from dynds_core.models import create_model
from dynds_core.reduced import ReducedPassError, check_reduced_pass, reduced_pass


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


def test_check_reduced_pass_reports_a_too_small_input():
    with pytest.raises(ReducedPassError, match="too small"):
        # Valid 3x3 convs: 8 -> 6 -> 4 at full size, but 2 -> nothing at factor 4.
        check_reduced_pass(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)), (3, 8, 8), factor=4)


def test_non_shape_runtime_error_passes_through_unchained():
    model = create_model("resnet20")
    with pytest.raises(RuntimeError, match="out of memory") as ei:
        with reduced_pass(model):
            raise RuntimeError("CUDA out of memory")
    assert ei.value.__cause__ is None  # not its own cause: code walking the chain would never stop
