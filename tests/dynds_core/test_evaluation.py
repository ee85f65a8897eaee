"""Validation after each epoch (dynds_core.training.evaluation)."""

import pytest
import torch
import torch.nn.functional as F
from test_loop import cnn

from dynds_core.training.evaluation import evaluate


class _Batches:
    def __init__(self, batches):
        self.batches = batches

    def epoch(self, epoch):
        return iter(self.batches)


def test_evaluation_runs_in_eval_mode_and_restores_training_mode():
    modes = []
    model = cnn().train()
    model.register_forward_pre_hook(lambda m, a: modes.append(m.training))
    x = torch.randn(6, 3, 16, 16)
    evaluate(model, _Batches([(x, torch.arange(6))]), torch.device("cpu"), amp=False)
    assert modes == [False]  # BatchNorm normalises with its running statistics
    assert model.training


def test_validation_loss_is_averaged_over_samples_not_batches():
    torch.manual_seed(1)
    model = cnn().eval()
    x, y = torch.randn(7, 3, 16, 16), torch.randint(0, 10, (7,))
    loss, acc = evaluate(model, _Batches([(x[:6], y[:6]), (x[6:], y[6:])]), torch.device("cpu"), amp=False)
    with torch.no_grad():
        out = model(x)
    assert loss == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-6)  # a batch mean would weight the 7th sample 6x
    assert acc == pytest.approx(100.0 * (out.argmax(1) == y).sum().item() / 7)
