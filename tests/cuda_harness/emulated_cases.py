"""The CUDA kernels run by the CPU harness (docs/harness.md), against the CPU driver (the
installed ops on CPU tensors). Run by tests/test_cuda_emulated.py in a subprocess that preloads
the AddressSanitizer runtime; not collected on its own (the file name does not start with test_).

Tolerances, derived from the arithmetic:
- forward: the waves are correctly rounded quotients on both sides (bitwise equal); the output
  sum x + sum_i s_i W_i rounds once per layer on each side (FMA or not), so
  |difference| <= 2 D u (|x| + sum_i |s_i|) with u the unit roundoff.
- gradients: the same per-point terms summed in another order (per lane over a warp's tiles, a
  transposing warp butterfly, then the seed's warps in order, against the CPU's lane tiles and
  blocks): each order rounds at most N - 1 times, so |difference| <= 2 (N + 32) u sum_n |term_n|
  per parameter; the per-point terms come from the CPU op with one seed per point. The smooth
  chain rule then mixes neighbouring layers (factor 2 D on the bound).
- fused training: bitwise equal to the same harness's loss_and_grad followed by
  compnet_ext.optim.BatchedAdam (the same IEEE operations in the same order; the README's
  standard for the CPU driver).
"""
import os

import pytest
import torch

import compnet_ext
import harness
from compnet_ext.optim import BatchedAdam
from conftest import make_problem

ops = torch.ops.compnet_ext
SEED = int(os.environ.get("COMPNET_HARNESS_SEED", "1"))


@pytest.fixture(autouse=True)
def _device():
    harness.set_seed(SEED)
    harness.set_optin_smem(227 * 1024)


def u(dtype):
    return torch.finfo(dtype).eps / 2


def _problem(S, D, N, dtype, free, shared_x, seed=5):
    x, peaks, scales = make_problem(S, D, N, dtype=dtype, free=free, shared_x=shared_x, seed=seed)
    return x, peaks, scales


# (S, D, N): S = 1 and S not a multiple of the 4 warps per block; N = 1 and N across 32; D = 1 and
# across the register chunk (32 in float, 16 in double) and across the smaller chunks of shallow
# nets (8 up to D = 8, then 16: csrc/compnet/kernels.h, sweep_chunk).
F32, F64 = torch.float32, torch.float64
SHAPES = [(1, 1, 1), (3, 8, 40), (2, 9, 45), (4, 16, 40), (2, 17, 45), (5, 31, 33), (3, 32, 32),
          (6, 33, 70), (2, 70, 40)]


def _per_point_abs(x, peaks, scales, sign, gy):
    """sum over points of |per-point gradient term|, [S, D+1] and [S, D] (None when smooth)."""
    S, N = gy.shape
    xs = (x.expand(S, N) if x.dim() == 1 else x).reshape(-1, 1).contiguous()
    rep = lambda t: None if t is None else t.repeat_interleave(N, 0)
    _, gp, gs = ops.backward(gy.reshape(-1, 1).contiguous(), xs, rep(peaks), rep(scales), sign,
                             False, True, scales is not None)
    gs = gs.abs().view(S, N, -1).sum(1) if scales is not None else None
    return gp.abs().view(S, N, -1).sum(1), gs


def _grad_tol(x, peaks, scales, sign, gy):
    S, N = gy.shape
    D = peaks.shape[1] - 1
    ap, as_ = _per_point_abs(x, peaks, scales, sign, gy)
    k = 2 * (N + 32) * u(peaks.dtype) * (2 * D if scales is None else 1)
    tiny = torch.finfo(peaks.dtype).tiny
    return k * ap + tiny, None if as_ is None else k * as_ + tiny


def _assert_close(got, want, tol, what):
    bad = (got - want).abs() > tol
    assert not bad.any(), f"{what}: {int(bad.sum())} values beyond tolerance, max diff " \
        f"{(got - want).abs().max().item():.3g}, tol there {tol.flatten()[bad.flatten()][0].item():.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("S,D,N", SHAPES)
