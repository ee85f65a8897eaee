import pytest
import torch
import torch.nn as nn

from dynds_core.flops import _CACHE, estimate_spec, spec_input_shape, step_flops
from dynds_core.models import create_model
from dynds_core.spec import JobSpec


def test_resnet20_step_flops_match_the_measured_figures():
    # METHOD.md: full step 31.2 G (batch 128, forward + backward), input /2 only 7.8 G (4x fewer).
    m = create_model("resnet20")
    full = step_flops(m, (128, 3, 32, 32), reduced=False)
    input_only = step_flops(m, (128, 3, 32, 32), reduced=True, kernel={"mode": "none"})
    pooled = step_flops(m, (128, 3, 32, 32), reduced=True)
    assert full == pytest.approx(31.2e9, rel=0.02)
    assert full / input_only == pytest.approx(4.0, rel=0.02)
    assert pooled < input_only / 1.8  # 3x3 -> 2x2 kernels cut FLOPs by about (4/9) more


def test_counting_on_a_small_batch_is_exact():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    _CACHE.clear()
    small = step_flops(m, (6, 3, 10, 10), reduced=False, count_batch=2)
    _CACHE.clear()
    real = step_flops(m, (6, 3, 10, 10), reduced=False, count_batch=6)
    # conv forward 2*N*8*3*9*100, backward (input and weight grads) twice that; linear 3x 2*N*8*5
    n = 6
    expected = 3 * (2 * n * 8 * 3 * 9 * 100) + 3 * (2 * n * 8 * 5)
    # the first conv needs no input gradient: torch skips it
    expected -= 2 * n * 8 * 3 * 9 * 100
    assert small == real == expected


def test_counting_leaves_the_model_untouched():
    m = create_model("resnet20")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    _CACHE.clear()
    step_flops(m, (4, 3, 32, 32), reduced=False)
    step_flops(m, (4, 3, 32, 32), reduced=True)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(p.grad is None for p in m.parameters())


def test_input_shapes_come_from_the_spec():
    assert spec_input_shape(JobSpec.parse({"data": {"dataset": "fashion-mnist"}})) == ((1, 28, 28), 60000)
    assert spec_input_shape(JobSpec.parse({"data": {"dataset": "synthetic", "image_size": 16, "synthetic_size": 100}})) == ((3, 16, 16), 100)
    # An image folder's shape is the caller's, when given: nothing is read.
    spec = JobSpec.parse({"data": {"dataset": "imagefolder", "root": "/nonexistent.tar.gz", "train_subset": 50}})
    assert spec_input_shape(spec, data_shape=((1, 20, 24), 80)) == ((1, 20, 24), 50)


def _archive(tmp_path, size=(12, 9), grey=False, fmt="JPEG"):
    import io
    import tarfile

    from PIL import Image

    path = tmp_path / "mini.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("test", 2), ("train", 5)):  # the test split first: the probe must not care
            for i in range(n):
                buf = io.BytesIO()
                Image.new("L" if grey else "RGB", size).save(buf, format=fmt)
                info = tarfile.TarInfo(f"mini/{split}/{'ab'[i % 2]}/{i}.{fmt.lower()}")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def test_imagefolder_shape_comes_from_the_data_set_itself(tmp_path):
    from dynds_core.data import DataError, data_policy, imagefolder

    archive = _archive(tmp_path, size=(12, 9))
    spec = JobSpec.parse({"data": {"dataset": "imagefolder", "root": str(archive)}, "train": {"batch_size": 2}})
    assert spec_input_shape(spec) == ((3, 9, 12), 5)
    est = estimate_spec(spec)
    assert est["data_bytes"] == (5 + 2) * 3 * 9 * 12
    grey = tmp_path / "g"
    grey.mkdir()
    grey_archive = str(_archive(grey, (7, 5), grey=True, fmt="PNG"))
    assert spec_input_shape(JobSpec.parse({"data": {"dataset": "imagefolder", "root": grey_archive}})) == ((1, 5, 7), 5)
    # A decoded cache answers without opening the archive.
    imagefolder._PROBED.clear()
    from dynds_core.data import load_dataset

    load_dataset(spec.data, cache_dir=tmp_path / "cache")
    assert imagefolder.probe_imagefolder(archive, cache_dir=tmp_path / "cache") == ((3, 9, 12), 5, 2)
    assert imagefolder._PROBED == {}
    with pytest.raises(DataError, match="needs data.root"):
        spec_input_shape(JobSpec.parse({"data": {"dataset": "imagefolder"}}))
    with pytest.raises(DataError, match="does not exist"):
        spec_input_shape(JobSpec.parse({"data": {"dataset": "imagefolder", "root": str(tmp_path / "none.tar.gz")}}))
    with data_policy(allowed_roots=[tmp_path / "elsewhere"]), pytest.raises(DataError, match="outside the allowed"):
        spec_input_shape(spec)
    # Counting an archive's images runs under the estimate's time limit.
    from dynds_core.flops import EstimateTimeout

    imagefolder._PROBED.clear()
    with pytest.raises(EstimateTimeout):
        spec_input_shape(spec, timeout_s=0)


