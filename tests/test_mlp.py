"""BatchedMLP: construction, forward paths, round trips, argument checks."""
import warnings

import pytest
import torch
from torch import nn

import compnet_ext
from compnet_ext.nn import BatchedMLP, matmul_forward, train_mlp

F64 = torch.float64


def _mlp(S=5, widths=(1, 4, 4, 4, 1), seed=0, dtype=F64):
    return BatchedMLP(S, widths, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_parameters_shapes_and_default_init_bounds():
    m = _mlp(S=7, widths=(1, 3, 5, 1))
    assert [tuple(W.shape) for W in m.weights] == [(7, 3, 1), (7, 5, 3), (7, 1, 5)]
    assert [tuple(b.shape) for b in m.biases] == [(7, 3), (7, 5), (7, 1)]
    assert all(isinstance(p, nn.Parameter) for p in m.parameters())
    assert len(list(m.parameters())) == 6
    for W, b in m.layers():
        bound = W.shape[2] ** -0.5
        assert W.abs().max() <= bound and b.abs().max() <= bound
        assert W.abs().max() > 0.5 * bound  # really drawn from the full range


def test_generator_makes_init_reproducible():
    a, b = _mlp(seed=3), _mlp(seed=3)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_matmul_forward_equals_sequentials():
    m = _mlp(S=4, widths=(1, 6, 3, 1))
    x = torch.rand(4, 33, dtype=F64)
    y = m(x, fused=False)
    for i in range(4):
        torch.testing.assert_close(y[i], m.to_sequential(i)(x[i, :, None])[:, 0], rtol=0,
                                   atol=1e-14)
    y_shared = m(x[0], fused=False)
    torch.testing.assert_close(y_shared, matmul_forward(x[0].expand(4, 33), m.layers()))


def test_to_sequential_round_trip():
    m = _mlp(S=3, widths=(1, 2, 7, 1))
    back = BatchedMLP.from_sequentials([m.to_sequential(i) for i in range(3)])
    assert back.widths == m.widths
    for p, q in zip(m.parameters(), back.parameters()):
        assert torch.equal(p, q)


def test_from_layers_of_encode_and_adam_step():
    peaks = torch.rand(4, 6, dtype=F64) * 0.8 + 0.1
    m = BatchedMLP.from_layers(compnet_ext.encode(peaks))
    assert m.widths == (1, 4, 4, 4, 4, 4, 1)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = torch.linspace(0, 1, 50, dtype=F64)
    before = [p.detach().clone() for p in m.parameters()]
    loss = ((m(x) - x**3) ** 2).mean()
    loss.backward()
    opt.step()
    assert any(not torch.equal(p, q) for p, q in zip(before, m.parameters()))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="`widths`"):
        BatchedMLP(2, (2, 4, 1))
    with pytest.raises(ValueError, match="`widths`"):
        BatchedMLP(2, (1, 17, 1))
    with pytest.raises(ValueError, match="`widths`"):
        BatchedMLP(2, (1,) + (4,) * 65 + (1,))
    with pytest.raises(ValueError, match="`widths`"):
        BatchedMLP(2, (1, 0, 1))
    with pytest.raises(TypeError, match="`widths`"):
        BatchedMLP(2, (1, 4.0, 1))
    with pytest.raises(ValueError, match="`S`"):
        BatchedMLP(-1)
    with pytest.raises(ValueError, match="`init`"):
        BatchedMLP(2, init="xavier")
    m = _mlp(S=3)
    with pytest.raises(TypeError, match="`x`"):
        m([0.5])
    with pytest.raises(TypeError, match="`x`"):
        m(torch.rand(5, dtype=torch.float32))
    with pytest.raises(ValueError, match="`x`"):
        m(torch.rand(2, 5, dtype=F64))
    with pytest.raises(IndexError, match="`i`"):
        m.to_sequential(3)
    with pytest.raises(TypeError, match="`layers"):
        BatchedMLP.from_layers([(torch.zeros(2, 4, 1), torch.zeros(2, 4, dtype=F64))])
    with pytest.raises(ValueError, match=r"`layers\[1\]\[0\]`"):
        BatchedMLP.from_layers([(torch.zeros(2, 4, 1), torch.zeros(2, 4)),
                                (torch.zeros(2, 1, 3), torch.zeros(2, 1))])
    with pytest.raises(TypeError, match="`models"):
        BatchedMLP.from_sequentials([nn.Linear(1, 1), nn.Linear(1, 1)])


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(5,), (4, 10), (3, 7), (10, 1), (1, 10)])
def test_loss_and_grad_rejects_a_target_that_would_broadcast(fused, shape):
    # x [10], S = 3: each of these targets broadcasts against y [3, 10] or fails unnamed
    m = _mlp(S=3)
    x = torch.rand(10, dtype=F64)
    dims = ", ".join(map(str, shape))
    with pytest.raises(ValueError, match=rf"`target` has shape \[{dims}\], expected \[N\] or "
                                         r"\[S, N\] with S = 3, N = 10"):
        m.loss_and_grad(x, torch.rand(shape, dtype=F64), fused=fused)


