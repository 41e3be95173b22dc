"""The difference-of-convex pair (compnet_ext.nonconvex, MATH.md section 7): the reflected
one-launch evaluation vs the plain two-sign reference, the width-9 encoding, gradients, bad input."""
import pytest
import torch

from compnet_ext import nonconvex as nc
from compnet_ext.network import encode
from compnet_ext.reference import matmul_forward


def _pair(S=4, D=5, dtype=torch.float64, free=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    peaks = (0.1 + 0.8 * torch.rand(S, 2, D + 1, generator=g)).to(dtype)
    coef = torch.randn(S, 4, generator=g).to(dtype)
    scales = (0.2 * torch.randn(S, 2, D, generator=g)).to(dtype) if free else None
    return peaks, coef, scales


# fp64, depth <= 6, |coef| = O(1): every path is a few dozen roundings of O(1) values, so 1e-12
# leaves a hundredfold margin; fp32 the same count of 6e-8 roundings: 2e-5.
TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("free", [False, True])
@pytest.mark.parametrize("domain", [(0.0, 1.0), (-1.0, 1.0), (2.0, 7.5)])
def test_forward_and_encoding_match_reference(dtype, free, domain):
    peaks, coef, scales = _pair(dtype=dtype, free=free)
    x = torch.linspace(*domain, 257, dtype=dtype)
    ref = nc.reference_forward(x, peaks, coef, scales, domain=domain)
    torch.testing.assert_close(nc.forward(x, peaks, coef, scales, domain=domain), ref,
                               atol=TOL[dtype], rtol=0)
    mlp = matmul_forward(x, nc.encode(peaks, coef, scales, domain=domain))
    torch.testing.assert_close(mlp, ref, atol=TOL[dtype], rtol=0)


def test_halves_are_one_network_of_each_sign():
    """coef (1, 0, 1, 0) is F1 itself, (0, 1, 1, 0) is F2: the ordinary networks of sign -1/+1."""
    peaks, _, _ = _pair()
    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    S = peaks.shape[0]
    for h, sign in enumerate(nc.SIGNS):
        coef = torch.zeros(S, 4, dtype=torch.float64)
        coef[:, h], coef[:, 2] = 1, 1
        want = matmul_forward(x, encode(peaks[:, h], sign=sign))
        torch.testing.assert_close(nc.forward(x, peaks, coef), want, atol=1e-13, rtol=0)


@pytest.mark.parametrize("free", [False, True])
def test_gradcheck(free):
    peaks, coef, scales = _pair(S=2, D=3, free=free)
    x = torch.linspace(-0.9, 0.95, 23, dtype=torch.float64)
    args = [t.requires_grad_() for t in (x, peaks, coef) + ((scales,) if free else ())]
    f = lambda x, p, c, *s: nc.forward(x, p, c, *s, domain=(-1, 1))
    assert torch.autograd.gradcheck(f, args)


@pytest.mark.parametrize("domain", [(1, 1), (2, 1), (0, float("inf")), (float("nan"), 1),
                                    (-1e308, 1e308)])
def test_bad_domain(domain):
    with pytest.raises(ValueError, match="`domain`"):
        nc.check_domain(domain)


@pytest.mark.parametrize("domain", [None, 3, (1, 2, 3), ("a", 1)])
def test_domain_not_a_pair(domain):
    with pytest.raises(TypeError, match="`domain`"):
        nc.check_domain(domain)


def test_bad_shapes():
    peaks, coef, scales = _pair(free=True)
    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="`peaks`"):
        nc.forward(x, peaks[:, 0], coef)
    with pytest.raises(ValueError, match="`coef`"):
        nc.forward(x, peaks, coef[:, :3])
    with pytest.raises(ValueError, match="`scales`"):
        nc.forward(x, peaks, coef, scales[:, :, 1:])


def test_points_outside_the_domain_are_rejected():
    peaks, coef, _ = _pair()
    with pytest.raises(ValueError, match=r"`x` must lie in the domain \[-1, 1\]"):
        nc.forward(torch.tensor([-1.5, 0.0], dtype=torch.float64), peaks, coef, domain=(-1, 1))
