"""downsample_input and pool_kernel: shapes, values, tap sums and hand-derived gradients."""

import pytest
import torch
import torch.nn.functional as F

from dynds_core.ops import downsample_input, pad_amounts, pool_kernel, pooling_matrix

# ---- downsample_input -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["avg", "bilinear", "nearest"])
@pytest.mark.parametrize("size,factor,expected", [(32, 2, 16), (33, 2, 16), (64, 4, 16), (28, 3, 9)])
def test_downsample_input_shapes(mode, size, factor, expected):
    x = torch.randn(2, 3, size, size + 2)
    out = downsample_input(x, factor, mode)
    assert out.shape == (2, 3, expected, (size + 2) // factor)


def test_downsample_input_avg_is_block_mean():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = downsample_input(x, 2, "avg")
    assert torch.equal(out, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))


def test_downsample_input_bilinear_antialiased_keeps_flat_and_smooths():
    flat = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(downsample_input(flat, 2, "bilinear"), torch.full((1, 2, 4, 4), 3.0))
    # A checkerboard has mean 0.5: antialiasing averages it out, plain sampling would not.
    board = (torch.arange(8).view(-1, 1) + torch.arange(8)).remainder(2).float().view(1, 1, 8, 8)
    assert downsample_input(board, 2, "bilinear").sub(0.5).abs().max() < 0.2


def test_downsample_input_nearest_picks_pixels():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(downsample_input(x, 2, "nearest"), x[:, :, ::2, ::2])


def test_downsample_input_factor_one_returns_input():
    x = torch.randn(1, 3, 8, 8)
    assert downsample_input(x, 1) is x


@pytest.mark.parametrize("factor", [0, -2, 1.5, True, "2"])
def test_downsample_input_bad_factor_names_it(factor):
    with pytest.raises(ValueError, match=f"factor must be an integer >= 1: {factor!r}"):
        downsample_input(torch.randn(1, 1, 8, 8), factor)


def test_downsample_input_bad_mode_and_shape():
    with pytest.raises(ValueError, match="'bicubic'"):
        downsample_input(torch.randn(1, 1, 8, 8), 2, "bicubic")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        downsample_input(torch.randn(8, 8), 2)
    with pytest.raises(ValueError, match="too large"):
        downsample_input(torch.randn(1, 1, 3, 3), 4)


# ---- pool_kernel: shapes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k,kwargs,expected",
    [
        (3, dict(mode="avg"), (2, 2)),
        (5, dict(mode="avg"), (4, 4)),
        (7, dict(mode="avg"), (6, 6)),
        (3, dict(mode="avg", stride=2), (2, 2)),
        (7, dict(mode="avg", stride=2), (4, 4)),
        (5, dict(mode="avg", window=3, stride=2), (2, 2)),
        (3, dict(mode="max", scale="none"), (2, 2)),
        (7, dict(mode="max", stride=2, scale="none"), (4, 4)),
        (3, dict(mode="resize", size=(2, 2)), (2, 2)),
        (7, dict(mode="resize", size=(3, 4)), (3, 4)),
    ],
)
def test_pool_kernel_shapes(k, kwargs, expected):
    w = torch.randn(4, 3, k, k)
    assert pool_kernel(w, **kwargs).shape == (4, 3, *expected)


@pytest.mark.parametrize("shape", [(4, 3, 1, 1), (4, 3, 1, 3), (4, 3, 3, 1)])
def test_pool_kernel_leaves_small_kernels_alone(shape):
    w = torch.randn(*shape)
    assert pool_kernel(w) is w


def test_pool_kernel_none_returns_weight():
    w = torch.randn(4, 3, 3, 3)
    assert pool_kernel(w, "none") is w


# ---- pool_kernel: values --------------------------------------------------------------------------


def test_avg_sum_spreads_each_tap_over_its_windows():
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    out = pool_kernel(w)
    # Corner taps sit in one window, edge taps in two, the centre in four.
    expected00 = w[..., 0, 0] + w[..., 0, 1] / 2 + w[..., 1, 0] / 2 + w[..., 1, 1] / 4
    expected12 = w[..., 1, 1] / 4 + w[..., 1, 2] / 2 + w[..., 2, 1] / 2 + w[..., 2, 2]
    assert torch.allclose(out[..., 0, 0], expected00)
    assert torch.allclose(out[..., 1, 1], expected12)


