import json
from pathlib import Path

import pytest
import yaml

from dynds_core.spec import JobSpec, SpecError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def paths(exc: SpecError) -> set[str]:
    return {p for p, _ in exc.errors}


def test_defaults_are_a_valid_job():
    spec = JobSpec()
    assert spec.data.dataset == "synthetic"
    assert spec.dynds.schedule.kind == "stochastic"
    assert JobSpec.parse({}) == spec


def test_every_bad_key_path_is_listed():
    bad = {
        "model": {"arch": "vgg11"},
        "train": {"epochs": 0, "lr": -1, "optimiser": "sgd", "device": "tpu"},
        "dynds": {"input": {"factor": 1}, "schedule": {"kind": "stochastic", "p": 1.5}, "bn": "batch"},
        "extra": 1,
    }
    with pytest.raises(SpecError) as ei:
        JobSpec.parse(bad, source="bad.yaml")
    got = paths(ei.value)
    assert {
        "model.arch",
        "train.epochs",
        "train.lr",
        "train.optimiser",
        "dynds.input.factor",
        "dynds.schedule.p",
        "dynds.bn",
        "extra",
        "train.device",
    } <= got
    assert "tpu" in dict(ei.value.errors)["train.device"]
    text = str(ei.value)
    assert "bad.yaml" in text
    assert "unknown key" in dict(ei.value.errors)["train.optimiser"]
    assert "vgg11" in dict(ei.value.errors)["model.arch"]


def test_schedule_errors_name_the_schedule_keys():
    with pytest.raises(SpecError) as ei:
        JobSpec.parse({"dynds": {"schedule": {"kind": "sometimes"}}})
    assert "dynds.schedule" in paths(ei.value)
    assert "allowed" in dict(ei.value.errors)["dynds.schedule"]
    with pytest.raises(SpecError) as ei:
        JobSpec.parse({"dynds": {"schedule": {"kind": "phase", "start": 0.6, "end": 0.2}}})
    assert "must not be before" in str(ei.value)
    with pytest.raises(SpecError) as ei:
        JobSpec.parse({"dynds": {"schedule": {"kind": "adaptive", "p_min": 0.8, "p_max": 0.2}}})
    assert "p_min" in str(ei.value)
    with pytest.raises(SpecError) as ei:
        JobSpec.parse({"dynds": {"schedule": {"kind": "periodic", "pattern": "RXF"}}})
    assert "pattern" in str(ei.value)


def test_non_mapping_is_refused():
    with pytest.raises(SpecError, match="expected a mapping"):
        JobSpec.parse([1, 2])


def test_spec_hash_is_canonical_and_stable():
    a = JobSpec.parse({"train": {"epochs": 3, "lr": 0.2}, "name": "a"})
    b = JobSpec.parse({"name": "b", "train": {"lr": 0.2, "epochs": 3}})
    # defaults spelled out give the same hash as defaults left implicit
    c = JobSpec.parse({**a.canonical(), "name": "c"})
    assert a.spec_hash == b.spec_hash == c.spec_hash
    assert len(a.spec_hash) == 16
    assert JobSpec.parse({"train": {"epochs": 4, "lr": 0.2}}).spec_hash != a.spec_hash
    # a settings change deep in a union section changes it too
    assert JobSpec.parse({"train": {"epochs": 3, "lr": 0.2}, "dynds": {"schedule": {"kind": "stochastic", "p": 0.4}}}).spec_hash != a.spec_hash


def test_the_json_schema_requires_the_schedule_kind_as_parsing_does():
    # Client generators need the discriminator required in each variant; Python keeps its default.
    defs = JobSpec.model_json_schema()["$defs"]
    for variant in ("NoneSchedule", "StochasticSchedule", "PeriodicSchedule", "PhaseSchedule", "AdaptiveSchedule"):
        assert defs[variant]["required"] == ["kind"], variant
    with pytest.raises(SpecError, match="discriminator 'kind'"):
        JobSpec.parse({"dynds": {"schedule": {"p": 0.3}}})
    assert JobSpec.parse({}).canonical()["dynds"]["schedule"] == {"kind": "stochastic", "p": 0.5, "p_end": None, "final_full_fraction": 0.0}


