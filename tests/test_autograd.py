"""Autograd beyond first order: double backward is computed, never silently dropped; ops that
return gradients or trained parameters raise when differentiated (issue 8)."""
import pytest
import torch

import compnet_ext
from compnet_ext import reference
from compnet_ext.mlp_ops import mlp_forward, mlp_loss_and_grad, mlp_train, pack
from compnet_ext.nn import BatchedMLP, matmul_forward
from conftest import make_problem

F64 = torch.float64
ops = torch.ops.compnet_ext


def _grad2(fn, inputs, seed):
    """First-order gradients of sum(w * fn(*inputs)) (create_graph) and the gradients of
    sum_i <v_i, first_i> w.r.t. the inputs: a Hessian-vector product, weights w and v random."""
    g = torch.Generator().manual_seed(seed)
    y = fn(*inputs)
    w = torch.rand(y.shape, generator=g, dtype=F64)
    first = torch.autograd.grad((w * y).sum(), inputs, create_graph=True)
    inner = sum((torch.rand(t.shape, generator=g, dtype=F64) * t).sum() for t in first)
    # materialize_grads: an input the first-order graph does not reach gets 0 (the old silent
    # loss of terms also gave None / 0 for the peaks, which then differ from the reference)
    second = torch.autograd.grad(inner, inputs, allow_unused=True, materialize_grads=True)
    return first, second


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_() for t in tensors if t is not None]


# Tolerances: in create_graph mode the fused op's backward runs the reference's autograd graph,
# so first and second derivatives are the reference's own up to the rounding of the fused
# forward's y (not used here: the loss is linear in y) and of summation order; in fp64 with
# O(1) values, N = 40 and D = 5, that is a few hundred ulps at most, far below 1e-12.
TOL = dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("free", [False, True])
@pytest.mark.parametrize("shared_x", [True, False])
@pytest.mark.parametrize("sign", [-1, 1])
def test_double_backward_equals_reference(free, shared_x, sign):
    x, peaks, scales = make_problem(3, 5, 40, free=free, shared_x=shared_x, seed=81)
    fused = lambda *a: compnet_ext.forward(a[0], a[1], a[2] if free else None, sign)
    ref = lambda *a: reference.forward(a[0], a[1], a[2] if free else None, sign)
    first, second = _grad2(fused, _leaves(x, peaks, scales), seed=82)
    first_ref, second_ref = _grad2(ref, _leaves(x, peaks, scales), seed=82)
    for a, b in zip(first + second, first_ref + second_ref):
        torch.testing.assert_close(a, b, **TOL)
    assert second_ref[1].abs().max() > 0.1  # the peaks' term that used to be dropped
    # the create_graph path gives the same first-order gradients as the fused backward
    inputs = _leaves(x, peaks, scales)
    y = fused(*inputs)
    plain = torch.autograd.grad(y, inputs, torch.ones_like(y))
    again = torch.autograd.grad(fused(*inputs), inputs, torch.ones_like(y), create_graph=True)
    for a, b in zip(plain, again):
        torch.testing.assert_close(a, b, **TOL)


def test_issue_reproducer_peaks_get_a_gradient_through_dy_dx():
    x, peaks, _ = make_problem(2, 3, 6, seed=83)
    grads = []
    for fn in (compnet_ext.forward, reference.forward):
        p, xx = _leaves(peaks, x)
        gx, = torch.autograd.grad(fn(xx, p).sum(), xx, create_graph=True)
        (gx**2).sum().backward()
        assert p.grad is not None
        grads.append(p.grad)
    torch.testing.assert_close(*grads, **TOL)


@pytest.mark.parametrize("free", [False, True])
def test_gradgradcheck_fp64(free):
    x, peaks, scales = make_problem(3, 4, 6, free=free, seed=84)
    x = x.clamp(0.05, 0.95)  # as test_gradcheck_fp64: finite differences stay inside [0, 1]
    inputs = _leaves(x, peaks, scales)
    for sign in (-1, 1):
        f = lambda *a: compnet_ext.forward(*a, sign=sign)
        assert torch.autograd.gradgradcheck(f, inputs, eps=1e-7, atol=1e-6, rtol=1e-5)


