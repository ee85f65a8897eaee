"""DynDS in a user's own loop (dynds_core.method): the documentation's loop (docs/library.md), run for real."""

import contextlib
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from dynds_core import DynDS, SpecError, create_model, downsample_input
from dynds_core.spec import PeriodicSchedule


def readme_loop() -> str:
    """The own-loop example of docs/library.md, as printed there."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "library.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if "dynds.batch(" in b]
    return block


def test_the_readme_loop_runs_as_printed(monkeypatch):
    """The documentation's block itself, executed over a small data set: 15 lines of code, a complete loop, and
    it trains with both batch types."""
    code = readme_loop()
    assert len([line for line in code.splitlines() if line.strip()]) == 15
    seen = []
    real_batch = DynDS.batch

    @contextlib.contextmanager
    def batch(self, model, x, step, epoch=0):
        with real_batch(self, model, x, step, epoch) as x_in:
            seen.append((step, x_in.shape[-1]))
            yield x_in

    monkeypatch.setattr(DynDS, "batch", batch)
    torch.manual_seed(0)
    ns = {"train_set": TensorDataset(torch.randn(256, 3, 16, 16), torch.randint(0, 10, (256,)))}  # 16x16: a quarter of the cost
    exec(compile(code, "docs/library.md", "exec"), ns)
    assert [s for s, _ in seen] == list(range(2 * 12))  # every step of 12 epochs of 2 batches, numbered across epochs
    assert {size for _, size in seen} == {16, 8} and torch.isfinite(ns["loss"])  # full and reduced steps both ran


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
