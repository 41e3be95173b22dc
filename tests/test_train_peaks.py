"""The fused stage 1 (compnet_ext.train_peaks) against the step-by-step Adam path."""
import pytest
import torch

import compnet_ext
from conftest import cuda, make_problem


def step_by_step(x, target, peaks, scales, sign, epochs, lr, bounds, record_every):
    """loss_and_grad + torch.optim.Adam + clamp, one launch per step (the reference path)."""
    p = torch.nn.Parameter(peaks.clone())
    params = [p] + ([torch.nn.Parameter(scales.clone())] if scales is not None else [])
    opt = torch.optim.Adam(params, lr=lr)
    curve = []
    for epoch in range(epochs):
        loss, p.grad, gs = compnet_ext.loss_and_grad(x, target, p.detach(),
                                                     params[1].detach() if scales is not None else None, sign)
        if scales is not None:
            params[1].grad = gs
        if record_every and epoch % record_every == 0:
            curve.append(loss)
        opt.step()
        with torch.no_grad():
            p.clamp_(*bounds)
    s = params[1].detach() if scales is not None else None
    final = compnet_ext.loss_and_grad(x, target, p.detach(), s, sign)[0]
    return p.detach(), s, final, torch.stack(curve, 1) if curve else None


# fp32: 2 steps, 4 ulps of a peak in (0, 1).
@pytest.mark.parametrize("dtype,epochs,tol", [(torch.float64, 8, 1e-13), (torch.float32, 2, 2.5e-7)])
@pytest.mark.parametrize("free", [False, True])
@pytest.mark.parametrize("sign", [-1, 1])
def test_matches_step_by_step_adam(dtype, epochs, tol, free, sign):
    x, peaks, _ = make_problem(5, 6, 300, dtype=dtype, seed=31)
    scales = compnet_ext.smooth_scales(peaks, sign) * 1.2 if free else None
    target = x**3 if sign < 0 else torch.sin(torch.pi / 2 * x)
    bounds = (1e-4, 1 - 1e-4)
    # Short runs: Adam amplifies last-bit differences (it normalises tiny gradient components
    # to steps of size lr), so trajectories that agree to the last bit at step 2 part
    # exponentially (fp64 here: 5e-15 at step 8, 5e-13 at step 12, 1e-8 at step 40; fp32: 1.2e-7 at step 2,
    # 1e-6 at step 4, 1e-4 at step 8). torch's fp32 Adam kernels round differently in the last
    # bit (they use FMAs where this update does not).
    p, s, loss, curve = compnet_ext.train_peaks(x, target, peaks, scales, sign, epochs=epochs,
                                                lr=0.02, peak_bounds=bounds, record_every=2)
    rp, rs, rloss, rcurve = step_by_step(x, target, peaks, scales, sign, epochs, 0.02, bounds, 2)
    assert curve.shape == (5, (epochs + 1) // 2)
    assert (p - rp).abs().max() <= tol
    assert ((loss - rloss).abs() <= tol * rloss.abs().max()).all()
    assert ((curve - rcurve).abs() <= tol * rcurve.abs().max()).all()
    if free:
        assert (s - rs).abs().max() <= tol * rs.abs().max()
        assert torch.equal(p[:, -1], peaks[:, -1]), "the unused last peak must not move"
    assert (loss < curve[:, 0]).all(), "a few Adam steps should lower every seed's loss"
    if dtype == torch.float64:  # one step: bitwise the same update as torch.optim.Adam
        one = compnet_ext.train_peaks(x, target, peaks, scales, sign, epochs=1, lr=0.02)
        assert torch.equal(one[0], step_by_step(x, target, peaks, scales, sign, 1, 0.02, bounds, 0)[0])


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


@cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("free", [False, True])
def test_cuda_matches_cpu(dtype, tol, free):
    x, peaks, scales = make_problem(37, 16, 500, dtype=dtype, free=free, seed=37)
    cpu = compnet_ext.train_peaks(x, x**3, peaks, scales, epochs=30, lr=0.01, record_every=10)
    to = lambda t: None if t is None else t.cuda()
    gpu = compnet_ext.train_peaks(to(x), to(x**3), to(peaks), to(scales), epochs=30, lr=0.01,
                                  record_every=10)
    for a, b in zip(gpu, cpu):
        if b is not None:
            assert (a.cpu() - b).abs().max() <= tol * b.abs().max().clamp_min(1)
    deep = make_problem(3, 400, 100, seed=38, device="cuda")  # more than 4 warps' shared memory
    compnet_ext.train_peaks(deep[0], deep[0] ** 3, deep[1], epochs=2)
