"""app.api.spec_policy: a relative's smallest input (progressive's initial_scale, mixsize's smallest scale) too
small for the network is a 422 at the door naming the schedule's key, as DynDS's factor is."""

from __future__ import annotations

import pytest
from policy_helpers import locs, settings  # noqa: F401  (fixtures)

from app.api.spec_policy import spec_errors


@pytest.mark.parametrize(
    "schedule, key, ok",
    [({"kind": "mixsize", "scales": [0.25, 1.0], "probs": [0.5, 0.5]}, "scales", False),
     ({"kind": "mixsize", "scales": [0.25, 1.0], "probs": [0.0, 1.0]}, "scales", True),  # never drawn
     ({"kind": "progressive", "initial_scale": 0.25, "size_increment": 1}, "initial_scale", False),
     ({"kind": "progressive"}, "initial_scale", True)],
)  # fmt: skip
def test_a_relative_too_small_for_the_network_is_422_naming_its_key(settings, schedule, key, ok):  # noqa: F811
    # resnet18's 7x7 stride-2 stem needs a reduced input of at least 3x3: 8 px images at 0.25 are 2x2
    spec = {"model": {"arch": "resnet18"}, "data": {"image_size": 8}, "dynds": {"schedule": schedule}}
    _, errors = spec_errors(spec, settings)
    assert (errors == []) is ok, errors
    if not ok:
        assert locs(errors) == {("dynds", "schedule", key)} and f"raise {key}" in errors[0]["msg"]
