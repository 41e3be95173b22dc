"""compnet_ext.nn.CompositionalActivation: agreement with a plain-PyTorch reference of the layer in
both stages, the stage switch, gradients, torch.compile, state_dict, the continuation outside the
domain, bad input, and a short training run."""
import io

import pytest
import torch

from compnet_ext import nonconvex as nc
from compnet_ext import reference
from compnet_ext.activation import end_slopes, half_end_slopes
from compnet_ext.checks import MAX_HIDDEN
from compnet_ext.nn import CompositionalActivation, clamp_peaks_
from compnet_ext.ops import PEAK_BOUNDS

from conftest import cuda

F64 = torch.float64
SIGNS = (0, -1, 1)
DOMAINS = ((-1.0, 1.0), (-3.0, 5.0))
# fp64, depth <= 5, |coef| = O(1), |x| <= 8: every path is a few dozen roundings of values of
# size <= 8 / (hi - lo) * |coef| = O(10), so 1e-12 leaves a hundredfold margin; fp32 the same
# count of 6e-8 roundings of O(10) values: 2e-5 is still tenfold above it.
TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


def _layer(sign, F=3, D=4, domain=(-1.0, 1.0), dtype=F64, seed=0):
    """A layer with random valid stage-1 parameters (peaks in (0.15, 0.85), coef ~ N(0, 1),
    curvature > 0 for one sign)."""
    act = CompositionalActivation(F, D, sign=sign, domain=domain, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        act.peaks.copy_(0.15 + 0.7 * torch.rand(act.peaks.shape, generator=g, dtype=F64))
        act.coef.copy_(torch.randn(act.coef.shape, generator=g, dtype=F64))
        if sign != 0:  # a curvature away from its bound 0 (where the clamp has a kink)
            act.coef[:, 0].abs_().add_(0.1)
    return act.clamp_peaks_()


def _inputs(domain, dtype=F64, batch=(5, 7), F=3, seed=1):
    """Points in and around the domain (a quarter of its width either side), shape [*batch, F]."""
    lo, hi = domain
    g = torch.Generator().manual_seed(seed)
    w = hi - lo
    return (lo - w / 4 + 1.5 * w * torch.rand(*batch, F, generator=g, dtype=F64)).to(dtype)


def _reference_stage1(act, x):
    """The layer in plain PyTorch: per feature, nonconvex.reference_forward (sign 0) or
    reference.forward (one sign) at the clamped input, plus the end slope, measured here as a
    secant inside the first / last linear piece of the reference (independent of the closed form
    used by the layer)."""
    lo, hi = act.domain
    rows = x.reshape(-1, act.num_features).t()
    peaks, coef = act.valid_parameters()
    peaks, coef = peaks.detach().to(F64), coef.detach().to(F64)

    def f(t):
        if act.sign == 0:
            return nc.reference_forward(t, peaks, coef, domain=act.domain)
        u = (t - lo) / (hi - lo)
        c = coef.unsqueeze(-1)
        return c[:, 0] * (reference.forward(u, peaks, None, act.sign) - u) + c[:, 1] * u + c[:, 2]

    # the first kink is at u = a_0 ... a_{D-1} >= 0.15^4 = 5e-4 from either end
    h = 1e-5 * (hi - lo)
    ends = torch.tensor([lo, lo + h, hi - h, hi], dtype=F64).expand(act.num_features, 4)
    e = f(ends)
    g_lo, g_hi = (e[:, 1] - e[:, 0]) / h, (e[:, 3] - e[:, 2]) / h
    r = rows.to(F64)
    y = f(r.clamp(lo, hi)) + torch.where(r < lo, g_lo[:, None], g_hi[:, None]) * (
        r - r.clamp(lo, hi))
    return y.t().reshape(x.shape)


def _reference_stage2(act, x):
    """Stage 2 in plain PyTorch: the batched-matmul MLP at the clamped input, plus the tails."""
    lo, hi = act.domain
    r = x.reshape(-1, act.num_features).t()
    rc = r.clamp(lo, hi)
    y = reference.matmul_forward(rc, act.mlp.layers())
    y = y + torch.where(r < lo, act.tail[:, :1], act.tail[:, 1:]) * (r - rc)
    return y.t().reshape(x.shape)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("sign", SIGNS)
def test_stage1_matches_reference(sign, domain, dtype):
    act = _layer(sign, domain=domain, dtype=dtype)
    x = _inputs(domain, dtype)
    # the secant of the reference is exact to 1e-16 * |y| / h = 1e-11 in fp64 (fp32: its own
    # rounding is in the reference's fp64 evaluation, so the same) -> outside the domain allow
    # 1e-11 * |x - end| <= 1e-11 * 2 besides TOL
    want = _reference_stage1(act, x).to(dtype)
    torch.testing.assert_close(act(x), want, atol=TOL[dtype] + 3e-11, rtol=0)


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("sign", SIGNS)
def test_closed_form_end_slopes_match_autograd(sign, domain):
    """end_slopes vs autograd of the plain two-sign reference just inside each end (inside the
    end pieces: the first kink is >= 5e-4 of the width away)."""
    act = _layer(sign, domain=domain)
    peaks, coef = (t.detach() for t in act.valid_parameters())
    lo, hi = domain
    x = torch.tensor([lo + 1e-6, hi - 1e-6], dtype=F64).expand(act.num_features, 2)
    x = x.clone().requires_grad_()
    if sign == 0:
        y = nc.reference_forward(x, peaks, coef, domain=domain)
    else:
        u = (x - lo) / (hi - lo)
        c = coef.unsqueeze(-1)
        y = c[:, 0] * (reference.forward(u, peaks, None, sign) - u) + c[:, 1] * u + c[:, 2]
    gx, = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(end_slopes(peaks, coef, sign, domain), gx, atol=1e-12, rtol=1e-12)


def _direct_half_end_slopes(peaks, sign):
    """The end slopes as the sum they are, s_i / (a_0 ... a_i) and s_i / ((1 - a_0) a_1 ... a_i)
    (fp64: the products stay normal down to a_i = 1e-3 for D <= 64)."""
    s = reference.smooth_scales(peaks, sign)
    rise = torch.cumprod(peaks[:, :-1], dim=1)
    fall = rise / peaks[:, :1] * (1 - peaks[:, :1])
    return 1 + sign * (s / rise).sum(1), 1 - sign * (s / fall).sum(1)


def _bound_peaks(shape, dtype):
    """Feature 0 at the lower peak bound, 1 at the upper, 2 alternating (the extremes of what
    clamp_peaks_ leaves), any peaks shape [3, ..., D+1]."""
    lo, hi = PEAK_BOUNDS
    alternating = torch.where(torch.arange(shape[-1]) % 2 == 0, lo, hi).to(F64)
    return torch.stack([torch.full(shape[1:], lo, dtype=F64), torch.full(shape[1:], hi, dtype=F64),
                        alternating.expand(shape[1:])]).to(dtype)


@pytest.mark.parametrize("sign", [-1, 1])
def test_closed_form_end_slopes_at_the_peak_bounds(sign):
    """fp64 against the direct sum, fp32 against fp64: the telescoped form loses nothing. The
    direct sum cancels (1 - sum of O(1) terms), so it is only good to D ulps of 1: 2e-14."""
    for D in (1, 2, 16, MAX_HIDDEN):
        peaks = _bound_peaks((3, D + 1), F64)
        want = _direct_half_end_slopes(peaks, sign)
        for got, w in zip(half_end_slopes(peaks, sign), want):
            torch.testing.assert_close(got, w, rtol=1e-12, atol=2e-14)
        # fp32 against fp64 at the same (rounded) peaks: 1 - a_0 is exact, the quotient and
        # log1p / expm1 a few ulps each, the log-sum D ulps of |log P| <= 64 * 6.9: P's relative
        # error stays below 1e-5 (the reference's own 2e-14 absolute aside)
        p32 = peaks.float()
        for got, w in zip(half_end_slopes(p32, sign), _direct_half_end_slopes(p32.double(), sign)):
            torch.testing.assert_close(got.double(), w, rtol=1e-5, atol=2e-14)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("sign", SIGNS)
def test_finite_at_every_depth_and_peak_bound(sign, dtype):
    """Issue 18: products of small peaks underflowed in float32 (NaN from D = 13), though no
    parameter value may give NaN. Every depth the layer accepts, peaks at the clamp bounds:
    output and every gradient finite, in both stages."""
    x = torch.tensor([-1.5, -1.0, -0.9999, 0.0, 0.3, 0.9999, 1.0, 2.0], dtype=dtype)
    x = x[:, None].expand(8, 3).clone().requires_grad_()
    for D in range(1, MAX_HIDDEN + 1):
        act = CompositionalActivation(3, D, sign=sign, dtype=dtype)
        with torch.no_grad():
            act.peaks.copy_(_bound_peaks(act.peaks.shape, dtype))
        for stage in (1, 2):
            if stage == 2:
                act.to_relu()
            y = act(x)
            grads = torch.autograd.grad(y.square().sum(), [x, *act.parameters()])
            assert torch.isfinite(y).all(), (D, stage)
            for g in grads:
                assert torch.isfinite(g).all(), (D, stage)
        assert torch.isfinite(act.tail).all() and act.tail.abs().max() < 1e7


def test_issue_reproducer_float32_training_stays_finite():
    """The issue's run (it turned NaN at step 260; seed 2 here did at step 211): a feature's
    product of peaks goes far below float32's normal range (5e-46), and it must not matter."""
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), CompositionalActivation(16, 16),
                                torch.nn.Linear(16, 1))
    x = torch.rand(256, 2) * 2 - 1
    target = torch.sign(x[:, 0] * x[:, 1])[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(320):
        loss = (model(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        clamp_peaks_(model)
        assert all(torch.isfinite(p).all() for p in model.parameters())
    assert loss.item() < 0.5  # it learnt (the target has variance 1)
    a = CompositionalActivation(1, depth=16)
    a.peaks.data.fill_(1e-3)
    assert torch.isfinite(a(torch.tensor([[0.5]]))).all()


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("sign", SIGNS)
def test_to_relu_keeps_the_function_and_stage2_matches_reference(sign, domain, dtype):
    act = _layer(sign, domain=domain, dtype=dtype)
    x = _inputs(domain, dtype)
    before = act(x).detach()
    act.to_relu()
    assert act.stage.item() == 2 and not hasattr(act, "peaks")
    assert act.mlp.widths == (1,) + (9 if sign == 0 else 5,) * 4 + (1,)
    torch.testing.assert_close(act(x), before, atol=TOL[dtype], rtol=0)
    # a general stage-2 layer: perturb every weight, compare the fused path with the reference
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in act.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=F64).to(dtype))
    torch.testing.assert_close(act(x), _reference_stage2(act, x), atol=TOL[dtype], rtol=0)
    assert act.to_relu() is act  # idempotent


@pytest.mark.parametrize("sign", SIGNS)
def test_initialisation_is_silu_like_quadratic(sign):
    """Fresh layer: y = m + r q((x - m) / r), q(t) = t/2 +- t^2/4, to the Yarotsky error
    r 4^-(D+1) of the all-1/2 peaks (module docstring)."""
    domain, D = (-3.0, 5.0), 4
    act = CompositionalActivation(2, D, sign=sign, domain=domain, dtype=F64)
    m, r = 1.0, 4.0
    x = torch.linspace(*domain, 1001, dtype=F64)[:, None].expand(1001, 2)
    t = (x - m) / r
    q = t / 2 + (t**2 / 4 if sign <= 0 else -t**2 / 4)
    err = (act(x) - (m + r * q)).abs().max().item()
    assert err <= r * 4.0 ** -(D + 1) * (1 + 1e-9)
    assert err >= r * 4.0 ** -(D + 1) * 0.5  # the piecewise-linear error is really there


@pytest.mark.parametrize("sign", SIGNS)
def test_outside_domain_continues_the_end_pieces(sign):
    act = _layer(sign)
    lo, hi = act.domain
    F = act.num_features
    for stage in (1, 2):
        if stage == 2:
            act.to_relu()
        ends = torch.tensor([lo, hi], dtype=F64)[:, None].expand(2, F)
        y_end = act(ends).detach()
        far = torch.tensor([lo - 3.0, hi + 7.0, -1e30, 1e30], dtype=F64)[:, None].expand(4, F)
        y = act(far).detach()
        if stage == 1:
            tail = end_slopes(*(t.detach() for t in act.valid_parameters()), sign, act.domain)
        else:
            tail = act.tail.detach()
        tail = tail.t()  # [2, F]: slope at lo, slope at hi
        torch.testing.assert_close(y[0], y_end[0] - 3.0 * tail[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(y[1], y_end[1] + 7.0 * tail[1], atol=1e-12, rtol=0)
        assert torch.isfinite(y).all()
        # the gradient reaches inputs outside the domain: it is the tail slope
        xg = far[:2].clone().requires_grad_()
        gx, = torch.autograd.grad(act(xg).sum(), xg)
        torch.testing.assert_close(gx, tail, atol=1e-12, rtol=0)
        nan = act(torch.full((1, F), float("nan"), dtype=F64))
        assert torch.isnan(nan).all()  # NaN in, NaN out (never a finite value)


def test_stage1_tails_equal_stage2_tails_after_to_relu():
    act = _layer(0, domain=(-3.0, 5.0))
    x = torch.tensor([-50.0, -3.5, 5.25, 80.0], dtype=F64)[:, None].expand(4, 3)
    before = act(x).detach()
    act.to_relu()
    torch.testing.assert_close(act(x), before, atol=1e-12, rtol=1e-14)


@pytest.mark.parametrize("sign", SIGNS)
def test_gradcheck_stage1_and_stage2(sign):
    act = _layer(sign, F=2, D=3)
    x = _inputs(act.domain, batch=(4,), F=2).requires_grad_()
    for stage in (1, 2):
        if stage == 2:
            act.to_relu()
            # right after the encoding every t1 neuron has its kink exactly at the domain's ends
            # (W_k(0) = W_k(1) = 0), where clamped inputs are evaluated: move the kinks away,
            # since finite differences are only meaningful where the function is differentiable
            g = torch.Generator().manual_seed(3)
            with torch.no_grad():
                for p in act.mlp.parameters():
                    p.add_(0.01 * torch.randn(p.shape, generator=g, dtype=F64))
        names = [n for n, _ in act.named_parameters()]
        params = [p.detach().clone().requires_grad_() for p in act.parameters()]

        def f(x, *ps):
            return torch.func.functional_call(act, dict(zip(names, ps)), (x,))

        # stage 2 has hundreds of weights: a random projection of the Jacobian (fast_mode) each
        assert torch.autograd.gradcheck(f, (x, *params), fast_mode=stage == 2), stage


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(backend):
    torch._dynamo.reset()
    act = _layer(0, F=3, D=4)
    x = _inputs(act.domain, batch=(6,))
    for stage in (1, 2):
        if stage == 2:
            act.to_relu()
        compiled = torch.compile(act, fullgraph=True, backend=backend)
        eager = act(x)
        comp = compiled(x)
        torch.testing.assert_close(comp, eager, atol=1e-13, rtol=0)
        g_eager = torch.autograd.grad(eager.square().sum(), list(act.parameters()))
        g_comp = torch.autograd.grad(comp.square().sum(), list(act.parameters()))
        for a, b in zip(g_eager, g_comp):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
        if backend == "inductor":
            break  # one stage is enough for the slow backend


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("sign", SIGNS)
def test_state_dict_roundtrip_both_stages(sign):
    act = _layer(sign, domain=(-2.0, 3.0))
    x = _inputs(act.domain)
    s1 = _roundtrip(act.state_dict())
    y1 = act(x).detach()
    act.to_relu()
    with torch.no_grad():
        act.tail.mul_(1.5)  # a stage-2 state that stage 1 cannot express
    y2 = act(x).detach()
    s2 = _roundtrip(act.state_dict())
    assert int(s2["stage"]) == 2 and int(s1["stage"]) == 1

    fresh = CompositionalActivation(3, 4, sign=sign, domain=(-2.0, 3.0), dtype=F64)
    fresh.load_state_dict(s2)  # a fresh (stage-1) layer switches to stage 2
    assert fresh.stage.item() == 2
    assert torch.equal(fresh(x), y2)
    fresh.load_state_dict(s1)  # and back
    assert fresh.stage.item() == 1 and not hasattr(fresh, "mlp")
    assert torch.equal(fresh(x), y1)
    bad = dict(s1, stage=torch.tensor(3))
    with pytest.raises(RuntimeError, match="stage"):
        fresh.load_state_dict(bad)


def _snapshot(act):
    """Everything a load could change: stage, parameter objects, state, requires_grad."""
    return (act._stage, [id(p) for p in act.parameters()],
            {k: v.clone() for k, v in act.state_dict().items()},
            [p.requires_grad for p in act.parameters()])


def _assert_unchanged(act, snap):
    stage, ids, state, flags = snap
    assert act._stage == stage and [id(p) for p in act.parameters()] == ids
    now = act.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], v) for k, v in state.items())
    assert [p.requires_grad for p in act.parameters()] == flags