@pytest.mark.filterwarnings("ignore:compnet_ext.train:DeprecationWarning")  # the old names, kept a release
def test_train_weights_rejects_a_target_that_would_broadcast():
    from compnet_ext.train import train_weights

    m = _mlp(S=3)
    x = torch.rand(10, dtype=F64)
    with pytest.raises(ValueError, match=r"`target` has shape \[1, 10\]"):
        train_weights(m, x, x[None], 1, 1e-3)
    # any module mapping x -> [S, N] (the generic path computes the loss in torch ops)
    seq = nn.Sequential(nn.Linear(1, 1, dtype=F64))
    with pytest.raises(ValueError, match=r"`target` has shape \[10, 1\]"):
        train_weights(seq, x, x[:, None], 1, 1e-3)


@pytest.mark.parametrize("fused", [True, False])
def test_jit_trace(fused):
    # x [S, N] as example input (the shape check would convert traced sizes to bools)
    class Unfused(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x, fused=False)

    m = _mlp(S=3, widths=(1, 4, 3, 1), seed=5)
    x = torch.rand(3, 7, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", r"`torch\.jit\.trace.*` is deprecated",
                                DeprecationWarning)
        traced = torch.jit.trace(m if fused else Unfused(m), (x,))
    # the trace replays the same ops on new points, shared [N] or per seed [S, N]: equal
    for x2 in (torch.rand(11, dtype=F64), torch.rand(3, 11, dtype=F64, requires_grad=True)):
        torch.testing.assert_close(traced(x2), m(x2, fused=fused), rtol=0, atol=0)
    grads = torch.autograd.grad(traced(x2).sum(), [x2, *m.parameters()])
    expected = torch.autograd.grad(m(x2, fused=fused).sum(), [x2, *m.parameters()])
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---- fused kernels ------------------------------------------------------------------------------

from compnet_ext.mlp_ops import mlp_forward, mlp_loss_and_grad, pack  # noqa: E402

WIDTHS = [(1, 1), (1, 4, 1), (1, 4, 4, 4, 4, 4, 1), (1, 16, 3, 16, 1), (1,) + (16,) * 64 + (1,)]