def _mlp(S, widths, seed):
    return BatchedMLP(S, widths, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("shared_x", [True, False])
def test_mlp_double_backward_equals_matmul_path(shared_x):
    m = _mlp(4, (1, 5, 3, 4, 1), seed=85)
    x = torch.rand(40 if shared_x else (4, 40), generator=torch.Generator().manual_seed(86),
                   dtype=F64)
    n = len(m.weights)

    def via(forward):
        return lambda x, *ps: forward(x, list(zip(ps[:n], ps[n:])))

    inputs = _leaves(x, *m.parameters())
    first, second = _grad2(via(mlp_forward), inputs, seed=87)
    first_ref, second_ref = _grad2(via(matmul_forward), _leaves(x, *m.parameters()), seed=87)
    for a, b in zip(first + second, first_ref + second_ref):
        torch.testing.assert_close(a, b, **TOL)
    assert max(t.abs().max() for t in second_ref[1:]) > 0.1  # weights' terms: not all zero


def test_mlp_gradgradcheck_fp64():
    m = _mlp(2, (1, 3, 4, 1), seed=11)
    # points away from kinks (as test_mlp.py's gradcheck): differences must not cross a ReLU switch
    x = torch.tensor([0.13, 0.61, 0.94], dtype=F64)
    n = len(m.weights)
    f = lambda x, *ps: mlp_forward(x, list(zip(ps[:n], ps[n:])))
    assert torch.autograd.gradgradcheck(f, _leaves(x, *m.parameters()), eps=1e-7, atol=1e-8)


# ---- ops without a derivative ---------------------------------------------------------------


def _compositional_calls():
    x, peaks, scales = make_problem(3, 4, 20, free=True, seed=88)
    p, s = _leaves(peaks, scales)
    grad_y = torch.rand(3, 20, dtype=F64)
    return {
        "backward": lambda: ops.backward(grad_y, x, p, s, -1, True, True, True),
        "loss_and_grad": lambda: compnet_ext.loss_and_grad(x, x**3, p, s),
        "train_peaks": lambda: compnet_ext.train_peaks(x, x**3, p, s, epochs=3,
                                                       record_every=1),
    }


def _mlp_calls():
    m = _mlp(3, (1, 4, 2, 1), seed=89)
    x = torch.rand(20, dtype=F64)
    params = pack(m.layers())
    return {
        "mlp_backward": lambda: ops.mlp_backward(torch.rand(3, 20, dtype=F64), x, params,
                                                 list(m.widths), True),
        "mlp_loss_and_grad": lambda: mlp_loss_and_grad(x, x**3, m.layers()),
        "mlp_train": lambda: mlp_train(x, x**3, m.layers(), epochs=3, record_every=1),
    }


def _flat(out):
    """The tensors of an op's or wrapper's result (lists of (W, b) included), empty ones left out."""
    if isinstance(out, torch.Tensor):
        return [out] if out.numel() else []
    return [t for o in out if o is not None for t in _flat(o)]


CALLS = {**_compositional_calls(), **_mlp_calls()}


@pytest.mark.parametrize("op", sorted(CALLS))
def test_differentiating_an_op_without_derivative_raises(op):
    outputs = _flat(CALLS[op]())
    assert outputs and all(t.requires_grad for t in outputs)
    other = torch.ones((), dtype=F64, requires_grad=True)
    for t in outputs:  # every output, also inside a larger loss (the term used to be dropped)
        with pytest.raises(RuntimeError, match=f"compnet_ext::{op} is not differentiable"):
            (t.sum() + other).backward()
    with torch.no_grad():  # as constants they are fine
        assert not any(t.requires_grad for t in _flat(CALLS[op]()))


@pytest.mark.parametrize("fused", [True, False])
def test_batched_mlp_loss_and_grad_returns_constants(fused):
    # documented: detached on both paths (a method that hands out values, like .item())
    m = _mlp(2, (1, 4, 1), seed=90)
    x = torch.rand(10, dtype=F64)
    loss, grads = m.loss_and_grad(x, x**2, fused=fused)
    assert not any(t.requires_grad for t in _flat([loss, grads]))


def test_compiled_function_raises_only_when_differentiated():
    # torch.compile traces the backward when it compiles: the error must wait for a backward
    x, peaks, scales = make_problem(3, 4, 20, free=True, seed=91)
    target = x**3
    f = torch.compile(lambda p: compnet_ext.loss_and_grad(x, target, p, scales), fullgraph=True)
    loss, gp, gs = f(peaks.clone().requires_grad_())
    for a, b in zip((loss, gp, gs), compnet_ext.loss_and_grad(x, target, peaks, scales)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same kernel, same thread count
    with pytest.raises(RuntimeError, match="compnet_ext::loss_and_grad is not differentiable"):
        loss.sum().backward()