@pytest.mark.parametrize("stage", [1, 2])
def test_failed_load_leaves_the_layer_unchanged(stage):
    """Issue 18: a load that failed (size mismatch) had already switched the stage, deleting
    the trained parameters. Every failing state: nothing changes, in either stage."""
    act = _layer(0, F=3, D=5)
    if stage == 2:
        act.to_relu()
    snap = _snapshot(act)
    other = lambda D, to_relu: (lambda a: a.to_relu() if to_relu else a)(
        CompositionalActivation(3, D, dtype=F64)).state_dict()
    good2 = other(5, True)
    bad_states = [
        other(4, True),                                     # the issue's: other depth, stage 2
        other(4, False),                                    # other depth, stage 1
        dict(good2, **{"mlp.weights.2": torch.zeros(3, 9, 8, dtype=F64)}),  # one bad child
        dict(good2, stage=torch.tensor(3)),                 # no such stage
        dict(good2, stage=torch.tensor([2, 2])),            # not a scalar
        dict(good2, tail=[0.0, 0.0]),                       # not a tensor
    ]
    if stage == 1:  # a switch needs the whole new stage, even with strict=False
        bad_states.append({k: v for k, v in good2.items() if k != "mlp.biases.3"})
    for state in bad_states:
        with pytest.raises(RuntimeError, match="unchanged"):
            act.load_state_dict(state, strict=False)
        _assert_unchanged(act, snap)
    # inside a model, too (the layer's children would otherwise load after it)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3, dtype=F64), act)
    with pytest.raises(RuntimeError, match="size mismatch"):
        model.load_state_dict({"0.weight": torch.zeros(3, 3, dtype=F64),
                               "0.bias": torch.zeros(3, dtype=F64),
                               **{"1." + k: v for k, v in other(4, True).items()}})
    _assert_unchanged(act, snap)