@pytest.mark.parametrize("free", [False, True])
def test_forward(dtype, S, D, N, free):
    x, peaks, scales = _problem(S, D, N, dtype, free, shared_x=(S % 2 == 1))
    for sign in (-1, 1):
        got = harness.forward(x, peaks, scales, sign)
        want = ops.forward(x, peaks, scales, sign, True)
        s = scales if free else compnet_ext.smooth_scales(peaks, sign)
        tol = 2 * D * u(dtype) * (x.abs().max() + s.abs().sum(1, keepdim=True))
        _assert_close(got, want, tol, "forward")
        assert torch.equal(got, harness.forward(x, peaks, scales, sign)), "not deterministic"


# The forward kernel reads each layer's Tri (and smooth scales) from tables in shared memory when
# the seeds a block spans fit 48 KiB, else constructs them per point (csrc/compnet/kernels.cu:
# forward_table_bytes): at D = 400 in double, N = 300 takes the tables (2 seeds a block) and
# N = 40 does not (8 seeds). A point's output does not depend on N: the same bits either way.
@pytest.mark.parametrize("free", [False, True])
def test_forward_with_and_without_tables(free):
    x, peaks, scales = _problem(2, 400, 300, torch.float64, free, shared_x=False)
    for sign in (-1, 1):
        tables = harness.forward(x, peaks, scales, sign)
        per_point = harness.forward(x[:, :40].contiguous(), peaks, scales, sign)
        assert torch.equal(tables[:, :40], per_point)
        want = ops.forward(x[:, :40].contiguous(), peaks, scales, sign, True)
        s = scales if free else compnet_ext.smooth_scales(peaks, sign)
        tol = 2 * 400 * u(torch.float64) * (x.abs().max() + s.abs().sum(1, keepdim=True))
        _assert_close(per_point, want, tol, "forward")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("S,D,N", SHAPES)
@pytest.mark.parametrize("free", [False, True])
def test_loss_and_grad(dtype, S, D, N, free):
    x, peaks, scales = _problem(S, D, N, dtype, free, shared_x=(S % 2 == 1))
    target = x**3
    sign = -1 if D % 2 else 1
    got = harness.backward(x, peaks, scales, sign, target, loss_mode=True)
    loss, gp, gs = ops.loss_and_grad(x, target, peaks, scales, sign, True)
    y = ops.forward(x, peaks, scales, sign, True)
    gy = (2 * (y - target) / N).expand(S, N)
    tp, ts = _grad_tol(x, peaks, scales, sign, gy)
    sq = ((y - target) ** 2).expand(S, N)
    _assert_close(got[0], loss, 2 * (N + 32) * u(dtype) * sq.sum(1) / N + 1e-300, "loss")
    _assert_close(got[2][:, :D], gp[:, :D], tp[:, :D], "g_peaks")
    if free:  # the last peak is unused with free scales: a zero gradient on both sides
        assert (got[2][:, D] == 0).all() and (gp[:, D] == 0).all()
    if free:
        _assert_close(got[3], gs, ts, "g_scales")
    again = harness.backward(x, peaks, scales, sign, target, loss_mode=True)
    assert all(a is None or torch.equal(a, b) for a, b in zip(got, again)), "not deterministic"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("S,D,N", [(5, 33, 70), (1, 1, 1), (4, 16, 17), (1, 5, 600)])
@pytest.mark.parametrize("free", [False, True])
def test_backward(dtype, S, D, N, free):
    x, peaks, scales = _problem(S, D, N, dtype, free, shared_x=False)
    gy = torch.randn(S, N, dtype=dtype, generator=torch.Generator().manual_seed(3))
    sign = -1
    _, gx, gp, gs = harness.backward(x, peaks, scales, sign, gy, loss_mode=False)
    wx, wp, ws = ops.backward(gy, x, peaks, scales, sign, True, True, free)
    # dL/dx is per point: the same sweep on both sides, a chain of D FMAs.
    _assert_close(gx, wx, 4 * D * u(dtype) * wx.abs().max(1, keepdim=True)[0] * D + 1e-300, "gx")
    tp, ts = _grad_tol(x, peaks, scales, sign, gy)
    _assert_close(gp, wp, tp, "g_peaks")
    if free:
        _assert_close(gs, ws, ts, "g_scales")
    _assert_shared_row_reads_as_rows(
        lambda head: harness.backward(x, peaks, scales, sign, head, loss_mode=False), gy[0], S)