@pytest.mark.parametrize("widths", WIDTHS, ids=lambda w: f"{len(w) - 2}x{max(w)}")
@pytest.mark.parametrize("shared_x", [True, False])
def test_fused_forward_and_grads_equal_matmul_path(widths, shared_x):
    S, N = 3, 37  # N not a multiple of the lane count: padding lanes must not leak
    m = _mlp(S=S, widths=widths, seed=len(widths))
    x = (torch.rand(N, dtype=F64) * 2 - 0.5) if shared_x else torch.rand(S, N, dtype=F64)
    x.requires_grad_(True)
    gy = torch.randn(S, N, dtype=F64)
    outs = []
    for fused in (True, False):
        y = m(x, fused=fused)
        grads = torch.autograd.grad((y * gy).sum(), [x] + list(m.parameters()))
        outs.append((y, grads))
    (y1, g1), (y0, g0) = outs
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-12)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("widths", WIDTHS[1:4], ids=lambda w: f"{len(w) - 2}x{max(w)}")
def test_fused_loss_and_grad_equals_autograd(widths):
    S, N = 4, 700  # more than one 512-point block per seed
    m = _mlp(S=S, widths=widths, seed=7)
    x = torch.rand(N, dtype=F64)
    t = torch.rand(S, N, dtype=F64)
    l1, g1 = m.loss_and_grad(x, t, fused=True)
    l0, g0 = m.loss_and_grad(x, t, fused=False)
    torch.testing.assert_close(l1, l0, rtol=0, atol=1e-12)
    for (a, b), (c, d) in zip(g1, g0):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-12)
        torch.testing.assert_close(b, d, rtol=0, atol=1e-12)


def test_fused_encoded_compositional_network_equals_forward():
    peaks = torch.rand(8, 11, dtype=F64) * 0.8 + 0.1
    m = BatchedMLP.from_layers(compnet_ext.encode(peaks))
    x = torch.linspace(0, 1, 1001, dtype=F64)
    torch.testing.assert_close(m(x, fused=True), compnet_ext.forward(x, peaks), rtol=0, atol=1e-12)


def test_fused_gradcheck_fp64():
    m = _mlp(S=2, widths=(1, 3, 4, 1), seed=11)
    # points away from kinks: gradcheck's finite differences must not straddle a ReLU switch
    x = torch.tensor([0.13, 0.61, 0.94], dtype=F64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in m.parameters()]
    n = len(m.weights)

    def f(x, *ps):
        return mlp_forward(x, list(zip(ps[:n], ps[n:])))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-7, atol=1e-8)


def test_fused_gradients_reach_only_what_requires_them():
    """The eager path packs the parameters inside its autograd node and hands each W and b its
    view of the packed gradient: the right slice to the right tensor, nothing to the others."""
    m = _mlp(S=3, widths=(1, 3, 5, 2, 1), seed=4)
    x = torch.rand(3, 17, dtype=F64, requires_grad=True)
    w = torch.rand(3, 17, dtype=F64)
    frozen = {m.weights[1], m.biases[0]}
    for p in frozen:
        p.requires_grad_(False)
    wanted = [x] + [p for p in m.parameters() if p not in frozen]
    fused = torch.autograd.grad((w * m(x, fused=True)).sum(), wanted)
    ref = torch.autograd.grad((w * m(x, fused=False)).sum(), wanted)
    for g, r, t in zip(fused, ref, wanted):
        assert g.shape == t.shape
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-13)
    m.zero_grad()
    (w * m(x, fused=True)).sum().backward()
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is not None for p in m.parameters() if p not in frozen)


def test_fused_is_deterministic_bitwise():
    m = _mlp(S=6, widths=(1, 8, 8, 8, 1), seed=2, dtype=torch.float32)
    x = torch.rand(6, 3000)
    t = torch.rand(6, 3000)
    l1, g1 = m.loss_and_grad(x, t)
    for _ in range(3):
        l2, g2 = m.loss_and_grad(x, t)
        assert torch.equal(l1, l2)
        assert all(torch.equal(a, b) for p, q in zip(g1, g2) for a, b in zip(p, q))


def test_fused_empty_points_and_seeds():
    m = _mlp(S=3)
    y = m(torch.zeros(0, dtype=F64))
    assert y.shape == (3, 0)
    loss, grads = m.loss_and_grad(torch.zeros(0, dtype=F64), torch.zeros(0, dtype=F64))
    assert torch.equal(loss, torch.zeros(3, dtype=F64))
    assert all((g == 0).all() for pair in grads for g in pair)
    assert _mlp(S=0)(torch.rand(4, dtype=F64)).shape == (0, 4)


