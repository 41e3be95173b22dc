"""CUDA kernels against the CPU kernels and the reference (skipped without a GPU)."""
import pytest
import torch

import compnet_ext
from compnet_ext import reference
from conftest import cuda, make_problem


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("free", [False, True])
@pytest.mark.parametrize("shared_x", [True, False])
def test_cuda_matches_cpu(dtype, free, shared_x):
    x, peaks, scales = make_problem(37, 40, 1000, dtype=dtype, free=free, shared_x=shared_x, seed=23)
    target = x**3
    to = lambda t: None if t is None else t.cuda()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for sign in (-1, 1):
        y_cpu = compnet_ext.forward(x, peaks, scales, sign)
        y_gpu = compnet_ext.forward(to(x), to(peaks), to(scales), sign)
        assert (y_gpu.cpu() - y_cpu).abs().max() <= tol
        cpu = compnet_ext.loss_and_grad(x, target, peaks, scales, sign)
        gpu = compnet_ext.loss_and_grad(to(x), to(target), to(peaks), to(scales), sign)
        for a, b in zip(gpu, cpu):
            if b is not None:
                assert ((a.cpu() - b).abs().max() / b.abs().max().clamp_min(1)) <= tol
        again = compnet_ext.loss_and_grad(to(x), to(target), to(peaks), to(scales), sign)
        assert all(a is None or torch.equal(a, b) for a, b in zip(gpu, again))
        xs = to(x).clone().requires_grad_()
        ps = to(peaks).clone().requires_grad_()
        compnet_ext.forward(xs, ps, to(scales), sign).sum().backward()
        xc = x.clone().requires_grad_()
        pc = peaks.clone().requires_grad_()
        reference.forward(xc, pc, scales, sign).sum().backward()
        assert ((ps.grad.cpu() - pc.grad).abs().max() / pc.grad.abs().max()) <= tol
        assert ((xs.grad.cpu() - xc.grad).abs().max() / xc.grad.abs().max()) <= tol


@cuda
def test_cuda_deep_and_opcheck():
    x, peaks, _ = make_problem(5, 512, 300, seed=24, device="cuda")
    y = compnet_ext.forward(x, peaks)
    assert (y - reference.forward(x, peaks)).abs().max() <= 1e-12
    loss, gp, _ = compnet_ext.loss_and_grad(x, x**3, peaks)
    rloss, rgp, _ = reference.loss_and_grad(x, x**3, peaks)
    assert ((gp - rgp).abs().max() / rgp.abs().max()) <= 1e-10
    torch.library.opcheck(torch.ops.compnet_ext.loss_and_grad, (x, x**3, peaks, None, -1, True))
    with pytest.raises(RuntimeError, match="`peaks` must lie"):
        compnet_ext.forward(x, peaks * 2)
