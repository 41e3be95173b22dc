"""encode(): the compositional network as a real 4-neuron ReLU network (MATH.md section 5)."""
import pytest
import torch

import compnet_ext
from compnet_ext.nn import BatchedMLP, matmul_forward

F64 = torch.float64


def _peaks(S, D, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (0.05 + 0.9 * torch.rand(S, D + 1, generator=g)).to(dtype)


def _grid(n=2001, dtype=F64):
    return torch.linspace(0, 1, n, dtype=dtype)


def test_hand_checked_depth_1():
    # a0 = 1/2, a1 = 1/2, sign -1: s0 = a0 a1 = 1/4 and y = x - W_0(x) / 4.
    peaks = torch.tensor([[0.5, 0.5]], dtype=F64)
    (W0, b0), (W1, b1) = compnet_ext.encode(peaks, sign=-1)
    torch.testing.assert_close(W0, torch.tensor([[[0.25], [0.25], [1.0], [0.0]]], dtype=F64))
    torch.testing.assert_close(b0, torch.tensor([[0.0, -0.125, 0.0, 0.25]], dtype=F64))
    torch.testing.assert_close(W1, torch.tensor([[[-2.0, 4.0, 1.0, 0.0]]], dtype=F64))
    torch.testing.assert_close(b1, torch.zeros(1, 1, dtype=F64))
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=F64)
    y = matmul_forward(x, [(W0, b0), (W1, b1)])
    torch.testing.assert_close(y, torch.tensor([[0.0, 0.125, 0.25, 0.625, 1.0]], dtype=F64))


def test_hand_checked_depth_2():
    # all peaks 1/2, sign -1: s0 = 1/4, s1 = 1/16, so rho = s1/s0 = 1/4; y approximates x^2.
    peaks = torch.full((1, 3), 0.5, dtype=F64)
    layers = compnet_ext.encode(peaks, sign=-1)
    assert [tuple(W.shape) for W, _ in layers] == [(1, 4, 1), (1, 4, 4), (1, 1, 4)]
    W1, b1 = layers[1]
    want = torch.tensor([[0.5, -1.0, 0.0, 0.0],
                         [0.5, -1.0, 0.0, -0.125],
                         [-2.0, 4.0, 1.0, 0.0],
                         [0.0, 0.0, 0.0, 0.25]], dtype=F64)
    torch.testing.assert_close(W1[0], want)
    torch.testing.assert_close(b1, torch.zeros(1, 4, dtype=F64))
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=F64)  # Yarotsky: exact x^2 on the grid
    torch.testing.assert_close(matmul_forward(x, layers), (x * x)[None], rtol=0, atol=1e-15)


def test_hand_checked_negative_free_scale_offsets_accumulator():
    # sign +1 with s0 < 0 could drive the running sum below 0: it is carried with offset 1/2.
    peaks = torch.tensor([[0.5, 0.5, 0.5]], dtype=F64)
    scales = torch.tensor([[-0.5, 0.25]], dtype=F64)
    layers = compnet_ext.encode(peaks, scales, sign=1)
    assert layers[1][1][0, 2].item() == 0.5   # acc bias: + max(0, -sign * s0)
    assert layers[2][1][0, 0].item() == -0.5  # output removes the offset
    x = _grid()
    y = matmul_forward(x, layers)
    torch.testing.assert_close(y, compnet_ext.reference.forward(x, peaks, scales, 1),
                               rtol=0, atol=1e-14)


@pytest.mark.parametrize("sign", [-1, 1])
@pytest.mark.parametrize("D", [1, 2, 5, 12, 30])
def test_encode_equals_forward_smooth(sign, D):
    peaks = _peaks(16, D, seed=D)
    x = _grid()
    y = BatchedMLP.from_layers(compnet_ext.encode(peaks, sign=sign))(x, fused=False)
    torch.testing.assert_close(y, compnet_ext.forward(x, peaks, None, sign), rtol=0, atol=1e-12)


