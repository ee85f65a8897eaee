"""The model zoo: registry, factory, CIFAR ResNets (option-A shortcuts) and adapted torchvision ResNets."""

import pytest
import torch
import torch.nn as nn

from dynds_core.models import MODELS, create_model, list_models, register_model
from dynds_core.models.cifar_resnet import PadShortcut


def test_registry_lists_every_architecture_of_the_spec():
    from dynds_core.spec import ARCHS

    assert sorted(ARCHS) == list_models()


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_resnet_depth_counts_weighted_layers(depth):
    model = create_model(f"resnet{depth}")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == depth  # option A: shortcuts add no conv
    assert {c.out_channels for c in convs} == {16, 32, 64}


def test_resnet20_size_and_forward():
    model = create_model("resnet20", num_classes=7, in_channels=1)
    # He et al. 2016, table 6: 0.27M parameters.
    assert 0.26e6 < sum(p.numel() for p in model.parameters()) < 0.28e6
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def _reference_forward(model, x):
    """ResNet-20's forward written out of place, from the same modules: what the in-place one must equal."""
    import torch.nn.functional as F

    def block(b, x):
        out = F.relu(b.bn1(b.conv1(x)))
        return F.relu(b.bn2(b.conv2(out)) + b.shortcut(x))

    x = F.relu(model.bn1(model.conv1(x)))
    for stage in (model.layer1, model.layer2, model.layer3):
        for b in stage:
            x = block(b, x)
    return model.fc(torch.flatten(model.pool(x), 1))


def test_cifar_resnet_in_place_forward_and_gradients_equal_out_of_place():
    from dynds_core.reduced import reduced_pass

    torch.manual_seed(0)
    model = create_model("resnet20")
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    results = []
    for forward in (model, lambda x: _reference_forward(model, x)):
        for small in (False, True):  # the full pass and the reduced pass
            model.zero_grad()
            if small:
                with reduced_pass(model):
                    out = forward(x[:, :, ::2, ::2])
            else:
                out = forward(x)
            torch.nn.functional.cross_entropy(out, y).backward()
            results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    for (out, grads), (ref_out, ref_grads) in zip(results[:2], results[2:], strict=True):
        torch.testing.assert_close(out, ref_out)
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r)


def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    x = torch.randn(2, 16, 8, 8)
    out = PadShortcut(16, 32, 2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0
    assert not list(PadShortcut(16, 32, 2).parameters())


def test_torchvision_resnet18_keeps_its_stem_by_default():
    model = create_model("resnet18", num_classes=5)
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert model.fc.out_features == 5


def test_torchvision_small_input_stem():
    model = create_model("resnet18", num_classes=10, in_channels=1, small_input=True)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.in_channels == 1
    assert isinstance(model.maxpool, nn.Identity)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name,fc_in", [("resnet34", 512), ("resnet50", 2048)])
def test_torchvision_in_channels_and_classes(name, fc_in):
    model = create_model(name, num_classes=3, in_channels=4)
    assert model.conv1.in_channels == 4 and model.conv1.kernel_size == (7, 7)
    assert model.fc.in_features == fc_in and model.fc.out_features == 3


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown model 'resnet21'; choose one of: .*resnet110.*resnet20"):
        create_model("resnet21")


@pytest.mark.parametrize("kwargs", [dict(num_classes=0), dict(in_channels=-1), dict(num_classes=2.5)])
def test_bad_sizes_name_the_value(kwargs):
    ((label, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"{label} must be a positive integer: {value!r}"):
        create_model("resnet20", **kwargs)


def test_register_model_adds_a_factory_and_refuses_duplicates():
    @register_model
    def tiny_cnn_for_test(num_classes, in_channels, small_input):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    try:
        assert create_model("tiny_cnn_for_test", num_classes=4)(torch.randn(1, 3, 8, 8)).shape == (1, 4)
        with pytest.raises(ValueError, match="registered twice"):
            register_model(tiny_cnn_for_test)
    finally:
        MODELS.pop("tiny_cnn_for_test")