@pytest.mark.parametrize(
    "k,kwargs",
    [
        (3, dict(mode="avg")),
        (5, dict(mode="avg")),
        (7, dict(mode="avg", stride=2)),
        (3, dict(mode="avg", stride=2)),
        (5, dict(mode="avg", window=3, stride=3)),
        (7, dict(mode="resize", size=(2, 2))),
        (3, dict(mode="resize", size=(5, 4))),
    ],
)
def test_scale_sum_keeps_each_filters_tap_sum(k, kwargs):
    w = torch.randn(5, 4, k, k, dtype=torch.float64)
    out = pool_kernel(w, **kwargs)
    assert torch.allclose(out.sum((-1, -2)), w.sum((-1, -2)), atol=1e-12)
    # ... hence a flat input's response is unchanged.
    flat = torch.ones(1, 4, 12, 12, dtype=torch.float64)
    assert torch.allclose(F.conv2d(flat, out)[..., 5, 5], F.conv2d(flat, w)[..., 5, 5], atol=1e-12)


def test_avg_scale_none_is_plain_average():
    w = torch.arange(9.0).view(1, 1, 3, 3)
    out = pool_kernel(w, scale="none")
    assert torch.equal(out, torch.tensor([[[[2.0, 3.0], [5.0, 6.0]]]]))


def test_avg_stride2_ceil_keeps_partial_last_window():
    w = torch.arange(9.0).view(1, 1, 3, 3)
    # Windows per dim: taps {0, 1} and {2}.
    assert torch.equal(pool_kernel(w, stride=2, scale="none"), torch.tensor([[[[2.0, 3.5], [6.5, 8.0]]]]))
    assert torch.equal(pool_kernel(w, stride=2, scale="sum"), torch.tensor([[[[8.0, 7.0], [13.0, 8.0]]]]))


def test_max_takes_window_maxima():
    w = torch.tensor([[[[1.0, -5.0, 2.0], [0.0, 3.0, -1.0], [4.0, -2.0, 0.5]]]])
    assert torch.equal(pool_kernel(w, "max", scale="none"), torch.tensor([[[[3.0, 3.0], [4.0, 3.0]]]]))


def test_resize_to_same_size_is_identity():
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    assert torch.allclose(pool_kernel(w, "resize", size=(3, 3), scale="none"), w)


def test_pooling_matrix_is_cached():
    a = pooling_matrix(3, 3, "avg", 2, 1, None, "sum")
    assert a is pooling_matrix(3, 3, "avg", 2, 1, None, "sum")
    assert a.shape == (4, 9)
    assert torch.allclose(a.sum(0), torch.ones(9))


# ---- pool_kernel: gradients -----------------------------------------------------------------------


def test_avg_sum_gradient_is_hand_derived():
    w = torch.randn(1, 1, 3, 3, requires_grad=True)
    g = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    pool_kernel(w).backward(g)
    # Each tap receives the mean of the output-tap grads of the windows containing it.
    expected = torch.tensor([[1.0, 1.5, 2.0], [2.0, 2.5, 3.0], [3.0, 3.5, 4.0]])
    assert torch.allclose(w.grad[0, 0], expected)
    assert w.grad[0, 0, 1, 1] == g.mean()


def test_avg_none_gradient_is_hand_derived():
    w = torch.randn(1, 1, 3, 3, requires_grad=True)
    g = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    pool_kernel(w, scale="none").backward(g)
    # Each window averages 4 taps: a tap gets a quarter of every window's grad it belongs to.
    expected = torch.tensor([[1.0, 3.0, 2.0], [4.0, 10.0, 6.0], [3.0, 7.0, 4.0]]) / 4
    assert torch.allclose(w.grad[0, 0], expected)


