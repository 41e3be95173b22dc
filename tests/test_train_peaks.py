"""The fused stage 1 (compnet_ext.train_peaks) against the step-by-step Adam path."""
import pytest
import torch

import compnet_ext
from compnet_ext import chunks
from conftest import cuda, make_adam, make_problem


def step_by_step(x, target, peaks, scales, sign, epochs, lr, bounds, record_every, adam="ours"):
    """loss_and_grad + Adam + clamp, one launch per step (the reference path). ``adam``: "ours"
    (compnet_ext.optim.BatchedAdam, the fused stage's arithmetic) or "torch" (torch.optim.Adam)."""
    params = [peaks.clone()] + ([scales.clone()] if scales is not None else [])
    opt = make_adam(adam, params, lr)
    curve = []
    for epoch in range(epochs):
        s = params[1].detach() if scales is not None else None
        loss, gp, gs = compnet_ext.loss_and_grad(x, target, params[0].detach(), s, sign)
        grads = [gp] + ([gs] if scales is not None else [])
        if record_every and epoch % record_every == 0:
            curve.append(loss)
        opt.step(grads)
        with torch.no_grad():
            params[0].clamp_(*bounds)
    p = params[0].detach()
    s = params[1].detach() if scales is not None else None
    final = compnet_ext.loss_and_grad(x, target, p, s, sign)[0]
    return p, s, final, torch.stack(curve, 1) if curve else None


def _problem(dtype, free, sign, seed=31):
    x, peaks, _ = make_problem(5, 6, 300, dtype=dtype, seed=seed)
    scales = compnet_ext.smooth_scales(peaks, sign) * 1.2 if free else None
    target = x**3 if sign < 0 else torch.sin(torch.pi / 2 * x)
    return x, target, peaks, scales


# Bitwise: the fused stage and loss_and_grad + BatchedAdam are the same build's arithmetic (one
# sweep, one reduction order, the same IEEE operations in the same order), so any difference is
# a bug, however many steps (Adam would amplify a last-bit difference, so a long run is the
# sharp test). Chunked launches must not change a bit either.
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("free", [False, True])
@pytest.mark.parametrize("sign", [-1, 1])
def test_matches_step_by_step_bitwise(dtype, free, sign, monkeypatch):
    x, target, peaks, scales = _problem(dtype, free, sign)
    bounds, epochs = (1e-4, 1 - 1e-4), 40
    ref = step_by_step(x, target, peaks, scales, sign, epochs, 0.02, bounds, 3)
    one = compnet_ext.train_peaks(x, target, peaks, scales, sign, epochs=epochs, lr=0.02,
                                  peak_bounds=bounds, record_every=3)
    monkeypatch.setattr(chunks, "CHUNK_SECONDS", 0.0)  # one record_every's worth per launch
    many = compnet_ext.train_peaks(x, target, peaks, scales, sign, epochs=epochs, lr=0.02,
                                   peak_bounds=bounds, record_every=3)
    for got in (one, many):
        assert got[3].shape == (5, 14)
        for a, b in zip(got, ref):
            assert (a is None and b is None) or torch.equal(a, b)
    if free:
        assert torch.equal(one[0][:, -1], peaks[:, -1]), "the unused last peak must not move"
    assert (one[2] < one[3][:, 0]).all(), "Adam steps should lower every seed's loss"


# Against torch.optim.Adam, one step (Adam amplifies last-bit differences over many, so only a
# single step has a bound): with the same gradient g, both compute the step
# lr * m_hat / (sqrt(v_hat) + eps) = lr * g / (|g| + eps), so |step| <= lr, in about eight
# operations that each round to within an ulp (torch's sqrt is not correctly rounded, but
# within an ulp), so the steps differ by at most ~8 u lr (u: unit roundoff); adding the step to
# p rounds by at most u |p| on each side: |difference| <= 8 u lr + 2 u max|p|.
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("free", [False, True])
def test_one_step_matches_torch_adam(dtype, free):
    x, target, peaks, scales = _problem(dtype, free, -1)
    u = torch.finfo(dtype).eps / 2
    lr = 0.02
    ours = step_by_step(x, target, peaks, scales, -1, 1, lr, (1e-4, 1 - 1e-4), 0)
    theirs = step_by_step(x, target, peaks, scales, -1, 1, lr, (1e-4, 1 - 1e-4), 0, adam="torch")
    for a, b in zip(ours[:2], theirs[:2]):
        if a is not None:
            assert (a - b).abs().max() <= 8 * u * lr + 2 * u * b.abs().max()
    assert not torch.equal(ours[0], peaks), "the step must move the peaks"


