"""The training recipe (dynds_core.training.recipe): the device a spec's train.device lands on."""

import pytest
import torch

from dynds_core.spec import SpecError
from dynds_core.training.recipe import resolve_device


def test_auto_lands_on_cuda_when_present_else_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_asked_for_where_there_is_none_is_a_spec_error_at_train_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SpecError) as ei:
        resolve_device("cuda:1", source="job 7")
    assert ei.value.source == "job 7" and [path for path, _ in ei.value.errors] == ["train.device"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SpecError, match="only 1 CUDA device"):
        resolve_device("cuda:1")
