"""Forward-mode AD and torch.func transforms (issue 18, item 1): torch.autograd.forward_ad,
torch.func.jvp / jacfwd / grad / jacrev / hessian give the derivatives of compnet_ext.forward,
BatchedMLP and CompositionalActivation (both stages), never a silent zero; the ops without a
derivative refuse them; vmap, torch.compile and torch.export keep working."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD

import compnet_ext
from compnet_ext.mlp_ops import mlp_loss_and_grad, mlp_train
from compnet_ext.nn import BatchedMLP, CompositionalActivation
from conftest import make_problem

F64 = torch.float64
# The transforms run the plain-PyTorch reference, the comparisons the fused op's backward (or
# the reference under another transform): two evaluations of the same fp64 derivative with
# O(1) values and slopes <= 1/min(a, 1 - a) = 20 per layer, D <= 5: a few hundred ulps of
# values <= 20^5 at worst, below 1e-9 relative; 1e-10 absolute covers entries near 0.
TOL = dict(rtol=1e-9, atol=1e-10)


def _issue_problem():
    return (torch.linspace(.1, .9, 5, dtype=F64), torch.full((1, 4), .4, dtype=F64))


def test_issue_reproducer_jacfwd_is_not_zero():
    x, p = _issue_problem()
    f = lambda v: compnet_ext.forward(v, p)
    reverse = torch.autograd.functional.jacobian(f, x)  # the fused backward
    assert reverse.abs().sum() > 1  # 4.81
    torch.testing.assert_close(torch.func.jacfwd(f)(x), reverse, **TOL)
    torch.testing.assert_close(torch.func.jacrev(f)(x), reverse, **TOL)
    with fwAD.dual_level():
        y = f(fwAD.make_dual(x, torch.ones_like(x)))
        torch.testing.assert_close(fwAD.unpack_dual(y).tangent, reverse.sum(-1), **TOL)


@pytest.mark.parametrize("free", [False, True])
@pytest.mark.parametrize("sign", [-1, 1])
def test_forward_mode_matches_finite_differences(free, sign):
    """gradcheck's forward-AD check: jvps against central differences, w.r.t. x, peaks and
    free scales."""
    x, peaks, scales = make_problem(2, 3, 6, free=free, seed=91)
    x = x.clamp(0.05, 0.95)  # finite differences stay inside [0, 1]
    inputs = [t.requires_grad_() for t in (x, peaks, scales) if t is not None]
    f = lambda *a: compnet_ext.forward(*a, sign=sign)
    assert torch.autograd.gradcheck(f, inputs, check_forward_ad=True, check_backward_ad=False)


@pytest.mark.parametrize("free", [False, True])
def test_every_transform_agrees_with_the_fused_backward(free):
    x, peaks, scales = make_problem(3, 4, 7, free=free, seed=92)
    args = (x, peaks) + ((scales,) if free else ())
    argnums = tuple(range(len(args)))
    f = lambda *a: compnet_ext.forward(*a, sign=-1)
    reverse = torch.autograd.functional.jacobian(f, args)
    for jac in (torch.func.jacfwd, torch.func.jacrev):
        for got, want in zip(jac(f, argnums=argnums)(*args), reverse):
            torch.testing.assert_close(got, want, **TOL)
    w = torch.rand(3, 7, generator=torch.Generator().manual_seed(93), dtype=F64)
    loss = lambda *a: (w * f(*a)).sum()
    grads = torch.func.grad(loss, argnums=argnums)(*args)
    for got, want in zip(grads, torch.autograd.functional.vjp(f, args, w)[1]):
        torch.testing.assert_close(got, want, **TOL)
    # second order: forward over reverse against create_graph=True (the reference's graph)
    hess = torch.func.jacfwd(torch.func.grad(loss, argnums=1), argnums=1)(*args)
    want = torch.autograd.functional.hessian(lambda p: loss(x, p, *args[2:]), peaks)
    torch.testing.assert_close(hess, want, **TOL)
    assert want.abs().max() > 0.1


def test_batched_mlp_forward_mode():
    g = torch.Generator().manual_seed(94)
    mlp = BatchedMLP(2, (1, 4, 4, 1), generator=g, dtype=F64)
    x = torch.rand(6, generator=g, dtype=F64)
    reverse = torch.autograd.functional.jacobian(mlp, x)
    assert reverse.abs().sum() > 0.1
    torch.testing.assert_close(torch.func.jacfwd(mlp)(x), reverse, **TOL)
    torch.testing.assert_close(torch.func.jacrev(mlp)(x), reverse, **TOL)
    # w.r.t. the weights, through functional_call
    names = [n for n, _ in mlp.named_parameters()]
    params = tuple(p.detach() for p in mlp.parameters())
    f = lambda *ps: torch.func.functional_call(mlp, dict(zip(names, ps)), (x,))
    tangents = tuple(torch.rand(p.shape, generator=g, dtype=F64) for p in params)
    _, jvp = torch.func.jvp(f, params, tangents)
    want = torch.autograd.functional.jvp(f, params, tangents)[1]  # double-backward trick
    torch.testing.assert_close(jvp, want, **TOL)
    assert want.abs().max() > 0.01


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("sign", [0, -1, 1])
def test_layer_forward_mode_both_stages(sign, stage):
    g = torch.Generator().manual_seed(95)
    act = CompositionalActivation(3, 4, sign=sign, domain=(-2.0, 3.0), dtype=F64)
    with torch.no_grad():
        act.peaks.uniform_(0.15, 0.85, generator=g)
        act.coef.add_(0.3 * torch.randn(act.coef.shape, generator=g, dtype=F64))
    if stage == 2:
        act.to_relu()
        # right after the encoding the t1 neurons have their kinks exactly at the domain's ends,
        # where clamped inputs are evaluated and rounding picks the side: move them away
        with torch.no_grad():
            for p in act.mlp.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=g, dtype=F64))
    x = -3.0 + 7.0 * torch.rand(5, 3, generator=g, dtype=F64)  # inside and outside the domain
    reverse = torch.autograd.functional.jacobian(act, x)
    assert reverse.abs().sum() > 1
    torch.testing.assert_close(torch.func.jacfwd(act)(x), reverse, **TOL)
    torch.testing.assert_close(torch.func.jacrev(act)(x), reverse, **TOL)
    # the parameters: a jvp and torch.func.grad against ordinary reverse mode
    names = [n for n, _ in act.named_parameters()]
    params = tuple(p.detach() for p in act.parameters())
    f = lambda *ps: torch.func.functional_call(act, dict(zip(names, ps)), (x,))
    tangents = tuple(torch.rand(p.shape, generator=g, dtype=F64) for p in params)
    torch.testing.assert_close(torch.func.jvp(f, params, tangents)[1],
                               torch.autograd.functional.jvp(f, params, tangents)[1], **TOL)
    grads = torch.func.grad(lambda *ps: f(*ps).square().sum(), argnums=tuple(range(len(names))))
    act(x).square().sum().backward()
    for got, p in zip(grads(*params), act.parameters()):
        torch.testing.assert_close(got, p.grad, **TOL)


def test_values_are_checked_on_the_reference_path():
    x, p = _issue_problem()
    with pytest.raises(ValueError, match="`x` must lie in"):
        torch.func.jacfwd(lambda v: compnet_ext.forward(v, p))(x + 1)
    with pytest.raises(ValueError, match="`peaks` must lie in"):
        torch.func.jacrev(lambda q: compnet_ext.forward(x, q))(p + 1)
    with pytest.raises(ValueError, match="`scales` contains NaN"):
        torch.func.jacfwd(lambda v: compnet_ext.forward(v, p, torch.full((1, 3), float("nan"),
                                                                         dtype=F64)))(x)
    # validate=False skips them, as on the fused path
    torch.func.jacfwd(lambda v: compnet_ext.forward(v, p, validate=False))(x + 1)


def test_ops_without_a_derivative_refuse_transforms():
    x, p = _issue_problem()
    mlp = BatchedMLP(1, (1, 3, 1), dtype=F64)
    layers = lambda v: [(v[:, :3, None], v[:, 3:6]), (v[:, None, 6:9], v[:, 9:])]  # 1 -> 3 -> 1
    w = torch.rand(1, 10, dtype=F64)
    calls = [  # (function, the argument it is differentiated at)
        (lambda v: compnet_ext.loss_and_grad(x, x, v)[0], p),
        (lambda v: compnet_ext.train_peaks(x, x, v, epochs=2)[2], p),
        (lambda v: mlp_loss_and_grad(x, x, layers(v))[0], w),
        (lambda v: mlp_train(x, x, layers(v), epochs=2)[1], w),
        (lambda v: mlp.loss_and_grad(v, v)[0], x),
    ]
    for call, at in calls:
        for transform in (torch.func.jacfwd, torch.func.jacrev):
            with pytest.raises(RuntimeError, match="is not differentiable"):
                transform(call)(at)
    with fwAD.dual_level():
        with pytest.raises(RuntimeError, match="loss_and_grad is not differentiable"):
            compnet_ext.loss_and_grad(fwAD.make_dual(x, torch.ones_like(x)), x, p)
        assert compnet_ext.loss_and_grad(x, x, p)[0].shape == (1,)  # constants are fine


def test_vmap_keeps_the_fused_op():
    x, p = torch.rand(6, 7, dtype=F64), torch.full((2, 4), .4, dtype=F64)
    out = torch.func.vmap(lambda v: compnet_ext.forward(v, p))(x)
    assert torch.equal(out, torch.stack([compnet_ext.forward(v, p) for v in x]))


def test_compiled_forward_mode():
    torch._dynamo.reset()
    x, p = _issue_problem()
    f = lambda v: compnet_ext.forward(v, p)
    compiled = torch.compile(torch.func.jacfwd(f), backend="aot_eager")
    torch.testing.assert_close(compiled(x), torch.autograd.functional.jacobian(f, x), **TOL)


def test_export_of_the_layer_both_stages():
    act = CompositionalActivation(3, 4, dtype=F64)
    x = -1.5 + 3 * torch.rand(5, 3, generator=torch.Generator().manual_seed(96), dtype=F64)
    for stage in (1, 2):
        if stage == 2:
            act.to_relu()
        exported = torch.export.export(act, (x,)).module()
        assert torch.equal(exported(x), act(x)), stage