def test_yaml_and_json_files_read_alike(tmp_path):
    data = {"name": "x", "train": {"epochs": 1}, "dynds": {"schedule": {"kind": "periodic", "every": 2}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "s.json").write_text(json.dumps(data))
    a, b = JobSpec.from_file(tmp_path / "s.yaml"), JobSpec.from_file(tmp_path / "s.json")
    assert a == b and a.dynds.schedule.every == 2
    # An empty file is refused (it is more often a mistake than a wish); `defaults: true` asks for every default.
    for text in ("", "{}\n", "# nothing\n"):
        (tmp_path / "empty.yaml").write_text(text)
        with pytest.raises(SpecError, match="the spec is empty") as ei:
            JobSpec.from_file(tmp_path / "empty.yaml")
        assert "defaults: true" in str(ei.value)
    (tmp_path / "defaults.yaml").write_text("defaults: true\n")
    assert JobSpec.from_file(tmp_path / "defaults.yaml") == JobSpec()
    for text in ("defaults: true\ntrain: {epochs: 3}\n", "defaults: false\n"):
        (tmp_path / "mixed.yaml").write_text(text)
        with pytest.raises(SpecError) as ei:
            JobSpec.from_file(tmp_path / "mixed.yaml")
        assert "defaults" in paths(ei.value)
    assert JobSpec.parse({}) == JobSpec()  # in code, a mapping still means "these settings"


def test_unreadable_or_malformed_files_are_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        JobSpec.from_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [epochs: 1\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        JobSpec.from_file(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SpecError, match="not valid JSON"):
        JobSpec.from_file(tmp_path / "bad.json")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path):
    JobSpec.from_file(path)


def test_kernel_settings_that_would_skip_or_lose_taps_are_refused():
    with pytest.raises(SpecError) as ei:
        JobSpec.parse({"dynds": {"kernel": {"mode": "avg", "stride": 3, "scale": "none"}}})
    assert "stride must be an integer from 1 to the window (2): 3" in dict(ei.value.errors)["dynds.kernel"]  # op_settings' check
    with pytest.raises(SpecError) as ei:
        JobSpec.parse({"dynds": {"kernel": {"mode": "resize", "size": [0, 2]}}})
    assert "dynds.kernel.size.0" in paths(ei.value)
    assert JobSpec.parse({"dynds": {"kernel": {"mode": "avg", "window": 3, "stride": 3}}}).dynds.kernel.stride == 3


def test_resolve_data_root_makes_relative_roots_absolute():
    from dynds_core.spec import resolve_data_root

    spec = {"data": {"dataset": "imagefolder", "root": "../shared/data/c.tar.gz"}, "train": {"epochs": 1}}
    out = resolve_data_root(spec, "/work/main")
    assert out["data"]["root"] == "/work/shared/data/c.tar.gz"
    assert out["train"] == {"epochs": 1}
    assert spec["data"]["root"] == "../shared/data/c.tar.gz"  # the caller's mapping is left alone
    assert resolve_data_root({"data": {"root": "/abs/x"}}, "/w")["data"]["root"] == "/abs/x"
    assert resolve_data_root({"data": {"dataset": "synthetic"}}, "/w") == {"data": {"dataset": "synthetic"}}


def test_resize_target_is_bounded_by_the_kernels_it_resizes():
    from dynds_core.spec import MAX_KERNEL_SIZE

    ok = JobSpec.parse({"dynds": {"kernel": {"mode": "resize", "size": [3, 2]}}})
    assert ok.dynds.kernel.size == (3, 2)
    with pytest.raises(SpecError) as ei:  # larger than resnet20's 3x3 kernels: would grow them
        JobSpec.parse({"dynds": {"kernel": {"mode": "resize", "size": [4, 2]}}})
    assert dict(ei.value.errors)["dynds.kernel.size"].startswith("the resize target [4, 2] is larger than the 3x3")
    with pytest.raises(SpecError) as ei:  # the absolute cap, before any model is looked at
        JobSpec.parse({"model": {"arch": "resnet50"}, "dynds": {"kernel": {"mode": "resize", "size": [100000, 100000]}}})
    assert {"dynds.kernel.size.0", "dynds.kernel.size.1"} <= paths(ei.value)
    assert str(MAX_KERNEL_SIZE) in dict(ei.value.errors)["dynds.kernel.size.0"]


@pytest.mark.parametrize("arch", ["resnet20", "resnet56", "resnet18", "resnet50"])
@pytest.mark.parametrize("small_input", [False, True])
def test_the_kernel_table_matches_the_models(arch, small_input):
    import torch

    from dynds_core.models import create_model
    from dynds_core.spec import ARCH_MIN_POOLED_KERNEL, MAX_KERNEL_SIZE

    with torch.device("meta"):
        model = create_model(arch, small_input=small_input)
    sides = {s for m in model.modules() if isinstance(m, torch.nn.Conv2d) for s in m.kernel_size if min(m.kernel_size) >= 2}
    assert min(sides) == ARCH_MIN_POOLED_KERNEL[arch] and max(sides) <= MAX_KERNEL_SIZE


def test_nul_bytes_are_refused_naming_the_field():
    with pytest.raises(SpecError) as ei:
        JobSpec.parse({"name": "a\x00b", "data": {"dataset": "imagefolder", "root": "/data/x\x00y"}})
    assert {"name", "data.root"} <= paths(ei.value)
    assert "NUL" in dict(ei.value.errors)["data.root"]


def test_dynds_train_refuses_an_empty_spec_file_with_exit_2(tmp_path, capsys):
    from dynds.cli import main

    (tmp_path / "empty.yaml").write_text("")
    assert main(["train", str(tmp_path / "empty.yaml"), "--threads", "1"]) == 2
    assert "the spec is empty" in capsys.readouterr().err


def test_a_periodic_schedule_needs_every_or_a_pattern():
    # every: null alone passed here and crashed later, in make_schedule (a 500 from the API's cost estimate).
    with pytest.raises(SpecError) as ei:
        JobSpec.parse({"dynds": {"schedule": {"kind": "periodic", "every": None}}})
    assert "or a pattern" in dict(ei.value.errors)["dynds.schedule.every"]
    assert JobSpec.parse({"dynds": {"schedule": {"kind": "periodic", "every": None, "pattern": "RRF"}}}).dynds.schedule.pattern == "RRF"