def test_estimate_spec_predicts_saving_from_schedule_and_flops():
    spec = JobSpec.parse(
        {"data": {"dataset": "synthetic", "image_size": 16}, "dynds": {"schedule": {"kind": "periodic", "every": 2}}, "train": {"batch_size": 32}}
    )
    est = estimate_spec(spec)
    assert est["reduced_fraction"] == pytest.approx(0.5)
    assert est["flops_reduced_step"] < est["flops_full_step"] / 4
    assert est["predicted_flop_saving"] == pytest.approx(0.5 * (1 - est["flops_reduced_step"] / est["flops_full_step"]))


def test_estimate_spec_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    estimate_spec(JobSpec.parse({"model": {"arch": "resnet32"}, "data": {"dataset": "cifar10"}}))
    assert torch.equal(torch.rand(3), expected)


def test_estimate_spec_counts_separate_bn_like_frozen():
    # estimate_spec builds a fresh model: bn="separate" must not need attach_separate_bn from the caller.
    base = {"data": {"dataset": "synthetic", "image_size": 16}, "train": {"batch_size": 32}}
    _CACHE.clear()  # counts are cached without bn: make this one count afresh
    separate = estimate_spec(JobSpec.parse({**base, "dynds": {"bn": "separate"}}))
    frozen = estimate_spec(JobSpec.parse(base))
    assert separate["flops_reduced_step"] == frozen["flops_reduced_step"] > 0


def test_estimate_spec_counts_where_a_map_is_1x1():
    # A torchvision ResNet's last stage is 1x1 at 32x32: counted on one sample, BatchNorm saw one value per
    # channel and raised in training mode (a 500 from the API); a job's batches hold >= 2 and train.
    est = estimate_spec(JobSpec.parse({"model": {"arch": "resnet18"}, "train": {"batch_size": 8}}))
    assert est["flops_full_step"] > est["flops_reduced_step"] > 0


def test_the_first_feature_map_decides_the_smallest_reduced_input():
    from dynds_core.flops import first_map_side, reduced_input_problem, smallest_reduced_side

    # CIFAR ResNets and small_input keep the input's size in the stem; a torchvision stem (7x7 stride 2) halves it.
    assert [first_map_side("resnet20", 3, False, s) for s in (1, 2, 3)] == [1, 2, 3]
    assert [first_map_side("resnet18", 3, False, s) for s in (1, 2, 3, 4)] == [1, 1, 2, 2]
    assert (smallest_reduced_side("resnet20"), smallest_reduced_side("resnet50"), smallest_reduced_side("resnet50", small_input=True)) == (2, 3, 2)
    spec = JobSpec.parse({"data": {"image_size": 8}, "dynds": {"input": {"factor": 8}}})
    assert "dynds.input.factor 4 or less, or data.image_size 16 or more" in reduced_input_problem(spec, (3, 8, 8))
    assert reduced_input_problem(spec, (3, 16, 16)) is None
