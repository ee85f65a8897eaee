"""app/leaderboard/keys.py: recipes, frontier keys, track labels and setting keys from specs."""

from app.leaderboard import (
    frontier_epochs,
    frontier_key,
    recipe_hash,
    recipe_of,
    setting_key,
    track_labels,
    track_of,
)
from dynds_core.spec import JobSpec


def test_recipe_drops_only_name_seed_dynds_baseline_flags_and_where_it_runs():
    spec = JobSpec.parse(
        {
            "name": "x",
            "train": {"seed": 7, "lr": 0.05, "num_threads": 2, "pairing": "sequential"},
            "dynds": {"schedule": {"kind": "periodic"}},
            "baseline": False,
            "equal_time_baseline": True,
        }
    ).canonical()
    recipe = recipe_of(spec)
    assert set(recipe) == set(spec) - {"name", "dynds", "baseline", "equal_time_baseline"}
    assert "seed" not in recipe["train"] and recipe["train"]["lr"] == 0.05
    assert recipe["train"]["pairing"] == "sequential"
    # Where the job runs is the track's other half (the measured hardware), not the recipe's.
    assert not {"num_threads", "device", "hardware"} & set(recipe["train"])
    assert recipe["data"] == spec["data"] and recipe["model"] == spec["model"]
    assert spec["train"]["seed"] == 7  # the spec itself is left as it was
    h = recipe_hash(spec)
    assert len(h) == 16 and int(h, 16) >= 0
    same = JobSpec.parse(
        {"name": "y", "train": {"seed": 1, "lr": 0.05, "num_threads": 1, "device": "cpu", "hardware": "cpu", "pairing": "sequential"}}
    ).canonical()
    assert recipe_hash(same) == h  # another name, seed, setting, flags and device: the same recipe
    for change in ({"train": {"lr": 0.1}}, {"data": {"image_size": 16}}, {"train": {"pairing": "lockstep"}}, {"train": {"epochs": 3}}):
        other = JobSpec.parse({"train": {"seed": 7, "lr": 0.05, "num_threads": 2, "pairing": "sequential"}})
        data = other.canonical()
        for section, values in change.items():
            data[section].update(values)
        assert recipe_hash(data) != h, change
    assert recipe_of(recipe) == recipe  # idempotent


def test_frontier_key_ignores_epochs_only():
    a = JobSpec.parse({"train": {"epochs": 12}}).canonical()
    b = JobSpec.parse({"train": {"epochs": 3, "seed": 4}, "baseline": False, "dynds": {"schedule": {"kind": "none"}}}).canonical()
    c = JobSpec.parse({"train": {"epochs": 12, "lr": 0.01}}).canonical()
    assert frontier_key(a) == frontier_key(b) != frontier_key(c)
    assert recipe_hash(a) != recipe_hash(b)
    assert (
        frontier_epochs(12) == [3, 6, 9, 12] and frontier_epochs(2) == [1, 2] and frontier_epochs(1) == [1] and frontier_epochs(10) == [3, 5, 8, 10]
    )


def test_labels_are_unique_where_recipes_share_one():
    def rec(data):
        return recipe_of(JobSpec.parse(data).canonical())

    a, b, c = rec({"train": {"lr": 0.1}}), rec({"train": {"lr": 0.05}}), rec({"data": {"image_size": 16}, "train": {"lr": 0.1}})
    alone = rec({"train": {"epochs": 3}})
    labels = track_labels({"a": a, "b": b, "c": c, "z": alone})
    assert labels["z"] == "resnet20/synthetic/e3-nall"
    assert len({labels["a"], labels["b"], labels["c"]}) == 3
    assert all(labels[k].startswith("resnet20/synthetic/e2-nall · ") for k in "abc")
    assert "train.lr=0.05" in labels["b"] and "data.image_size=16" in labels["c"]
    # Other differing keys are named too; rows without a stored recipe fall back to the hash (see below).
    assert track_labels({"h1": {"x": 1, **a}, "h2": {"x": 2, **a}}) == {
        "h1": "resnet20/synthetic/e2-nall · x=1",
        "h2": "resnet20/synthetic/e2-nall · x=2",
    }


def test_track_and_setting_key_from_a_spec():
    spec = JobSpec.parse({"model": {"arch": "resnet32"}, "data": {"dataset": "cifar10", "train_subset": 5000}, "train": {"epochs": 12}})
    assert track_of(spec.canonical()) == "resnet32/cifar10/e12-n5000"
    assert track_of(JobSpec().canonical()) == "resnet20/synthetic/e2-nall"
    assert setting_key(spec.canonical()["dynds"]) == "stochastic p=0.5 | avg k2s1 sum | in/2 avg | bn frozen"
    periodic = JobSpec.parse({"dynds": {"schedule": {"kind": "periodic", "pattern": "RRF"}, "kernel": {"mode": "max", "scale": "none"}}})
    assert setting_key(periodic.canonical()["dynds"]) == "periodic RRF | max k2s1 none | in/2 avg | bn frozen"
