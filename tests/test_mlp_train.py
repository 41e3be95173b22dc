"""The fused stage 2 (compnet_ext.nn.train_mlp, op mlp_train) against the step-by-step Adam path."""
import pytest
import torch

from compnet_ext import chunks
from compnet_ext.mlp_ops import mlp_loss_and_grad, mlp_train, pack
from compnet_ext.nn import BatchedMLP, train_mlp
from conftest import cuda, make_adam

F64 = torch.float64
PAPER = (1, 4, 4, 4, 4, 4, 1)  # width 4, depth 5: the encoded compositional network's shape


def _mlp(S=4, widths=PAPER, seed=0, dtype=F64):
    return BatchedMLP(S, widths, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _data(S, N, dtype=F64, shared=True, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N if shared else (S, N), generator=g, dtype=F64)
    target = x**3 - 0.5 * x if shared else torch.rand(S, N, generator=g, dtype=F64)
    return x.to(dtype), target.to(dtype)


def step_by_step(mlp, x, target, epochs, lr, record_every=0, betas=(0.9, 0.999), eps=1e-8,
                 adam="ours"):
    """BatchedMLP.loss_and_grad (fused) + Adam, one launch per step (the reference). ``adam``:
    "ours" (compnet_ext.optim.BatchedAdam, the fused stage's arithmetic) or "torch"."""
    ref = BatchedMLP.from_layers(mlp.layers())
    opt = make_adam(adam, ref.parameters(), lr, betas, eps)
    curve = []
    for epoch in range(epochs):
        loss, grads = ref.loss_and_grad(x, target)
        grads = [W for W, _ in grads] + [b for _, b in grads]
        if record_every and epoch % record_every == 0:
            curve.append(loss)
        opt.step(grads)
    final = ref.loss_and_grad(x, target)[0]
    return ref, final, torch.stack(curve, 1) if curve else None


def _params(mlp):
    return pack(mlp.layers()).detach()


# Bitwise: the fused stage and mlp_loss_and_grad + BatchedAdam are the same build's arithmetic
# (same per-point math, same block sums and reduction order, the same IEEE operations in Adam),
# so any difference is a bug. Long enough for Adam to amplify a last-bit difference. Chunked
# launches must not change a bit either.
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("widths,shared", [(PAPER, True), ((1, 16, 3, 16, 1), False)],
                         ids=["5x4-shared", "3x16-per-seed"])
def test_matches_step_by_step_bitwise(dtype, widths, shared, monkeypatch):
    S, N, epochs = 4, 700, 25  # more than one 512-point block per seed
    m = _mlp(S, widths, seed=2, dtype=dtype)
    x, target = _data(S, N, dtype, shared)
    ref, rloss, rcurve = step_by_step(m, x, target, epochs, 0.01, record_every=3)
    layers, loss, curve = mlp_train(x, target, m.layers(), epochs=epochs, lr=0.01, record_every=3)
    assert curve.shape == (S, -(-epochs // 3))
    assert torch.equal(pack(layers), _params(ref))
    assert torch.equal(loss, rloss) and torch.equal(curve, rcurve)
    monkeypatch.setattr(chunks, "CHUNK_SECONDS", 0.0)  # one record_every's worth per launch
    start = _params(m)
    loss2, curve2 = train_mlp(m, x, target, epochs=epochs, lr=0.01, record_every=3)
    assert torch.equal(_params(m), _params(ref))
    assert torch.equal(loss2, loss) and torch.equal(curve2, curve)
    assert not torch.equal(_params(m), start)
    assert (loss < curve[:, 0]).all(), "Adam steps should lower every seed's loss"
    # the returned loss is the loss at the trained parameters
    assert torch.equal(loss, m.loss_and_grad(x, target)[0])


def test_one_step_matches_torch_adam():
    # One step against torch.optim.Adam (Adam amplifies last-bit differences over many): with
    # the same gradient g both take the step lr * g / (|g| + eps) (|step| <= lr) in about eight
    # operations that each round to within an ulp (torch's CPU sqrt is not correctly rounded),
    # and add it to p: |difference| <= 8 u lr + 2 u |p| (u: unit roundoff).
    m = _mlp(5, seed=3)
    x, target = _data(5, 600)
    lr, u = 0.02, torch.finfo(F64).eps / 2
    ours, _, _ = step_by_step(m, x, target, 1, lr, betas=(0.8, 0.99), eps=1e-6)
    theirs, _, _ = step_by_step(m, x, target, 1, lr, betas=(0.8, 0.99), eps=1e-6, adam="torch")
    got, want = _params(ours), _params(theirs)
    assert ((got - want).abs() <= 8 * u * lr + 2 * u * want.abs()).all()
    assert not torch.equal(got, _params(m))


def test_zero_epochs_returns_inputs_and_current_loss():
    m = _mlp(3, seed=4)
    x, target = _data(3, 100)
    start = _params(m)
    layers, loss, curve = mlp_train(x, target, m.layers(), epochs=0, record_every=5)
    assert all(torch.equal(a, b) for p, q in zip(layers, m.layers()) for a, b in zip(p, q))
    assert torch.equal(loss, mlp_loss_and_grad(x, target, m.layers())[0])
    assert curve.shape == (3, 0)
    train_mlp(m, x, target, epochs=0)
    assert torch.equal(_params(m), start)


def test_deterministic_and_inputs_untouched():
    m = _mlp(6, (1, 8, 8, 1), seed=5, dtype=torch.float32)
    x, target = _data(6, 1100, torch.float32, shared=False)
    layers = [(W.detach().clone(), b.detach().clone()) for W, b in m.layers()]
    first = mlp_train(x, target, layers, epochs=30, lr=0.01, record_every=7)
    again = mlp_train(x, target, layers, epochs=30, lr=0.01, record_every=7)
    assert torch.equal(pack(first[0]), pack(again[0]))
    assert torch.equal(first[1], again[1]) and torch.equal(first[2], again[2])
    assert torch.equal(pack(layers), _params(m)), "mlp_train must not modify its inputs"


def test_independent_of_thread_count_and_mixed_sharing():
    m = _mlp(5, (1, 6, 6, 1), seed=11)
    x, _ = _data(5, 300)  # x shared by all seeds, target per seed
    target = torch.rand(5, 300, generator=torch.Generator().manual_seed(12), dtype=F64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = mlp_train(x, target, m.layers(), epochs=6, lr=0.01, record_every=2)
    finally:
        torch.set_num_threads(threads)
    many = mlp_train(x, target, m.layers(), epochs=6, lr=0.01, record_every=2)
    assert torch.equal(pack(one[0]), pack(many[0])) and torch.equal(one[2], many[2])
    ref, rloss, rcurve = step_by_step(m, x, target, 6, 0.01, record_every=2)
    assert torch.equal(pack(many[0]), _params(ref)) and torch.equal(many[2], rcurve)


def test_no_points_leaves_parameters():
    m = _mlp(2, seed=6)
    start = _params(m)
    empty = torch.zeros(0, dtype=F64)
    loss, curve = train_mlp(m, empty, empty, epochs=3, record_every=1)
    assert torch.equal(_params(m), start)
    assert torch.equal(loss, torch.zeros(2, dtype=F64))
    assert torch.equal(curve, torch.zeros(2, 3, dtype=F64))


def test_opcheck():
    m = _mlp(3, (1, 4, 2, 1), seed=7)
    x, target = _data(3, 20)
    args = (x, target, _params(m), list(m.widths), 5, 0.01, 0.9, 0.999, 1e-8, 2)
    torch.library.opcheck(torch.ops.compnet_ext.mlp_train, args)
    state = torch.rand(3, 2, _params(m).shape[1], dtype=F64)
    torch.library.opcheck(torch.ops.compnet_ext.mlp_train, args + (state, 7))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=-1), "`epochs` must be an int >= 0"),
        (dict(epochs=2.0), "`epochs`"),
        (dict(record_every=-1), "`record_every`"),
        (dict(lr=float("nan")), "`lr`"),
        (dict(lr=-0.1), "`lr`"),
        (dict(betas=(0.9, 1.0)), "`betas`"),
        (dict(betas=(0.9,)), "`betas`"),
        (dict(eps=0.0), "`eps`"),
        (dict(epochs=2**63), "`epochs` must be an int >= 0"),  # beyond the schema's int64
        (dict(record_every=2**63), "`record_every`"),
        (dict(lr=10**400), "`lr`"),  # too large for a float
    ],
)
def test_bad_hyper_parameters_name_the_argument(kwargs, match):
    m = _mlp(2, seed=8)
    x, target = _data(2, 10)
    kwargs = {"epochs": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        train_mlp(m, x, target, **kwargs)


def test_bad_arguments_name_the_argument():
    m = _mlp(2, seed=9)
    x, target = _data(2, 10)
    with pytest.raises(TypeError, match="`mlp`"):
        train_mlp(m.layers(), x, target, epochs=1)
    with pytest.raises(ValueError, match="`target`"):
        train_mlp(m, x, target[:5], epochs=1)
    with pytest.raises(ValueError, match="`x`"):
        train_mlp(m, torch.rand(3, 10, dtype=F64), target, epochs=1)
    with pytest.raises(TypeError, match="`target`"):
        train_mlp(m, x, target.float(), epochs=1)
    params, widths = _params(m), list(m.widths)
    for name, value in [("epochs", -1), ("lr", float("inf")), ("eps", -1.0), ("record_every", -3)]:
        hp = {"epochs": 1, "lr": 0.01, "eps": 1e-8, "record_every": 0, name: value}
        with pytest.raises(RuntimeError, match=f"`{name}`"):
            torch.ops.compnet_ext.mlp_train(x, target, params, widths, hp["epochs"], hp["lr"],
                                            0.9, 0.999, hp["eps"], hp["record_every"])


# Not run where this was written (no GPU): tolerances leave room for the different summation
# order of the CUDA warp reduction, which Adam's normalisation can amplify for tiny gradients.
@cuda
@pytest.mark.parametrize("dtype,tol", [(F64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("widths", [PAPER, (1, 16, 3, 16, 1), (1,) + (16,) * 40 + (1,)],
                         ids=["5x4", "3x16", "40x16-spilled"])
def test_cuda_matches_cpu(dtype, tol, widths):
    S, N = 37, 500
    m = _mlp(S, widths, seed=10, dtype=dtype)
    x, target = _data(S, N, dtype, shared=False)
    epochs = 2 if len(widths) > 10 else 6  # short: CPU and GPU sum in different orders
    cpu = mlp_train(x, target, m.layers(), epochs=epochs, lr=0.01, record_every=2)
    mc = m.cuda()
    gpu = mlp_train(x.cuda(), target.cuda(), mc.layers(), epochs=epochs, lr=0.01, record_every=2)
    assert (pack(gpu[0]).cpu() - pack(cpu[0])).abs().max() <= tol
    for a, b in zip(gpu[1:], cpu[1:]):
        assert (a.cpu() - b).abs().max() <= tol * b.abs().max().clamp_min(1)
    again = mlp_train(x.cuda(), target.cuda(), mc.layers(), epochs=epochs, lr=0.01, record_every=2)
    assert torch.equal(pack(gpu[0]), pack(again[0])) and torch.equal(gpu[1], again[1])