def test_opcheck():
    m = _mlp(S=3, widths=(1, 4, 2, 1), seed=4)
    widths = list(m.widths)
    params = pack(m.layers()).detach().requires_grad_(True)
    x = torch.rand(9, dtype=F64)
    torch.library.opcheck(torch.ops.compnet_ext.mlp_forward, (x, params, widths))
    torch.library.opcheck(torch.ops.compnet_ext.mlp_forward, (torch.rand(3, 9, dtype=F64), params,
                                                              widths))
    torch.library.opcheck(torch.ops.compnet_ext.mlp_loss_and_grad,
                          (x, torch.rand(3, 9, dtype=F64), params.detach(), widths))
    torch.library.opcheck(torch.ops.compnet_ext.mlp_backward,
                          (torch.rand(3, 9, dtype=F64), x, params.detach(), widths, True))


def test_fused_op_rejects_bad_widths_and_params():
    m = _mlp(S=2)
    params = pack(m.layers()).detach()
    x = torch.rand(5, dtype=F64)
    with pytest.raises(RuntimeError, match="`widths`"):
        torch.ops.compnet_ext.mlp_forward(x, params, [1, 17, 1])
    with pytest.raises(RuntimeError, match="`params`"):
        torch.ops.compnet_ext.mlp_forward(x, params[:, :-1], list(m.widths))
    with pytest.raises(RuntimeError, match="`x`"):
        torch.ops.compnet_ext.mlp_forward(x.float(), params, list(m.widths))
    with pytest.raises(ValueError, match="`target`"):
        mlp_loss_and_grad(x, torch.rand(4, dtype=F64), m.layers())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("widths", WIDTHS[1:], ids=lambda w: f"{len(w) - 2}x{max(w)}")
def test_cuda_equals_cpu(widths):
    m = _mlp(S=5, widths=widths, seed=1)
    x = torch.rand(5, 100, dtype=F64)
    t = torch.rand(5, 100, dtype=F64)
    mc = BatchedMLP.from_layers([(W.cuda(), b.cuda()) for W, b in m.layers()])
    torch.testing.assert_close(mc(x.cuda()).cpu(), m(x), rtol=0, atol=1e-12)
    l0, g0 = m.loss_and_grad(x, t)
    l1, g1 = mc.loss_and_grad(x.cuda(), t.cuda())
    torch.testing.assert_close(l1.cpu(), l0, rtol=0, atol=1e-12)
    for (a, b), (c, d) in zip(g1, g0):
        torch.testing.assert_close(a.cpu(), c, rtol=0, atol=1e-12)
        torch.testing.assert_close(b.cpu(), d, rtol=0, atol=1e-12)
    l2, g2 = mc.loss_and_grad(x.cuda(), t.cuda())
    assert torch.equal(l1, l2) and all(torch.equal(p, q) for a, b in zip(g1, g2)
                                       for p, q in zip(a, b))


def test_nan_propagates_as_in_torch():
    # relu(NaN) is NaN in PyTorch; the fused kernels must not turn it into 0.
    m = BatchedMLP(1, (1, 4, 1), generator=torch.Generator().manual_seed(0), dtype=F64)
    x = torch.tensor([0.5, float("nan")], dtype=F64)
    for fused in (True, False):
        y = m(x, fused=fused).detach()
        assert torch.isfinite(y[0, 0]) and torch.isnan(y[0, 1]), fused
    with torch.no_grad():
        m.weights[0][0, 2, 0] = float("nan")
    x = torch.linspace(0, 1, 5, dtype=F64)
    for fused in (True, False):
        assert torch.isnan(m(x, fused=fused)).all(), fused
        loss, grads = m.loss_and_grad(x, x, fused=fused)
        assert torch.isnan(loss).all(), fused
    loss, _ = train_mlp(m, x, x, epochs=2)
    assert torch.isnan(loss).all()