def test_requires_grad_is_kept_across_stages():
    act = _layer(-1, F=2, D=3).requires_grad_(False)
    s1 = _roundtrip(act.state_dict())  # a copy: the stage buffer changes in place
    act.to_relu()
    assert not any(p.requires_grad for p in act.parameters())
    s2 = _roundtrip(act.state_dict())
    act.load_state_dict(s1)  # back to stage 1
    assert act._stage == 1 and not any(p.requires_grad for p in act.parameters())
    fresh = CompositionalActivation(2, 3, sign=-1, dtype=F64).requires_grad_(False)
    fresh.load_state_dict(s2)
    assert fresh._stage == 2 and not any(p.requires_grad for p in fresh.parameters())
    trainable = CompositionalActivation(2, 3, sign=-1, dtype=F64)
    trainable.load_state_dict(s2)
    assert all(p.requires_grad for p in trainable.parameters())


def test_clamp_peaks_projects_and_forward_never_uses_invalid_values():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3, dtype=F64),
                                CompositionalActivation(3, 3, sign=-1, dtype=F64))
    act = model[1]
    with torch.no_grad():
        act.peaks[0, 0] = 1.7
        act.peaks[1, 2] = -0.2
        act.coef[:, 0] = -1.0
    y = act(_inputs(act.domain))
    assert torch.isfinite(y).all()
    clamp_peaks_(model)
    lo, hi = PEAK_BOUNDS
    assert act.peaks.min().item() >= lo and act.peaks.max().item() <= hi
    assert (act.coef[:, 0] == 0).all()
    torch.testing.assert_close(act(_inputs(act.domain)), y, atol=0, rtol=0)


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(num_features=0), ValueError, "num_features"),
    (dict(num_features=2.0), TypeError, "num_features"),
    (dict(num_features=True), TypeError, "num_features"),
    (dict(depth=0), ValueError, "depth"),
    (dict(depth=1000), ValueError, "depth"),
    (dict(sign=2), ValueError, "sign"),
    (dict(sign=True), ValueError, "sign"),
    (dict(sign=-0.5), ValueError, "sign"),
    (dict(domain=(1.0, 1.0)), ValueError, "domain"),
    (dict(domain=(2.0, -1.0)), ValueError, "domain"),
    (dict(domain=(0.0, float("inf"))), ValueError, "domain"),
    (dict(domain=(float("nan"), 1.0)), ValueError, "domain"),
    (dict(domain=3), TypeError, "domain"),
    (dict(dtype=torch.float16), TypeError, "dtype"),
])
def test_bad_construction(kwargs, exc, name):
    args = dict(num_features=3) | kwargs
    with pytest.raises(exc, match=f"`{name}`"):
        CompositionalActivation(args.pop("num_features"), **args)