def _assert_shared_row_reads_as_rows(backward, row, S):
    """One grad_y row [N] for every seed (how the ops read an expand: common/tensors.h,
    points_arg) gives the bits of that row repeated S times."""
    for a, b in zip(backward(row), backward(row.expand(S, -1).contiguous())):
        assert (a is None and b is None) or torch.equal(a, b)


# ---- a seed's points over several warps (csrc/common/launch_config.h: warps_per_seed) -------

def test_warps_per_seed_rule():
    # one per tile of 32 points, at most 16, enough to fill 2,112 warps; never the device's
    # (the harness reports an H100; the rule has no device input at all)
    assert [harness.warps_per_seed(1, n) for n in (0, 1, 32, 33, 500, 1000)] == [1, 1, 1, 2, 16, 16]
    assert [harness.warps_per_seed(s, 1000) for s in (1, 132, 133, 600, 2111, 2112, 10**5)] == \
        [16, 16, 16, 4, 2, 1, 1]
    assert harness.warps_per_seed(30, 500) == 16 and harness.warps_per_seed(120, 500) == 16
    # the compositional sweeps (compnet/kernels.h: sweep_lane_points): a lane takes two points
    # at a time (tiles of 64) in float up to the 16-layer chunk where warps would otherwise
    # sweep several tiles of 32 one after another; else one
    sweep = harness.sweep_warps
    assert [sweep(30, 500, D, F32) for D in (1, 5, 16, 17, 40)] == [(16, 1)] * 5
    assert [sweep(1, n, 5, F32) for n in (1, 64, 512, 513, 1000, 2048, 3000)] == \
        [(1, 1), (2, 1), (16, 1), (9, 2), (16, 2), (16, 2), (16, 2)]
    assert [sweep(s, 500, 16, F32) for s in (132, 141, 300, 2111, 2112, 4096)] == \
        [(16, 1), (8, 2), (8, 2), (2, 2), (1, 2), (1, 2)]
    assert [sweep(s, 500, D, dt) for s, D, dt in ((4096, 17, F32), (4096, 5, F64))] == [(1, 1)] * 2
    # double: one point per lane, at most 16 warps, or 8 in a COMPNET_FP64_WARPS=8 build
    cap = harness.sweep_max_warps(F64)
    assert harness.sweep_max_warps(F32) == 16 and cap in (8, 16)
    assert [sweep(30, 500, D, F64) for D in (1, 5, 16, 17)] == [(cap, 1)] * 4
    assert [sweep(1, n, 5, F64) for n in (100, 1000)] == [(4, 1), (cap, 1)]


# (S, D, N, dtype, free): a seed on several warps (W = 2..16, uneven tiles per warp: N = 500
# gives 16 warps, the last with 20 points; N = 1000 gives 2 tiles per warp, or in float up to
# D = 16 one tile of two points per lane, N = 600 10 such tiles, the last partly in its second
# point); D across the register chunk (32 float, 16 double: one chunk, several chunks with the
# carry of gy and lambda between them).
SPLIT_SHAPES = [(1, 5, 33, F32, False), (1, 5, 600, F32, True), (2, 16, 1000, F32, False),
                (2, 17, 500, F64, True), (3, 33, 1000, F32, True),
                (1, 70, 1000, F64, False), (2, 1, 100, F32, True), (3, 33, 500, F64, False),
                (2, 32, 64, F32, False), (2, 5, 500, F64, True)]


@pytest.mark.parametrize("S,D,N,dtype,free", SPLIT_SHAPES)
def test_split_seeds(S, D, N, dtype, free):
    assert harness.sweep_warps(S, N, D, dtype)[0] > 1
    test_loss_and_grad(dtype, S, D, N, free)
    x, peaks, scales = _problem(S, D, N, dtype, free, shared_x=False)
    harness.set_seed(SEED + 1)  # another order of blocks and of the lanes between meetings
    a = harness.backward(x, peaks, scales, -1, x**3, loss_mode=True)
    harness.set_seed(SEED + 2)
    b = harness.backward(x, peaks, scales, -1, x**3, loss_mode=True)
    assert all(u is None or torch.equal(u, v) for u, v in zip(a, b)), "order-dependent"


