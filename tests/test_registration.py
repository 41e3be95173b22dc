"""torch.library integration: opcheck, torch.compile, fp64 gradcheck, determinism."""
import pytest
import torch

import compnet_ext
from conftest import make_problem

ops = torch.ops.compnet_ext


@pytest.mark.parametrize("free", [False, True])
@pytest.mark.parametrize("shared_x", [True, False])
def test_gradcheck_fp64(free, shared_x):
    x, peaks, scales = make_problem(3, 4, 6, free=free, shared_x=shared_x, seed=11)
    x = x.clamp(0.05, 0.95)  # keep the finite differences inside [0, 1]
    inputs = [t.clone().requires_grad_() for t in (x, peaks) + ((scales,) if free else ())]
    for sign in (-1, 1):
        f = lambda *a: compnet_ext.forward(*a, sign=sign)
        assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("free", [False, True])
def test_opcheck(free):
    x, peaks, scales = make_problem(3, 5, 17, free=free, seed=12)
    for args in [
        (x.clone().requires_grad_(), peaks.clone().requires_grad_(),
         None if scales is None else scales.clone().requires_grad_(), -1, True),
        (x, peaks, scales, 1, False),
    ]:
        torch.library.opcheck(ops.forward, args)
    grad_y = torch.randn(3, 17, dtype=torch.float64)
    torch.library.opcheck(ops.backward, (grad_y, x, peaks, scales, -1, True, True, True))
    torch.library.opcheck(ops.loss_and_grad, (x, x**3, peaks, scales, -1, True))


def test_torch_compile_fullgraph():
    x, peaks, scales = make_problem(4, 6, 33, free=True, seed=13)

    def f(x, peaks, scales):
        y = compnet_ext.forward(x, peaks, scales, sign=-1) + compnet_ext.forward(x, peaks, sign=1)
        return (y**2).mean()

    compiled = torch.compile(f, fullgraph=True)  # default backend (inductor)
    p1, p2 = peaks.clone().requires_grad_(), peaks.clone().requires_grad_()
    eager, comp = f(x, p1, scales), compiled(x, p2, scales)
    assert torch.allclose(eager, comp, rtol=1e-14, atol=0)
    eager.backward()
    comp.backward()
    assert torch.allclose(p1.grad, p2.grad, rtol=1e-12, atol=0)

    lag = torch.compile(lambda *a: compnet_ext.loss_and_grad(*a, sign=-1), fullgraph=True,
                        backend="aot_eager")
    for a, b in zip(lag(x, x**3, peaks, scales), compnet_ext.loss_and_grad(x, x**3, peaks, scales)):
        assert torch.equal(a, b)


def test_gradients_are_bitwise_deterministic_across_runs_and_thread_counts():
    x, peaks, scales = make_problem(37, 16, 1000, dtype=torch.float32, free=True, seed=14)
    target = x**3
    threads = torch.get_num_threads()
    try:
        first = compnet_ext.loss_and_grad(x, target, peaks, scales)
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            for _ in range(2):
                again = compnet_ext.loss_and_grad(x, target, peaks, scales)
                assert all(torch.equal(a, b) for a, b in zip(first, again))
            p = peaks.clone().requires_grad_()
            compnet_ext.forward(x, p, scales).sum().backward()
            if n == 1:
                g1 = p.grad
            else:
                assert torch.equal(g1, p.grad)
    finally:
        torch.set_num_threads(threads)