def test_zero_epochs_and_deterministic():
    x, peaks, scales = make_problem(9, 5, 200, free=True, seed=32)
    p, s, loss, curve = compnet_ext.train_peaks(x, x**3, peaks, scales, epochs=0, record_every=5)
    assert torch.equal(p, peaks) and torch.equal(s, scales) and curve.shape == (9, 0)
    assert torch.equal(loss, compnet_ext.loss_and_grad(x, x**3, peaks, scales)[0])
    first = compnet_ext.train_peaks(x, x**3, peaks, epochs=25, lr=0.05)
    again = compnet_ext.train_peaks(x, x**3, peaks, epochs=25, lr=0.05)
    assert all(a is None or torch.equal(a, b) for a, b in zip(first, again))


def test_peaks_stay_within_bounds():
    x, peaks, _ = make_problem(20, 8, 100, seed=33)
    p, *_ = compnet_ext.train_peaks(x, 1 - x, peaks, epochs=50, lr=0.5, peak_bounds=(0.1, 0.9))
    assert p.min() >= 0.1 and p.max() <= 0.9
    assert ((p == 0.1) | (p == 0.9)).any(), "a large learning rate should reach a bound"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=-1), "`epochs` must be an int >= 0"),
        (dict(epochs=1.5), "`epochs`"),
        (dict(epochs=3, record_every=-2), "`record_every`"),
        (dict(epochs=3, peak_bounds=(0.0, 0.5)), "`peak_bounds`"),
        (dict(epochs=3, peak_bounds=(0.6, 0.5)), "`peak_bounds`"),
        # beyond the op schema's int64 / unpacking errors that named no argument
        (dict(epochs=2**63), "`epochs` must be an int >= 0"),
        (dict(epochs=3, record_every=2**63), "`record_every`"),
        (dict(epochs=3, peak_bounds=(0.1, 0.5, 0.9)), "`peak_bounds` must be a pair"),
        (dict(epochs=3, peak_bounds=0.5), "`peak_bounds` must be a pair"),
        (dict(epochs=3, peak_bounds=(0.1, None)), "`peak_bounds` must be a pair"),
        (dict(epochs=3, lr=10**400), "`lr`"),  # too large for a float
        (dict(epochs=3, eps=10**400), "`eps`"),
    ],
)
def test_bad_hyper_parameters(kwargs, match):
    x, peaks, _ = make_problem(2, 3, 10, seed=34)
    with pytest.raises(ValueError, match=match):
        compnet_ext.train_peaks(x, x, peaks, **kwargs)


@pytest.mark.parametrize("kwargs, match", [(dict(lr=float("nan")), "`lr`"), (dict(betas=(0.9, 1.0)), "`betas`"),
                                           (dict(eps=0.0), "`eps`")])
def test_bad_adam_settings(kwargs, match):
    x, peaks, _ = make_problem(2, 3, 10, seed=35)
    with pytest.raises(ValueError, match=match):
        compnet_ext.train_peaks(x, x, peaks, epochs=2, **kwargs)
    adam = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)  # the op checks them too
    adam.update({k: v for k, v in kwargs.items() if k != "betas"})
    adam.update(zip(("beta1", "beta2"), kwargs.get("betas", ())))
    with pytest.raises(RuntimeError, match=match):
        torch.ops.compnet_ext.train_peaks(x, x, peaks, None, -1, 2, adam["lr"], adam["beta1"],
                                          adam["beta2"], adam["eps"], 1e-4, 1 - 1e-4, 0, True)


def test_opcheck_and_empty():
    x, peaks, scales = make_problem(3, 4, 20, free=True, seed=36)
    args = (x, x**2, peaks, scales, -1, 5, 0.01, 0.9, 0.999, 1e-8, 1e-4, 1 - 1e-4, 2, True)
    torch.library.opcheck(torch.ops.compnet_ext.train_peaks, args)
    p, s, loss, curve = compnet_ext.train_peaks(x[:0], x[:0], peaks, scales, epochs=3)
    assert torch.equal(p, peaks) and torch.all(loss == 0)