def test_one_warp_per_seed_from_the_boundary_on():
    # the first S with one warp per seed for N > 32 (four seeds per block); the last S with two
    # is 2111 (test_warps_per_seed_rule; running it here would cost 15 s of fibers, and the
    # two-warp path is the one test_split_seeds runs)
    S, N = 2112, 65  # in float: two points per lane, tiles of 64
    assert harness.sweep_warps(S, N, 1, F32) == (1, 2)
    assert harness.sweep_warps(S - 1, N, 1, F32) == (2, 2)
    x, peaks, scales = _problem(S, 1, N, F32, True, shared_x=True)
    target = x**3
    got = harness.backward(x, peaks, scales, 1, target, loss_mode=True)
    loss, gp, gs = ops.loss_and_grad(x, target, peaks, scales, 1, True)
    y = ops.forward(x, peaks, scales, 1, True)
    tp, ts = _grad_tol(x, peaks, scales, 1, 2 * (y - target) / N)
    _assert_close(got[2][:, :1], gp[:, :1], tp[:, :1], "g_peaks")
    _assert_close(got[3], gs, ts, "g_scales")


def _step_by_step(x, target, peaks, scales, sign, epochs, lr, bounds, record_every):
    """The harness's loss_and_grad + BatchedAdam + clamp, one launch per step."""
    params = [peaks.clone()] + ([scales.clone()] if scales is not None else [])
    opt = BatchedAdam(params, lr)
    curve = []
    for epoch in range(epochs):
        s = params[1] if scales is not None else None
        loss, _, gp, gs = harness.backward(x, params[0], s, sign, target, loss_mode=True)
        if record_every and epoch % record_every == 0:
            curve.append(loss)
        opt.step([gp] + ([gs] if scales is not None else []))
        params[0].clamp_(*bounds)
    s = params[1] if scales is not None else None
    final = harness.backward(x, params[0], s, sign, target, loss_mode=True)[0]
    state = torch.cat([torch.stack([m, v], 1) for m, v in zip(opt.m, opt.v)], 2)
    return params[0], s, final, torch.stack(curve, 1), state


# The plans (common/launch_config.h: train_plan) as (seeds per block, warps per seed, spilled):
# four one-warp seeds in the default 48 KiB; one seed per block when four do not fit (double,
# N = 3: D >= 97), with the opt-in attribute when even one needs more than 48 KiB (D >= 433);
# spilled, on a device whose opt-in limit is lowered below the workspace (the H100's 227 KiB
# would need D >= 2065); and a seed on several warps (N > 32) in each placement, in float and
# double.
PLANS = {"default": ((5, 33, 17), torch.float64, (4, 1, False)),
         "one_seed": ((2, 400, 5), torch.float64, (1, 1, False)),
         "optin": ((1, 1600, 2), torch.float64, (1, 1, False)),
         "spill": ((5, 400, 3), torch.float64, (4, 1, True)),
         "split": ((3, 33, 70), torch.float64, (1, 3, False)),
         "split_f32": ((2, 40, 100), torch.float32, (1, 4, False)),
         # kernels.h: sweep_chunk's 16- and 8-layer chunks, float's two points per lane
         "half_chunk_f32": ((5, 16, 45), torch.float32, (1, 2, False)),
         "paper_depth_f32": ((3, 5, 70), torch.float32, (1, 3, False)),
         "two_points_f32": ((1, 16, 600), torch.float32, (1, 10, False)),  # sweep_lane_points
         "paper_depth": ((3, 5, 70), torch.float64, (1, 3, False)),
         "split_optin": ((1, 700, 40), torch.float64, (1, 2, False)),
         "split_spill": ((2, 700, 40), torch.float64, (1, 2, True))}