def test_bad_input():
    act = CompositionalActivation(3, 2, dtype=F64)
    with pytest.raises(ValueError, match="`input`.*last dimension"):
        act(torch.zeros(4, 5, dtype=F64))
    with pytest.raises(ValueError, match="`input`"):
        act(torch.tensor(1.0, dtype=F64))
    with pytest.raises(TypeError, match="^`input` has dtype torch.float32 but the layer has "
                                        "torch.float64$"):
        act(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="`input` must be float32 or float64"):
        act(torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="`input` must be a torch.Tensor"):
        act([[0.0, 0.0, 0.0]])
    act.to_relu()
    with pytest.raises(ValueError, match="`input`.*last dimension"):
        act(torch.zeros(4, 2, dtype=F64))
    with pytest.raises(RuntimeError, match="stage 2"):
        act.valid_parameters()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("stage", [1, 2])
def test_autocast_computes_in_the_parameters_dtype(stage, dtype):
    """Issue 18: under torch.autocast a Linear hands on bfloat16, which raised TypeError (GELU
    takes it). The layer computes in its parameters' dtype, as autocast's float32 ops do."""
    act = _layer(0, F=3, D=3, dtype=dtype)
    if stage == 2:
        act.to_relu()
    h = _inputs(act.domain, batch=(5,)).to(torch.bfloat16)  # what autocast hands on
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = act(h)
    assert y.dtype == dtype
    assert torch.equal(y, act(h.to(dtype)))  # the same computation, outside autocast
    model = torch.nn.Sequential(torch.nn.Linear(2, 3, dtype=dtype), act)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(torch.rand(5, 2, generator=torch.Generator().manual_seed(4), dtype=dtype))
    y.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_shapes_and_empty_batch():
    act = CompositionalActivation(4, 3)
    for shape in [(4,), (2, 4), (2, 3, 4), (0, 4)]:
        x = torch.rand(shape)
        y = act(x)
        assert y.shape == x.shape and y.dtype == torch.float32
    # feature f of every batch element goes through function f
    with torch.no_grad():
        act.coef[2, 3] += 1.0
    x = torch.rand(2, 3, 4)
    d = act(x) - CompositionalActivation(4, 3)(x)
    assert torch.allclose(d[..., 2], torch.ones(2, 3)) and (d[..., [0, 1, 3]] == 0).all()