def test_max_gradient_goes_to_argmax_taps():
    w = torch.tensor([[[[1.0, -5.0, 2.0], [0.0, 3.0, -1.0], [4.0, -2.0, 0.5]]]], requires_grad=True)
    pool_kernel(w, "max", scale="none").backward(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
    expected = torch.zeros(3, 3)
    expected[1, 1] = 1 + 2 + 4  # the centre is the max of three windows
    expected[2, 0] = 3
    assert torch.equal(w.grad[0, 0], expected)


@pytest.mark.parametrize("kwargs", [dict(), dict(stride=2), dict(mode="resize", size=(2, 3)), dict(scale="none")])
def test_linear_modes_pass_gradcheck(kwargs):
    w = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: pool_kernel(t, **kwargs), (w,))


# ---- pool_kernel: bad arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mode="median"), "'median'"),
        (dict(scale="mean"), "'mean'"),
        (dict(mode="max"), "scale='none'"),
        (dict(mode="resize"), "size"),
        (dict(mode="resize", size=(0, 2)), r"\(0, 2\)"),
        (dict(window=1), "window must be an integer >= 2: 1"),
        (dict(stride=3), "stride must be an integer from 1 to the window \\(2\\): 3"),
        (dict(window=4), "window 4 is larger than a 3x3 kernel"),
    ],
)
def test_pool_kernel_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pool_kernel(torch.randn(2, 2, 3, 3), **kwargs)


# ---- pad_amounts -----------------------------------------------------------------------------------


def test_pad_amounts_even_kernel_stride1_pads_one_side():
    assert pad_amounts(16, 16, 2, 1, 1, 0.5, extra_at_end=True) == (0, 1)
    assert pad_amounts(16, 16, 2, 1, 1, 0.5, extra_at_end=False) == (1, 0)


def test_pad_amounts_stride2_2x2_on_16_needs_no_pad():
    assert pad_amounts(16, 8, 2, 2, 1, 0.5, extra_at_end=True) == (0, 0)
    # The other side: pad one before, crop one after.
    assert pad_amounts(16, 8, 2, 2, 1, 0.5, extra_at_end=False) == (1, -1)


def test_pooling_matrix_cache_is_bounded(monkeypatch):
    from dynds_core import ops

    monkeypatch.setattr(ops, "MATRIX_CACHE_SIZE", 4)
    ops._MATRIX_CACHE.clear()
    first = ops.pooling_matrix(3, 3)
    for k in range(4, 12):
        ops.pooling_matrix(k, k)
    assert len(ops._MATRIX_CACHE) == 4
    assert ops.pooling_matrix(3, 3) is not first  # evicted, built again (least recently used out)
    again = ops.pooling_matrix(3, 3)
    assert ops.pooling_matrix(3, 3) is again  # a hit
    ops._MATRIX_CACHE.clear()


def test_flop_cache_is_bounded(monkeypatch):
    from dynds_core import flops

    monkeypatch.setattr(flops, "CACHE_SIZE", 2)
    flops._CACHE.clear()
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    for size in (8, 9, 10, 11):
        flops.step_flops(m, (1, 3, size, size), reduced=False)
    assert len(flops._CACHE) == 2
    flops._CACHE.clear()


def test_estimate_counts_on_meta_within_a_time_limit():
    from dynds_core import flops
    from dynds_core.spec import JobSpec

    spec = JobSpec.parse({"model": {"arch": "resnet56"}, "data": {"dataset": "synthetic", "image_size": 512}})
    flops._CACHE.clear()
    with pytest.raises(flops.EstimateTimeout):
        flops.estimate_spec(spec, timeout_s=0.0)
    est = flops.estimate_spec(spec)
    from dynds_core.models import create_model

    real = flops.step_flops(create_model("resnet56"), (128, 3, 512, 512), reduced=False, count_batch=1)
    assert est["flops_full_step"] == real  # meta counts what a real (CPU) count gives
    # ~13 GB of activations at batch 128, 512x512: predicted, never allocated
    assert est["activation_bytes_per_step"] > 5e9 and est["predicted_memory_bytes"] > est["activation_bytes_per_step"]
    flops._CACHE.clear()