@pytest.mark.parametrize("plan", list(PLANS))
@pytest.mark.parametrize("free", [False, True])
def test_train_peaks(plan, free):
    (S, D, N), dtype, (seeds, warps, spill) = PLANS[plan]
    if plan.endswith("spill"):
        harness.set_optin_smem(8 * 1024)
    x, peaks, _ = _problem(S, D, N, dtype, False, shared_x=True)
    scales = compnet_ext.smooth_scales(peaks, -1) * 1.2 if free else None
    target = x**3
    bounds, epochs, lr = (1e-4, 1 - 1e-4), 2 if D < 600 else 1, 0.02
    *got, got_plan = harness.train_peaks(x, target, peaks, scales, -1, epochs=epochs, lr=lr,
                                         betas=(0.9, 0.999), eps=1e-8, peak_bounds=bounds,
                                         record_every=2)
    assert (got_plan[0], got_plan[3], bool(got_plan[2])) == (seeds, warps, spill)
    assert (got_plan[1] > 48 * 1024) == plan.endswith("optin")
    want = _step_by_step(x, target, peaks, scales, -1, epochs, lr, bounds, 2)
    for name, a, b in zip(("peaks", "scales", "loss", "curve", "state"), got, want):
        assert (a is None and b is None) or torch.equal(a, b), f"{name} differs from step by step"
    harness.set_seed(SEED + 3)  # another block and lane order: the same bits
    *again, _ = harness.train_peaks(x, target, peaks, scales, -1, epochs=epochs, lr=lr,
                                    betas=(0.9, 0.999), eps=1e-8, peak_bounds=bounds,
                                    record_every=2)
    for name, a, b in zip(("peaks", "scales", "loss", "curve", "state"), got, again):
        assert (a is None and b is None) or torch.equal(a, b), f"{name}: order-dependent"


# ---- MLP ---------------------------------------------------------------------------------------

def _mlp(widths, S, N, dtype, shared_x, seed=7):
    g = torch.Generator().manual_seed(seed)
    P = sum(widths[i] * widths[i + 1] + widths[i + 1] for i in range(len(widths) - 1))
    params = (torch.rand(S, P, generator=g, dtype=torch.float64) - 0.5).to(dtype)
    x = torch.rand(N if shared_x else (S, N), generator=g, dtype=torch.float64).to(dtype)
    return x, params


# Widths at the limits: one unit, the widest (16), the deepest (64 hidden layers); the small and
# the large per-thread activation buffers (units <= 64 and beyond).
# Nets with per-lane sums (P <= 256, csrc/mlp/kernels.h) on 1 to 16 warps per seed, among them
# the paper's 4x5 net at N = 500 and 1000 (16 warps); larger nets (one warp, reductions every 32
# points).
PAPER = (1, 4, 4, 4, 4, 4, 1)
MLP_CASES = [((1, 1), 1, 1), ((1, 16, 1), 5, 33), ((1, 3, 5, 1), 6, 70), ((1, 3, 5, 1), 1, 1),
             ((1,) + (16,) * 5 + (1,), 2, 33), ((1,) + (1,) * 64 + (1,), 5, 33),
             (PAPER, 2, 500), (PAPER, 1, 1000), ((1, 8, 8, 8, 1), 3, 100)]