@pytest.mark.parametrize("sign", [-1, 1])
@pytest.mark.parametrize("D", [1, 2, 3])
def test_encode_equals_forward_free_scales_any_sign(sign, D):
    peaks = _peaks(16, D, seed=100 + D)
    g = torch.Generator().manual_seed(D)
    scales = torch.randn(16, D, generator=g, dtype=F64)  # mixed signs, running sum can go < 0
    scales[0] = 0.0              # all zero
    scales[1, : D // 2] = 0.0    # zero, then nonzero
    x = _grid()
    y = matmul_forward(x, compnet_ext.encode(peaks, scales, sign=sign))
    ref = compnet_ext.forward(x, peaks, scales, sign)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("D", [5, 8, 20])
def test_encode_deep_free_scales_within_rounding_bound(D):
    # With O(1) free scales, W_k's Lipschitz constant prod_j max(1/a_j, 1/(1-a_j)) grows
    # exponentially, and so does the rounding error of *any* floating-point evaluation of
    # s_k W_k (the network's per-layer rounding is at most 1/min(a, 1-a) times the fused op's).
    # Bound: 4 eps * sum_k |s_k| * Lip(W_k) / min(a_k, 1 - a_k).
    sign = -1
    peaks = _peaks(16, D, seed=100 + D)
    scales = torch.randn(16, D, generator=torch.Generator().manual_seed(D), dtype=F64)
    x = _grid()
    err = (matmul_forward(x, compnet_ext.encode(peaks, scales, sign=sign))
           - compnet_ext.forward(x, peaks, scales, sign)).abs().max(dim=1).values
    a = peaks[:, :D]
    slope = torch.maximum(1 / a, 1 / (1 - a))
    lip = torch.cumprod(slope, dim=1)
    bound = 4 * torch.finfo(F64).eps * (scales.abs() * lip * slope).sum(dim=1)
    assert (err <= bound).all(), (err / bound).max()
    assert err.max() > 1e-12  # the regime the strict 1e-12 test above cannot cover


def test_free_scales_do_make_running_sum_negative():
    # guards the previous test: these inputs really exercise the accumulator offset
    D, sign = 8, 1
    peaks = _peaks(16, D, seed=108)
    scales = torch.randn(16, D, generator=torch.Generator().manual_seed(D), dtype=F64)
    x = _grid()
    partial = compnet_ext.forward(x, peaks[:, : D], scales[:, : D - 1], sign)
    assert (partial.min(dim=1).values < -1e-3).any()


def test_fp32_underflowing_scales_give_no_nan():
    # depth 80 with small peaks: smooth scales underflow to 0 in float32
    peaks = torch.full((2, 81), 0.1, dtype=torch.float32)
    s = compnet_ext.smooth_scales(peaks)
    assert (s == 0).any()
    layers = compnet_ext.encode(peaks)
    for W, b in layers:
        assert torch.isfinite(W).all() and torch.isfinite(b).all()
    x = _grid(513, torch.float32)
    y = matmul_forward(x, layers)
    ref = compnet_ext.forward(x.double(), peaks.double())
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-5)


def test_weights_are_order_one_in_smooth_mode():
    peaks = _peaks(8, 40, seed=3)
    for W, b in compnet_ext.encode(peaks):
        # bounded by 1/(a(1-a)) for a in [0.05, 0.95] (about 21), never exponentially small
        assert W.abs().max() <= 1 / (0.05 * 0.95) + 1e-9
        assert b.abs().max() <= 1


def test_encode_is_differentiable():
    peaks = _peaks(3, 4, seed=5).requires_grad_(True)
    x = _grid(101)
    y = matmul_forward(x, compnet_ext.encode(peaks))
    g, = torch.autograd.grad(y.sum(), peaks)
    p2 = peaks.detach().requires_grad_(True)
    g2, = torch.autograd.grad(compnet_ext.reference.forward(x, p2).sum(), p2)
    torch.testing.assert_close(g, g2, rtol=1e-9, atol=1e-9)


def test_encode_bad_inputs():
    p = _peaks(2, 3, seed=0)
    with pytest.raises(TypeError, match="`peaks`"):
        compnet_ext.encode([[0.5, 0.5]])
    with pytest.raises(ValueError, match="`peaks`"):
        compnet_ext.encode(p[0])
    with pytest.raises(ValueError, match="`peaks`"):
        compnet_ext.encode(p * 2)
    with pytest.raises(ValueError, match="`scales`"):
        compnet_ext.encode(p, torch.ones(2, 4, dtype=F64))
    with pytest.raises(TypeError, match="`scales`"):
        compnet_ext.encode(p, torch.ones(2, 3, dtype=torch.float32))
    with pytest.raises(ValueError, match="`scales`"):
        compnet_ext.encode(p, torch.full((2, 3), float("nan"), dtype=F64))
    with pytest.raises(ValueError, match="`sign`"):
        compnet_ext.encode(p, sign=0)
