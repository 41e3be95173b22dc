"""CUDA-graph capture (issue 19): the ops with validate=False, the reference, and a training loop
written with loss_and_grad and BatchedAdam(capturable=True) capture and replay to eager's result.

A capture fails on any read of a device value on the host. Such reads show on any device as the
aten ops that make them (``item``, ``nonzero``, ``unique``, ...), so the CPU tests record the ops
that a call dispatches and look for them; the GPU tests capture, replay and compare.
"""
import pytest
import torch
from torch.profiler import profile

import compnet_ext
from compnet_ext import reference
from compnet_ext.activation import CompositionalActivation
from compnet_ext.nn import BatchedMLP
from compnet_ext.ops import PEAK_BOUNDS
from compnet_ext.optim import BatchedAdam
from conftest import cuda, make_problem

# aten ops that read a device value on the host (a sync; "operation not permitted when stream is
# capturing")
HOST_READS = ("aten::item", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::nonzero",
              "aten::unique", "aten::_unique", "aten::_unique2", "aten::unique_consecutive",
              "aten::unique_dim", "aten::equal", "aten::allclose")


def host_reads(fn):
    """The host-reading aten ops that ``fn()`` dispatches."""
    with profile() as prof:
        fn()
    return sorted({e.name for e in prof.events()} & set(HOST_READS))


def _training_step(x, target, peaks, opt):
    _, gp, _ = compnet_ext.loss_and_grad(x, target, peaks, validate=False)
    opt.step([gp])
    peaks.clamp_(*PEAK_BOUNDS)


def _fwd_bwd(op, x, peaks, scales):
    p = peaks.detach().requires_grad_()
    s = None if scales is None else scales.detach().requires_grad_()
    y = op(x, p, s, -1)
    return (y, *torch.autograd.grad((y * y).sum(), [p] + ([s] if s is not None else [])))


@pytest.mark.parametrize("free", [False, True])
def test_ops_with_validate_false_read_nothing_on_the_host(free):
    x, peaks, scales = make_problem(3, 4, 20, free=free, seed=91)
    fused = lambda *a: compnet_ext.forward(*a, validate=False)
    assert host_reads(lambda: _fwd_bwd(fused, x, peaks, scales)) == []
    assert host_reads(lambda: compnet_ext.loss_and_grad(x, x**2, peaks, scales,
                                                        validate=False)) == []
    assert host_reads(lambda: _fwd_bwd(reference.forward, x, peaks, scales)) == []
    assert host_reads(lambda: reference.loss_and_grad(x, x**2, peaks, scales)) == []


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("sign", [-1, 0, 1])
def test_the_activation_layer_reads_nothing_on_the_host(sign, stage):
    # its end slopes in closed form (no cumprod, whose backward reads .item()), the ops inside
    # with validate=False, and the stage-2 MLP
    layer = CompositionalActivation(3, 4, sign=sign, domain=(-2.0, 2.0), dtype=torch.float64)
    if stage == 2:
        layer.to_relu()
    x = torch.linspace(-3, 3, 21, dtype=torch.float64).reshape(7, 3)  # inside and outside
    assert host_reads(lambda: layer(x).square().sum().backward()) == []


def _mlp_calls(device="cpu", dtype=torch.float64):
    """BatchedMLP's per-call paths (the paper's widths): forward+backward through its own autograd
    node, loss_and_grad, and the no-grad forward; each returns its output tensors."""
    g = torch.Generator().manual_seed(97)
    mlp = BatchedMLP(30, generator=g, dtype=dtype).to(device)
    x = torch.rand(30, 500, generator=g, dtype=dtype).to(device)
    target = x.square()
    params = list(mlp.parameters())

    def fwd_bwd():
        y = mlp(x)
        return (y, *torch.autograd.grad((y * y).sum(), params))

    def loss_and_grad():
        loss, grads = mlp.loss_and_grad(x, target)
        return (loss, *(t for pair in grads for t in pair))

    def forward():
        with torch.no_grad():
            return (mlp(x),)

    return mlp, {"forward+backward": fwd_bwd, "loss_and_grad": loss_and_grad, "forward": forward}


def test_the_batched_mlp_reads_nothing_on_the_host():
    for name, fn in _mlp_calls()[1].items():
        assert host_reads(fn) == [], name


