"""The checks of MATH.md section 3, and deep networks."""
import pytest
import torch

import compnet_ext
from compnet_ext import reference
from conftest import make_problem


@pytest.mark.parametrize("D", [1, 2, 3, 5, 8, 12, 16])
def test_yarotsky_square_error_is_exactly_4_pow_minus_D_plus_1(D):
    # All peaks 1/2, smooth, sign -1: y = x - sum 4^-(i+1) W_i, the Yarotsky approximation of x^2.
    peaks = torch.full((1, D + 1), 0.5, dtype=torch.float64)
    assert torch.equal(compnet_ext.smooth_scales(peaks, -1)[0],
                       4.0 ** -torch.arange(1, D + 1, dtype=torch.float64))
    # y interpolates x^2 at k / 2^D and is linear in between, so the error peaks at the midpoints.
    k = torch.arange(2 ** (D + 1) + 1, dtype=torch.float64)
    x = torch.cat([k / 2 ** (D + 1), torch.rand(5000, dtype=torch.float64)])
    err = compnet_ext.forward(x, peaks, sign=-1)[0] - x**2
    assert err.min() >= -1e-15  # the chord lies above the parabola
    assert abs(err.max().item() - 4.0 ** -(D + 1)) <= 1e-15


def wave_breakpoints(peaks_row):
    """Breakpoints of W_{D-1} on [0, 1] (0 and 1 included), computed analytically.

    Between consecutive breakpoints each wave is affine and runs between 0 and 1; the values at
    the breakpoints alternate 0, 1, 0, ... Layer i adds, on every piece, the point where the
    previous wave equals a_i (a new peak); the old breakpoints all become valleys.
    """
    bp = [0.0, 1.0]
    for a in peaks_row[:-1].tolist():
        new = []
        for k, (lo, hi) in enumerate(zip(bp[:-1], bp[1:])):
            v_lo = k % 2  # value of the previous wave at lo: 0, 1, 0, ...
            t = a if v_lo == 0 else 1 - a
            new += [lo, lo + t * (hi - lo)]
        bp = new + [1.0]
    return torch.tensor(bp, dtype=torch.float64)


@pytest.mark.parametrize("D", [1, 2, 4, 7, 10])
@pytest.mark.parametrize("sign", [-1, 1])
@pytest.mark.parametrize("free", [False, True])
def test_output_has_exactly_2_pow_D_linear_pieces(D, sign, free):
    g = torch.Generator().manual_seed(D)
    peaks = torch.rand(1, D + 1, generator=g, dtype=torch.float64) * 0.6 + 0.2
    scales = torch.rand(1, D, generator=g, dtype=torch.float64) + 0.1 if free else None
    bp = wave_breakpoints(peaks[0])
    assert bp.numel() == 2**D + 1 and torch.all(bp[1:] > bp[:-1])
    lo, hi = bp[:-1], bp[1:]
    # Two interior points per piece: y must be affine on the piece ...
    pts = torch.stack([lo, lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3, hi], 1)
    y = compnet_ext.forward(pts.flatten(), peaks, scales, sign)[0].view(-1, 4)
    slope = (y[:, 3] - y[:, 0]) / (hi - lo)
    for j in (1, 2):
        inner = (y[:, j] - y[:, 0]) / (pts[:, j] - lo)
        assert torch.allclose(inner, slope, rtol=1e-6, atol=1e-9)
    # ... and its slope must change at every interior breakpoint: 2^D pieces, not fewer.
    jump = (slope[1:] - slope[:-1]).abs()
    assert torch.all(jump > 1e-6 * slope.abs().max())


def test_smooth_scale_ratio_bound():
    _, peaks, _ = make_problem(200, 30, 1, seed=7)
    for sign in (-1, 1):
        s = compnet_ext.smooth_scales(peaks, sign)
        ratio = s[:, 2:] / s[:, :-2]
        assert torch.all(s > 0)
        assert torch.all(ratio > 0) and torch.all(ratio <= 0.25)


@pytest.mark.parametrize("free", [False, True])
def test_depth_64_fp32_is_finite_and_matches_reference(free):
    x, peaks, scales = make_problem(4, 64, 257, free=free, seed=8)
    f32 = lambda t: None if t is None else t.float()
    for sign in (-1, 1):
        y = compnet_ext.forward(f32(x), f32(peaks), f32(scales), sign)
        assert torch.isfinite(y).all()
        exact = reference.forward(x, peaks, scales, sign)
        ref32 = (reference.forward(f32(x), f32(peaks), f32(scales), sign).double() - exact).abs().max()
        assert (y.double() - exact).abs().max() <= 2 * ref32 + 1e-7
        loss, gp, gs = compnet_ext.loss_and_grad(f32(x), f32(x) ** 3, f32(peaks), f32(scales), sign)
        assert torch.isfinite(loss).all() and torch.isfinite(gp).all()
        assert gs is None or torch.isfinite(gs).all()
    if not free:  # the deep smooth scales underflow to zero in fp32; that must not give NaN
        assert (compnet_ext.smooth_scales(f32(peaks))[:, -1] == 0).any()


@pytest.mark.parametrize("D", [129, 300, 512])
def test_deep_fp64_matches_reference(D):
    # Deeper than one chunk of the reverse sweep (128 layers on the CPU): exercises the recompute.
    x, peaks, _ = make_problem(3, D, 200, seed=D)
    target = x**3
    for sign in (-1, 1):
        y = compnet_ext.forward(x, peaks, None, sign)
        assert torch.isfinite(y).all()
        assert (y - reference.forward(x, peaks, None, sign)).abs().max() <= 1e-12
        loss, gp, _ = compnet_ext.loss_and_grad(x, target, peaks, None, sign)
        rloss, rgp, _ = reference.loss_and_grad(x, target, peaks, None, sign)
        assert torch.isfinite(gp).all()
        assert (loss - rloss).abs().max() <= 1e-12
        assert ((gp - rgp).abs().max() / rgp.abs().max()) <= 1e-10