@pytest.mark.parametrize("sign", SIGNS)
def test_short_training_lowers_the_loss_in_both_stages(sign):
    """Each of two features learns its own target with torch.optim.Adam: stage 1, then stage 2."""
    torch.manual_seed(0)
    act = CompositionalActivation(2, 4, sign=sign, dtype=F64)
    x = torch.linspace(-1, 1, 64, dtype=F64)[:, None].expand(64, 2)
    target = torch.stack([x[:, 0] ** 2 - 0.3, 0.5 * x[:, 1] ** 3 + 0.4 * x[:, 1].abs()], 1)
    if sign == 1:
        target = -target

    def run(steps, lr):
        opt = torch.optim.Adam(act.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            loss = (act(x) - target).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            act.clamp_peaks_()
            losses.append(loss.item())
        return losses, (act(x) - target).square().mean().item()

    l1, end1 = run(150, 1e-2)
    assert end1 < 0.5 * l1[0]
    act.to_relu()
    torch.testing.assert_close((act(x) - target).square().mean().item(), end1, rtol=1e-9, atol=0)
    l2, end2 = run(100, 1e-4)  # stage 2's rate for pretrained networks (docs/hyperparameters.md)
    assert end2 < end1


@cuda
@pytest.mark.parametrize("sign", SIGNS)
def test_cuda_matches_cpu(sign):
    act = _layer(sign)
    x = _inputs(act.domain)
    for stage in (1, 2):
        if stage == 2:
            act.to_relu()
        dev = CompositionalActivation(3, 4, sign=sign, dtype=F64, device="cuda")
        dev.load_state_dict(act.state_dict())
        xd = x.cuda().requires_grad_()
        xc = x.clone().requires_grad_()
        yd, yc = dev(xd), act(xc)
        torch.testing.assert_close(yd.cpu(), yc, atol=TOL[F64], rtol=0)
        gd, = torch.autograd.grad(yd.square().sum(), xd)
        gc, = torch.autograd.grad(yc.square().sum(), xc)
        torch.testing.assert_close(gd.cpu(), gc, atol=1e-10, rtol=0)
        with pytest.raises(ValueError, match="`input` is on cpu"):
            dev(x)