def test_capturable_adam_reads_nothing_on_the_host():
    x, peaks, _ = make_problem(3, 4, 20, seed=92)
    warmup = torch.tensor([0, 2, 5])
    plain = BatchedAdam([peaks.clone()], 1e-2, warmup=warmup)
    # the detector sees the default step's reads (distinct step counts, the warm-up check)
    assert host_reads(lambda: _training_step(x, x**2, plain.params[0], plain)) != []
    opt = BatchedAdam([peaks.clone()], 1e-2, warmup=warmup, capturable=True)
    assert host_reads(lambda: _training_step(x, x**2, opt.params[0], opt)) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_capturable_adam_agrees_with_the_default_to_rounding(dtype):
    x, peaks, _ = make_problem(4, 5, 50, dtype=dtype, seed=93)
    target = x**2
    lr = torch.tensor([1e-2, 2e-2, 5e-3, 1e-2], dtype=torch.float64)
    warmup = torch.tensor([0, 3, 6, 1])
    runs = []
    for capturable in (False, True):
        a = BatchedAdam([peaks[:2].clone()], lr[:2], warmup=warmup[:2], capturable=capturable)
        b = BatchedAdam([peaks[2:].clone()], lr[2:], warmup=warmup[2:], capturable=capturable)
        _training_step(x, target, a.params[0], a)  # a is one step ahead of b when they join
        opt = BatchedAdam.cat([a, b], [torch.cat([a.params[0], b.params[0]])])
        assert opt.capturable == capturable
        for _ in range(12):
            _training_step(x, target, opt.params[0], opt)
        runs.append(opt.params[0])
    # The bias corrections differ by a few ulps of float64 (pow vs ipow); 12 Adam steps carry
    # that into the peaks at the rounding of the parameters' dtype.
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(runs[1], runs[0], rtol=64 * eps, atol=64 * eps)
    assert not torch.equal(runs[0], peaks)


# ---------------------------------------------------------------------------------------------
# on a GPU: capture, replay, compare with eager


def _capture(fn, warmup=2):
    """A CUDA graph of ``fn()`` and its static outputs (warmed up on a side stream first, as
    torch.cuda.graph requires)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("free", [False, True])
def test_ops_capture_and_replay(dtype, free):
    x, peaks, scales = make_problem(30, 5, 500, dtype=dtype, free=free, seed=94, device="cuda")
    target = x**2
    fused = lambda *a: compnet_ext.forward(*a, validate=False)
    calls = {
        "forward+backward": lambda: _fwd_bwd(fused, x, peaks, scales),
        "loss_and_grad": lambda: tuple(t for t in compnet_ext.loss_and_grad(
            x, target, peaks, scales, validate=False) if t is not None),
        "reference forward+backward": lambda: _fwd_bwd(reference.forward, x, peaks, scales),
    }
    first = peaks.clone()
    for name, fn in calls.items():
        graph, out = _capture(fn)
        peaks.copy_(first * 0.5 + 0.25)  # a replay reads the static inputs' current values
        graph.replay()
        torch.cuda.synchronize()
        for a, b in zip(out, fn()):
            assert torch.equal(a, b), name
        peaks.copy_(first)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_mlp_capture_and_replay(dtype):
    mlp, calls = _mlp_calls("cuda", dtype)
    for name, fn in calls.items():
        graph, out = _capture(fn)
        with torch.no_grad():  # a replay reads the parameters' current values
            for p in mlp.parameters():
                p.mul_(0.75)
        graph.replay()
        torch.cuda.synchronize()
        for a, b in zip(out, fn(), strict=True):
            assert torch.equal(a, b), name


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_loop_capture_and_replay(dtype):
    """loss_and_grad + BatchedAdam(capturable=True) + clamp, captured once and replayed: each
    replay is the next step, bitwise eager's (the same kernels on the same values)."""
    x, peaks, _ = make_problem(64, 5, 500, dtype=dtype, seed=95, device="cuda")
    target = x**2
    warmup = torch.arange(64) % 4
    make = lambda p: BatchedAdam([p], 1e-2, warmup=warmup, capturable=True)
    scratch = make(peaks.clone())  # the warm-up steps run on a copy, so both runs start alike
    _capture(lambda: _training_step(x, target, scratch.params[0], scratch), warmup=3)
    eager, graphed = make(peaks.clone()), make(peaks.clone())
    graph, _ = _capture(lambda: _training_step(x, target, graphed.params[0], graphed), warmup=0)
    for _ in range(7):
        graph.replay()
        _training_step(x, target, eager.params[0], eager)
    torch.cuda.synchronize()
    assert torch.equal(graphed.t, eager.t) and int(eager.t[0]) == 7
    assert torch.equal(graphed.params[0], eager.params[0])
    assert not torch.equal(eager.params[0], peaks)


@cuda
def test_fused_stage1_capture_runs_as_one_launch():
    """train_peaks inside a capture: no chunk timing (no sync), and the same bits as eager."""
    x, peaks, _ = make_problem(32, 5, 200, dtype=torch.float32, seed=96, device="cuda")
    run = lambda: compnet_ext.train_peaks(x, x**2, peaks, epochs=50, record_every=10,
                                          validate=False)
    graph, out = _capture(run)
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(out, run()):
        assert (a is None and b is None) or torch.equal(a, b)