def _mlp_tol(x, params, widths, gy):
    S, N = gy.shape
    xs = (x.expand(S, N) if x.dim() == 1 else x).reshape(-1, 1).contiguous()
    per_point = lambda g, xx, p: ops.mlp_backward(  # noqa: E731
        g.reshape(-1, 1).contiguous(), xx, p.repeat_interleave(N, 0), list(widths), False)[1]
    # Summation order: N + 32 terms summed in a different order, each term as the driver has it.
    tol = 2 * (N + 32) * u(params.dtype) * per_point(gy, xs, params).abs().view(S, N, -1).sum(1)
    if not compnet_ext._C.cpu_fma:
        # The harness computes like the GPU (FMAs), a portable CPU build without them: each
        # per-point term then differs by the rounding of its forward and backward chains, at most
        # about (layers x (width + 2)) roundings of the same computation done in absolute values
        # (|x|, |W|, |b|, |gy|: every product and sum bounded by its magnitude), first order.
        chain = 2 * (len(widths) - 1) * (max(widths) + 2)
        magnitudes = per_point(gy.abs(), xs.abs(), params.abs()).view(S, N, -1).sum(1)
        tol = tol + chain * u(params.dtype) * magnitudes
    return tol + 1e-300


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("widths,S,N", MLP_CASES)
def test_mlp_forward_and_loss_and_grad(dtype, widths, S, N):
    x, params = _mlp(widths, S, N, dtype, shared_x=(S % 2 == 1))
    y = harness.mlp_forward(x, params, widths)
    want = ops.mlp_forward(x, params, list(widths))
    # the same chain of FMAs per unit on both sides (or plain multiply-adds on a non-FMA CPU)
    P = params.shape[1]
    _assert_close(y, want, 4 * P * u(dtype) * want.abs().max() + 1e-30, "mlp_forward")
    target = torch.sin(3 * x)
    loss, _, gp = harness.mlp_backward(x, params, widths, target, loss_mode=True)
    wl, wg = ops.mlp_loss_and_grad(x, target, params, list(widths))
    gy = (2 * (want - target) / N).expand(S, N)
    _assert_close(loss, wl, 2 * (N + 32) * u(dtype) * ((want - target) ** 2).sum(1) / N + 1e-30,
                  "mlp loss")
    _assert_close(gp, wg, _mlp_tol(x, params, widths, gy), "mlp gparams")
    harness.set_seed(SEED + 1)  # another order of blocks and lanes
    again = harness.mlp_backward(x, params, widths, target, loss_mode=True)
    assert torch.equal(gp, again[2]) and torch.equal(loss, again[0]), "not deterministic"


# the paper's net: in float64 dx comes from the first of its three sweeps (csrc/mlp/kernels.cu)
@pytest.mark.parametrize("widths", [(1, 16, 1), (1, 3, 5, 1), PAPER])
def test_mlp_backward(widths):
    dtype, S, N = torch.float64, 6, 40
    x, params = _mlp(widths, S, N, dtype, shared_x=False)
    gy = torch.randn(S, N, dtype=dtype, generator=torch.Generator().manual_seed(4))
    _, gx, gp = harness.mlp_backward(x, params, widths, gy, loss_mode=False)
    wx, wp = ops.mlp_backward(gy, x, params, list(widths), True)
    P = params.shape[1]
    _assert_close(gx, wx, 4 * P * u(dtype) * wx.abs().max() + 1e-300, "mlp gx")
    _assert_close(gp, wp, _mlp_tol(x, params, widths, gy), "mlp gparams")
    _assert_shared_row_reads_as_rows(
        lambda head: harness.mlp_backward(x, params, widths, head, loss_mode=False), gy[0], S)


def _mlp_step_by_step(x, target, params, widths, epochs, lr, record_every):
    p = params.clone()
    opt = BatchedAdam([p], lr)
    curve = []
    for epoch in range(epochs):
        loss, _, g = harness.mlp_backward(x, p, widths, target, loss_mode=True)
        if record_every and epoch % record_every == 0:
            curve.append(loss)
        opt.step([g])
    final = harness.mlp_backward(x, p, widths, target, loss_mode=True)[0]
    return p, final, torch.stack(curve, 1), torch.stack([opt.m[0], opt.v[0]], 1)


# Plans as (seeds per block, warps per seed, spilled): large nets (one warp per seed, reductions
# every 32 points) in shared memory (four seeds), one seed per block (per-seed 2P doubles over
# 12 KiB), opt-in (over 48 KiB: P > 3072, 13 hidden layers of 16), spilled (a device with a
# lowered opt-in limit; on the H100 only the widest, deepest double nets spill); the paper's net
# (per-lane sums) on one warp per seed (four seeds) and on several (N > 32).
MLP_PLANS = {"default": ((1, 16, 16, 1), (5, 33, 2), (4, 1, False)),
             "one_seed": ((1,) + (16,) * 4 + (1,), (2, 3, 1), (1, 1, False)),
             "optin": ((1,) + (16,) * 13 + (1,), (1, 2, 1), (1, 1, False)),
             "spill": ((1,) + (16,) * 4 + (1,), (5, 3, 1), (4, 1, True)),
             "lane_sums": (PAPER, (5, 20, 2), (4, 1, False)),
             "lane_sums_split": (PAPER, (3, 70, 2), (1, 3, False)),
             # the paper's net gets at most 8 warps (csrc/mlp/kernels.h: kFixedShapeMaxWarps)
             "lane_sums_capped": (PAPER, (2, 300, 2), (1, 8, False)),
             # per-lane sums on the runtime-shape kernels (any other small net)
             "lane_sums_runtime": ((1, 8, 8, 1), (3, 70, 2), (1, 3, False))}