DEVICES = ["cpu"] + (["cuda"] if compnet_ext.WITH_CUDA and torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("free", [False, True])
@pytest.mark.parametrize("shared_x", [True, False])
def test_eager_autograd_node_equals_the_registered_autograd(device, free, shared_x):
    """Eager calls record compnet_ext.forward's C++ node (csrc/compnet/autograd.cpp): the same
    kernels as the op's registered autograd, so the same bits, for any inputs needing grad."""
    x, peaks, scales = make_problem(3, 5, 17, dtype=torch.float32, free=free, shared_x=shared_x,
                                    seed=15, device=device)
    grad_y = torch.randn(3, 17, generator=torch.Generator().manual_seed(16)).to(device)
    names = ["x", "peaks"] + (["scales"] if free else [])
    for wanted in [{n} for n in names] + [set(names)]:
        results = []
        for call in (compnet_ext.forward, lambda *a: ops.forward(*a, True)):
            leaves = {n: t.clone().requires_grad_(n in wanted)
                      for n, t in zip(names, (x, peaks, scales))}
            y = call(leaves["x"], leaves["peaks"], leaves.get("scales"), -1)
            y.backward(grad_y)
            results.append((y, [leaves[n].grad for n in names]))
        (y, grads), (y_reg, grads_reg) = results
        assert "CompnetForward" in y.grad_fn.name()
        assert torch.equal(y, y_reg)
        for n, a, b in zip(names, grads, grads_reg):
            assert (a is None) == (n not in wanted) == (b is None)
            assert a is None or torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shared_x", [True, False])
def test_mlp_eager_autograd_node_equals_the_registered_autograd(device, shared_x):
    """Eager BatchedMLP calls record one C++ node (csrc/mlp/autograd.cpp) that packs the
    parameters itself: the same kernels as mlp_forward's registered autograd on the packed row,
    so the same bits, for any inputs needing grad; each W and b gets its slice of the row."""
    from compnet_ext.mlp_ops import mlp_forward, pack_tensors
    from compnet_ext.nn import BatchedMLP

    S, N = 3, 17
    mlp = BatchedMLP(S, (1, 4, 3, 1), generator=torch.Generator().manual_seed(18)).to(device)
    tensors = [t.detach() for layer in mlp.layers() for t in layer]
    g = torch.Generator().manual_seed(19)
    x = torch.rand(N if shared_x else (S, N), generator=g).to(device)
    grad_y = torch.randn(S, N, generator=g).to(device)
    widths = list(mlp.widths)
    for wanted in [{0}, {1}, {4}, {0, 2, 5}, set(range(1, 7))]:  # 0: x, k: tensors[k - 1]
        leaves = [t.clone().requires_grad_(k in wanted) for k, t in enumerate([x] + tensors)]
        y = mlp_forward(leaves[0], list(zip(leaves[1::2], leaves[2::2])))
        assert "MlpForward" in y.grad_fn.name()
        y.backward(grad_y)
        ref = [t.clone().requires_grad_(k in wanted) for k, t in enumerate([x] + tensors)]
        y_reg = ops.mlp_forward(ref[0], pack_tensors(ref[1:]), widths)
        assert torch.equal(y, y_reg)
        y_reg.backward(grad_y)
        for k, (a, b) in enumerate(zip(leaves, ref)):
            assert (a.grad is None) == (k not in wanted) == (b.grad is None)
            assert a.grad is None or (torch.equal(a.grad, b.grad) and a.grad.shape == a.shape)


def test_eager_autograd_node_keeps_autograd_rules():
    """The C++ nodes check in-place changes of what they saved and free it after a backward."""
    x, peaks, _ = make_problem(2, 3, 5, seed=17)
    p = peaks.clone().requires_grad_()
    q = p * 1  # a non-leaf that may be changed in place
    y = compnet_ext.forward(x, q)
    q.mul_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    y = compnet_ext.forward(x, p)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.sum().backward()
    # and so does BatchedMLP's (csrc/mlp/autograd.cpp)
    from compnet_ext.mlp_ops import mlp_forward
    from compnet_ext.nn import BatchedMLP

    mlp = BatchedMLP(2, (1, 3, 1), generator=torch.Generator().manual_seed(20), dtype=x.dtype)
    W = mlp.layers()[0][0] * 1
    y = mlp_forward(x, [(W, mlp.layers()[0][1]), mlp.layers()[1]])
    W.mul_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    y = mlp(x)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.sum().backward()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_sharing_memory_are_read_as_one_row(device, dtype):
    """A grad_y or target whose seeds' rows are one row in memory (an expand: the grad_y of
    y.sum()) is read as that row, not copied (common/tensors.h: points_arg): the same bits as
    the materialised tensor, for both families' ops."""
    from compnet_ext.mlp_ops import pack
    from compnet_ext.nn import BatchedMLP

    S, N = 4, 37
    x, peaks, scales = make_problem(S, 6, N, dtype=dtype, free=True, seed=21, device=device)
    row = torch.rand(N, generator=torch.Generator().manual_seed(22), dtype=dtype).to(device)
    mlp = BatchedMLP(S, (1, 4, 4, 4, 4, 4, 1), generator=torch.Generator().manual_seed(23),
                     dtype=dtype).to(device)
    params, widths = pack(mlp.layers()).detach(), list(mlp.widths)
    calls = {
        "backward": lambda h: ops.backward(h, x, peaks, scales, -1, True, True, True),
        "loss_and_grad": lambda h: ops.loss_and_grad(x, h, peaks, scales, 1, False),
        "mlp_backward": lambda h: ops.mlp_backward(h, x, params, widths, True),
        "mlp_loss_and_grad": lambda h: ops.mlp_loss_and_grad(x, h, params, widths),
    }
    for shared in (row.expand(S, N), row[:1].expand(S, N)):  # strides (0, 1) and (0, 0)
        assert shared.stride(0) == 0
        for name, call in calls.items():
            got, want = call(shared), call(shared.contiguous())
            for a, b in zip(got, want):
                assert torch.equal(a, b), name
    # what autograd hands the backward of y.sum(): the gradients of y * 1, for both families
    leaf = peaks.clone().requires_grad_()
    for f, leaves in ((lambda: compnet_ext.forward(x, leaf), [leaf]),
                      (lambda: mlp(x), list(mlp.parameters()))):
        y = f()
        # the host's record of the ops (no CUPTI on a GPU host: the aten ops are host events)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    record_shapes=True) as prof:
            y.sum().backward()
        copies = [e.input_shapes for e in prof.events() if e.name in ("aten::copy_", "aten::clone")]
        assert not any([S, N] in shapes for shapes in copies)  # one row, not S
        g_sum = [t.grad for t in leaves]
        for t in leaves:
            t.grad = None
        f().backward(torch.ones(S, N, dtype=dtype, device=device))
        assert all(torch.equal(a, t.grad) for a, t in zip(g_sum, leaves))