def _first_step_bounds(x, target, peaks, scales, lr, eps=1e-8):
    """Per parameter, how far the first Adam step (``lr * g / (|g| + eps)``) of two correct
    implementations can differ when they sum the same per-point gradient terms t_n in different
    orders: their gradients differ by at most B = 2 (N + 4 D) u sum_n |t_n| (Higham's bound for
    each order, and 4 roundings per layer in the terms should they differ too), so the steps by at
    most lr B / (|g| - B + eps) while |g| > B, else by 2 lr (the sign can flip); plus the update's
    own rounding, 8 u lr + 2 u |p|. Returns (bounds for peaks and scales, the gradients)."""
    N, D = x.shape[-1], scales.shape[1]
    u = torch.finfo(x.dtype).eps / 2
    g = compnet_ext.loss_and_grad(x, target, peaks, scales)[1:]
    # sum_n |t_n| = mean_n |gradient of the one-point MSE at x_n|: one batch of S x N one-point
    # networks
    S = peaks.shape[0]
    per_point = compnet_ext.loss_and_grad(
        x.expand(S, N).reshape(S * N, 1), target.expand(S, N).reshape(S * N, 1),
        peaks.repeat_interleave(N, 0), scales.repeat_interleave(N, 0))[1:]
    bounds = []
    for gk, t, p in zip(g, per_point, (peaks, scales)):
        B = 2 * (N + 4 * D) * u * t.abs().view(S, N, -1).mean(1)
        step = torch.where(gk.abs() > B, lr * B / (gk.abs() - B + eps), torch.full_like(B, 2 * lr))
        step[B == 0] = 0  # every term exactly 0 (the unused last peak): g = 0 in any order
        bounds.append(step + 8 * u * lr + 2 * u * p.abs())
    return bounds, g


def _compare_free_first_epoch(x, peaks, scales, cpu, gpu, tol):
    """Free scales, one epoch: see test_cuda_matches_cpu."""
    bounds, _ = _first_step_bounds(x, x**3, peaks, scales, 0.01)
    for a, b, bound in zip(gpu[:2], cpu[:2], bounds):
        assert ((a - b).abs() <= bound).all()
    # The loss at the trained parameters, for the seeds whose every step is sign-safe: the
    # first-order effect of the measured difference (the loss is steep: |dL/dpeak| up to ~1e4)
    # plus its own rounding.
    safe = (bounds[0] < 0.01).all(1) & (bounds[1] < 0.01).all(1)
    _, gp, gs = compnet_ext.loss_and_grad(x, x**3, cpu[0], cpu[1])
    moved = ((gpu[0] - cpu[0]).abs() * gp.abs()).sum(1) + ((gpu[1] - cpu[1]).abs() * gs.abs()).sum(1)
    assert safe.float().mean() >= 0.5, "too few seeds to compare the loss"
    assert ((gpu[2] - cpu[2]).abs() <= 2 * moved + tol * cpu[2].abs().clamp_min(1))[safe].all()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_first_step_bounds_hold_for_another_summation_order(dtype, tol):
    # The points in another order: the same per-point terms summed in another order, as the GPU's
    # reduction does; the check test_cuda_matches_cpu makes must hold (measured: <= 4% of it).
    x, peaks, scales = make_problem(37, 16, 500, dtype=dtype, free=True, seed=37)
    perm = torch.randperm(500, generator=torch.Generator().manual_seed(0))
    one = compnet_ext.train_peaks(x, x**3, peaks, scales, epochs=1, lr=0.01)
    other = compnet_ext.train_peaks(x[perm], x[perm] ** 3, peaks, scales, epochs=1, lr=0.01)
    assert not all(torch.equal(a, b) for a, b in zip(one, other)), "the order should matter"
    _compare_free_first_epoch(x, peaks, scales, one, other, tol)


# What is well-posed to compare between the GPU and the CPU (docs/training.md, "Reproducible
# across machines and builds"). Smooth scales: the training map does not amplify rounding (two
# starts one ulp apart stay within ~1e-15 after 30 epochs, bench/divergence.py), so 30 epochs
# compare to a few hundred ulps. Free scales amplify a last-bit difference 10-1000x per epoch
# (0.16 after 30 epochs between two correct CPU builds), so only the first epoch is compared,
# each parameter within the bound that the two summation orders allow (_first_step_bounds: a
# gradient smaller than its sum's rounding may flip sign, and Adam's first step is lr x sign(g)).
@cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("free", [False, True])
def test_cuda_matches_cpu(dtype, tol, free):
    x, peaks, scales = make_problem(37, 16, 500, dtype=dtype, free=free, seed=37)
    epochs = 1 if free else 30
    train = lambda *a: compnet_ext.train_peaks(*a, epochs=epochs, lr=0.01, record_every=10)
    cpu = train(x, x**3, peaks, scales)
    to = lambda t: None if t is None else t.cuda()
    gpu = [None if t is None else t.cpu() for t in train(to(x), to(x**3), to(peaks), to(scales))]
    assert (gpu[3] - cpu[3]).abs().max() <= tol * cpu[3].abs().max().clamp_min(1)  # before step 1
    if free:
        _compare_free_first_epoch(x, peaks, scales, cpu, gpu, tol)
    else:
        for a, b in zip(gpu[:3], cpu[:3]):
            if b is not None:
                assert (a - b).abs().max() <= tol * b.abs().max().clamp_min(1)
    deep = make_problem(3, 400, 100, seed=38, device="cuda")  # more than 4 warps' shared memory
    compnet_ext.train_peaks(deep[0], deep[0] ** 3, deep[1], epochs=2)