# The paper's net trains on kernels compiled for its shape (csrc/mlp/kernels.cu: PaperShape; in
# float64 sweeping its points three times, 32 of its 93 lane sums each): both dtypes.
MLP_TRAIN = [(plan, torch.float64) for plan in MLP_PLANS] + \
    [(plan, torch.float32) for plan, (widths, _, _) in MLP_PLANS.items() if widths == PAPER]


@pytest.mark.parametrize("plan,dtype", MLP_TRAIN)
def test_mlp_train(plan, dtype):
    widths, (S, N, epochs), (seeds, warps, spill) = MLP_PLANS[plan]
    if plan == "spill":
        harness.set_optin_smem(8 * 1024)
    x, params = _mlp(widths, S, N, dtype, shared_x=True)
    params = params * 0.5
    target = torch.sin(3 * x)
    *got, got_plan = harness.mlp_train(x, target, params, widths, epochs=epochs, lr=1e-2,
                                       betas=(0.9, 0.999), eps=1e-8, record_every=1)
    assert (got_plan[0], got_plan[3], bool(got_plan[2])) == (seeds, warps, spill)
    assert (got_plan[1] > 48 * 1024) == (plan == "optin")
    want = _mlp_step_by_step(x, target, params, widths, epochs, 1e-2, 1)
    for name, a, b in zip(("params", "loss", "curve", "state"), got, want):
        assert torch.equal(a, b), f"{name} differs from step by step"
    harness.set_seed(SEED + 3)
    *again, _ = harness.mlp_train(x, target, params, widths, epochs=epochs, lr=1e-2,
                                  betas=(0.9, 0.999), eps=1e-8, record_every=1)
    for name, a, b in zip(("params", "loss", "curve", "state"), got, again):
        assert torch.equal(a, b), f"{name}: order-dependent"


# The widest, deepest net (16 units, 64 hidden layers): its double workspace (2P values, P =
# 17185) exceeds even the H100's 227 KiB opt-in, so the real device limits pick the spill plan.
def test_mlp_at_the_limits():
    dtype, S, N = torch.float64, 1, 2
    widths = (1,) + (16,) * 64 + (1,)
    x, params = _mlp(widths, S, N, dtype, shared_x=True)
    params = params * 0.5
    target = torch.sin(3 * x)
    loss, _, gp = harness.mlp_backward(x, params, widths, target, loss_mode=True)
    wl, wg = ops.mlp_loss_and_grad(x, target, params, list(widths))
    want = ops.mlp_forward(x, params, list(widths))
    gy = (2 * (want - target) / N).expand(S, N)
    _assert_close(loss, wl, 2 * (N + 32) * u(dtype) * ((want - target) ** 2).sum(1) / N + 1e-300,
                  "mlp loss")
    _assert_close(gp, wg, _mlp_tol(x, params, widths, gy), "mlp gparams")
    *got, got_plan = harness.mlp_train(x, target, params, widths, epochs=1, lr=1e-2,
                                       betas=(0.9, 0.999), eps=1e-8, record_every=1)
    assert (got_plan[0], got_plan[3], bool(got_plan[2])) == (4, 1, True)
    want = _mlp_step_by_step(x, target, params, widths, 1, 1e-2, 1)
    for name, a, b in zip(("params", "loss", "curve", "state"), got, want):
        assert torch.equal(a, b), f"{name} differs from step by step"


# ---- block order ----------------------------------------------------------------------------

def test_block_order_does_not_matter():
    x, peaks, scales = _problem(9, 20, 45, torch.float32, True, shared_x=False)
    runs = []
    for seed in (1, 2):
        harness.set_seed(seed)
        runs.append(harness.backward(x, peaks, scales, -1, x**2, loss_mode=True))
    assert all(torch.equal(a, b) for a, b in zip(*runs) if a is not None)
