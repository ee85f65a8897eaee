"""DynDS in a user's own loop (dynds_core.method): the README's loop, run for real."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from dynds_core import DynDS, SpecError, create_model, downsample_input
from dynds_core.spec import PeriodicSchedule


def test_the_readme_loop_trains_over_a_plain_dataloader():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,)))
    loader = DataLoader(data, batch_size=16, shuffle=True)
    model = create_model("resnet20", num_classes=10)
    epochs = 2
    dynds = DynDS(schedule={"kind": "periodic", "pattern": "FR"}, total_steps=len(loader) * epochs, seed=0)
    model = dynds.prepare(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sizes, step = [], 0
    for epoch in range(epochs):
        for x, y in loader:
            with dynds.batch(model, x, step, epoch) as x_in:
                sizes.append(x_in.shape[-1])
                loss = F.cross_entropy(model(x_in), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    assert sizes == [32, 16] * 4
    assert torch.isfinite(loss)


def test_a_reduced_batch_is_the_reduced_pass_and_a_full_one_is_x_itself():
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    dynds = DynDS(schedule=PeriodicSchedule(pattern="FR"), kernel={"mode": "none"}, input={"mode": "nearest"}, total_steps=2)
    with dynds.batch(model, x, 0) as x_in:
        assert x_in is x and dynds.last == "full"
    with dynds.batch(model, x, 1) as x_in:
        assert torch.equal(x_in, downsample_input(x, 2, "nearest")) and dynds.last == "reduced"
        with torch.no_grad():
            reduced = model(x_in)
    with torch.no_grad():  # kernel mode none: the reduced pass is the plain model on the small input
        assert torch.allclose(reduced, model(downsample_input(x, 2, "nearest")), atol=1e-6)


def test_separate_bn_is_prepared_and_settings_are_checked_where_they_enter():
    model = DynDS(bn="separate", total_steps=10).prepare(create_model("resnet20"))
    assert "reduced_running_mean" in model.bn1._buffers
    with pytest.raises(SpecError, match=r"dynds\.schedule\.p: "):
        DynDS(schedule={"kind": "stochastic", "p": 2}, total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        DynDS(total_steps=0)
    adaptive = DynDS(schedule={"kind": "adaptive"}, total_steps=10)
    with pytest.raises(RuntimeError, match="after a batch"):
        adaptive.observe(1.0, 0.1)
    with adaptive.batch(nn.Identity(), torch.zeros(1, 3, 8, 8), 0):
        pass
    adaptive.observe(1.0, 0.1)
