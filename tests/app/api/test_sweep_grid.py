"""app.api.sweep_grid: a sweep's grid expanded into specs, each checked as a submission is."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from policy_helpers import settings  # noqa: F401  (fixtures)

from app.api import sweep_grid
from app.api.sweep_grid import set_dotted, sweep_specs


def nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("key", ["dynds.²", "train.1e3", "train. 1", "train..epochs", "train.", "", "trän.seed"])
def test_grid_keys_are_parsed_strictly(settings, key):
    with pytest.raises(RequestValidationError) as ei:
        sweep_specs({}, {key: [1]}, settings)
    (err,) = [e for e in ei.value.errors() if e["loc"] == ["body", "grid", key]]
    assert "is not a spec key" in err["msg"]
    with pytest.raises(ValueError, match="is not a spec key"):
        set_dotted({}, key, 1)
    with pytest.raises(RequestValidationError) as ei:  # refused up front: only the bad key is named
        sweep_specs({}, {key: [1], "train.seed": [0]}, settings)
    assert [e["loc"] for e in ei.value.errors()] == [["body", "grid", key]]


def test_depth_is_bounded_before_any_copy(settings, monkeypatch):
    deep = {"train": {"seed": nested(900)}}
    monkeypatch.setattr(sweep_grid.copy, "deepcopy", lambda *a: pytest.fail("deepcopy of a deep base"))
    for base, grid, loc in ((deep, {"train.lr": [0.1]}, ["body", "base"]), ({}, {"train.seed": [nested(900)]}, ["body", "grid", "train.seed"])):
        with pytest.raises(RequestValidationError) as ei:
            sweep_specs(base, grid, settings)
        assert ei.value.errors()[0]["loc"] == loc and "levels deep" in ei.value.errors()[0]["msg"]


def test_a_sweep_of_nothing_over_an_empty_base_is_refused(settings):
    with pytest.raises(RequestValidationError) as ei:
        sweep_specs({}, {}, settings)
    assert ei.value.errors()[0]["loc"] == ["body", "base"]
    assert len(sweep_specs({}, {"train.seed": [0, 1]}, settings)) == 2  # a grid makes every point non-empty
