"""The fused op against the pure-PyTorch reference (MATH.md sections 2-4)."""
import itertools

import pytest
import torch

import compnet_ext
from compnet_ext import reference
from conftest import make_problem

CASES = [(S, D, N) for S, D, N in [(1, 1, 7), (5, 3, 64), (7, 20, 301), (3, 40, 129), (16, 9, 1000)]]
MODES = list(itertools.product((-1, 1), (False, True), (True, False)))  # sign, free, shared_x


@pytest.mark.parametrize("S,D,N", CASES)
@pytest.mark.parametrize("sign,free,shared_x", MODES)
def test_forward_fp64_matches_reference(S, D, N, sign, free, shared_x):
    x, peaks, scales = make_problem(S, D, N, free=free, shared_x=shared_x, seed=S * 100 + D)
    y = compnet_ext.forward(x, peaks, scales, sign)
    assert y.shape == (S, N) and y.dtype == torch.float64
    assert (y - reference.forward(x, peaks, scales, sign)).abs().max() <= 1e-12


@pytest.mark.parametrize("S,D,N", CASES)
@pytest.mark.parametrize("sign,free,shared_x", MODES)
def test_forward_fp32_error_within_2x_of_reference(S, D, N, sign, free, shared_x):
    x, peaks, scales = make_problem(S, D, N, free=free, shared_x=shared_x, seed=S * 100 + D)
    exact = reference.forward(x, peaks, scales, sign)
    f32 = lambda t: None if t is None else t.float()
    ours = (compnet_ext.forward(f32(x), f32(peaks), f32(scales), sign).double() - exact).abs().max()
    ref32 = (reference.forward(f32(x), f32(peaks), f32(scales), sign).double() - exact).abs().max()
    assert ours <= 2 * ref32 + 1e-7  # floor: one fp32 ulp of O(1) outputs


def _rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("S,D,N", CASES)
@pytest.mark.parametrize("sign,free,shared_x", MODES)
def test_loss_and_grad_fp64_matches_reference(S, D, N, sign, free, shared_x):
    x, peaks, scales = make_problem(S, D, N, free=free, shared_x=shared_x, seed=S + D)
    g = torch.Generator().manual_seed(1)
    target = torch.rand(x.shape, generator=g, dtype=torch.float64)
    loss, gp, gs = compnet_ext.loss_and_grad(x, target, peaks, scales, sign)
    rloss, rgp, rgs = reference.loss_and_grad(x, target, peaks, scales, sign)
    assert (loss - rloss).abs().max() <= 1e-12
    # Gradients w.r.t. deep peaks are products of up to D slopes of 1/a or 1/(1-a): compare
    # relative to their size. Only the summation order over points differs from the reference.
    assert _rel_err(gp, rgp) <= 1e-10
    if free:
        assert _rel_err(gs, rgs) <= 1e-10
        assert torch.all(gp[:, -1] == 0), "the last peak is unused with free scales"
    else:
        assert gs is None


@pytest.mark.parametrize("sign,free,shared_x", MODES)
def test_autograd_matches_reference(sign, free, shared_x):
    x, peaks, scales = make_problem(6, 12, 200, free=free, shared_x=shared_x, seed=3)
    grad_y = torch.randn(6, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    inputs = [t.clone().requires_grad_() for t in (x, peaks) + ((scales,) if free else ())]
    fused = torch.autograd.grad((compnet_ext.forward(*inputs, sign=sign) * grad_y).sum(), inputs)
    ref = torch.autograd.grad((reference.forward(*inputs, sign=sign) * grad_y).sum(), inputs)
    for a, b in zip(fused, ref):
        assert a.shape == b.shape
        assert _rel_err(a, b) <= 1e-10


@pytest.mark.parametrize("wanted", [(True, False, False), (False, True, False), (False, False, True), (True, True, True)])
def test_only_requested_gradients(wanted):
    x, peaks, scales = make_problem(4, 6, 50, free=True, seed=4)
    x, peaks, scales = (t.clone().requires_grad_(w) for t, w in zip((x, peaks, scales), wanted))
    compnet_ext.forward(x, peaks, scales).sum().backward()
    for t, w in zip((x, peaks, scales), wanted):
        assert (t.grad is not None) == w


def test_smooth_mode_equals_free_mode_with_smooth_scales():
    x, peaks, _ = make_problem(8, 25, 300, seed=5)
    for sign in (-1, 1):
        s = compnet_ext.smooth_scales(peaks, sign)
        assert s.shape == (8, 25)
        smooth = compnet_ext.forward(x, peaks, None, sign)
        free = compnet_ext.forward(x, peaks, s, sign)
        assert (smooth - free).abs().max() <= 1e-14


def test_endpoints_are_fixed():
    """y(0) = 0 and y(1) = 1 for every choice of peaks and scales (MATH.md section 2)."""
    x = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for free, sign in itertools.product((False, True), (-1, 1)):
        _, peaks, scales = make_problem(10, 15, 2, free=free, seed=6)
        y = compnet_ext.forward(x, peaks, scales, sign)
        assert torch.all(y[:, 0] == 0) and torch.all(y[:, 1] == 1)
