"""Two-stage training (compnet_ext.train) at small sizes: optimiser, determinism, batching,
the paper's qualitative claims, piece counts after stage 1, and argument errors."""
import math

import pytest
import torch

import compnet_ext
from compnet_ext import train
from compnet_ext.experiments import stages
from compnet_ext.init import raai_layers, starting_peaks
from compnet_ext.optim import BatchedAdam
from compnet_ext.targets import TARGETS, get_target

SMALL = dict(seeds=3, points=64, epochs=(20, 20))


def _paper_targets(*names):
    return {n: (TARGETS[n].fn, TARGETS[n].sign) for n in names}


# ---------------------------------------------------------------------------------------------
# optimiser


def test_batched_adam_matches_torch_adam():
    # Open loop (the same gradients for both), so differences do not feed back: each step's
    # update lr * m_hat / (sqrt(v_hat) + eps) has |update| <= lr * (1 - b1) / sqrt(1 - b2)
    # ~ 3.2 lr and is computed in about eight operations each within an ulp (torch's lerp and
    # addcmul may fuse, its CPU sqrt is not correctly rounded); m and v differ by a few ulps,
    # which changes the ratio by a few u. Per step: <= 16 u * 3.2 lr + u |p|; summed over k steps.
    g = torch.Generator().manual_seed(1)
    p0 = torch.randn(5, 3, 2, generator=g, dtype=torch.float64)
    grads = [torch.randn(5, 3, 2, generator=g, dtype=torch.float64) for _ in range(7)]
    ref = p0.clone().requires_grad_(True)
    opt_ref = torch.optim.Adam([ref], lr=3e-2)
    mine = p0.clone()
    opt = BatchedAdam([mine], 3e-2)
    for gr in grads:
        ref.grad = gr.clone()
        opt_ref.step()
        opt.step([gr])
    u, k, lr = torch.finfo(torch.float64).eps / 2, len(grads), 3e-2
    bound = k * (16 * u * 3.2 * lr + u * ref.detach().abs().max())
    assert (mine - ref.detach()).abs().max() <= bound
    assert not torch.equal(mine, p0)


def test_batched_adam_cat_continues_each_row_like_its_own_run():
    # Rows that joined later (fresh state, different lr) must follow their own Adam run exactly.
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(2, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    ga = [torch.randn(2, 4, generator=g, dtype=torch.float64) for _ in range(6)]
    gb = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    solo_a, solo_b = a.clone(), b.clone()
    oa, ob = BatchedAdam([solo_a], 1e-2), BatchedAdam([solo_b], 5e-2)
    for gr in ga:
        oa.step([gr])
    for gr in gb:
        ob.step([gr])
    joint_a = a.clone()
    oja = BatchedAdam([joint_a], 1e-2)
    for gr in ga[:3]:
        oja.step([gr])
    joint = torch.cat([joint_a, b.clone()])
    opt = BatchedAdam.cat([oja, BatchedAdam([b.clone()], 5e-2)], [joint])
    for gr_a, gr_b in zip(ga[3:], gb):
        opt.step([torch.cat([gr_a, gr_b])])
    assert torch.equal(joint, torch.cat([solo_a, solo_b]))  # row-wise the same operations


# ---------------------------------------------------------------------------------------------
# initialisers and stage 1


def test_raai_has_one_beta_entry_per_neuron_and_anti_correlated_weights():
    g = torch.Generator().manual_seed(0)
    layers = raai_layers(4000, (1, 4, 4, 1), g, torch.float64)
    W, b = layers[1]
    aug = torch.cat([W, b[..., None]], dim=2)  # [S, 4, 5]
    # The bias is 0 unless it is the Beta(2, 1) entry, which lies in (0, 1).
    chosen_bias = b != 0
    assert bool(((b[chosen_bias] > 0) & (b[chosen_bias] < 1)).all())
    frac = chosen_bias.double().mean().item()
    assert abs(frac - 1 / 5) < 0.02  # one of fan_in + 1 = 5 entries, uniformly
    # Among neurons whose Beta entry is the bias, the 4 Gaussian weights are anti-correlated.
    w = W[chosen_bias]  # [M, 4]
    c = torch.corrcoef(w.T)
    off = c[~torch.eye(4, dtype=torch.bool)]
    assert off.mean().item() < -0.1  # target -0.5/3 = -0.167; standard error ~0.01 here
    assert aug.isfinite().all()


def test_starting_peaks_range_and_errors():
    p = starting_peaks(100, 5, torch.Generator().manual_seed(0))
    assert p.shape == (100, 6)
    assert bool(((p >= train.PEAK_RANGE[0]) & (p <= train.PEAK_RANGE[1])).all())
    with pytest.raises(ValueError, match="peak range"):
        starting_peaks(2, 3, torch.Generator(), low=0.0)


@pytest.mark.filterwarnings("ignore:compnet_ext.train:DeprecationWarning")  # the old names, kept a release
@pytest.mark.parametrize("free", [False, True])
def test_stage1_lowers_loss_keeps_peaks_inside_and_keeps_2_to_the_D_pieces(free):
    D, sign = 5, -1
    x = torch.linspace(0, 1, 200, dtype=torch.float64)
    y = x**3
    p0 = starting_peaks(4, D, torch.Generator().manual_seed(3), torch.float64)
    s0 = compnet_ext.smooth_scales(p0, sign) if free else None
    p_in = p0.clone()
    peaks, scales, losses = train.train_peaks(x, y, p0, s0, sign, 200, 1e-2)
    assert torch.equal(p0, p_in)  # inputs untouched
    assert losses.shape == (200, 4)
    assert bool((losses[-1] < 0.5 * losses[0]).all())
    assert bool(((peaks >= train.PEAK_EPS) & (peaks <= 1 - train.PEAK_EPS)).all())
    assert (scales is None) == (not free)
    # Exact counters (issue 3): the closed form and the activation walk of the encoded network.
    pieces = compnet_ext.count_pieces(peaks=peaks, scales=scales, sign=sign)
    assert pieces.tolist() == [2**D] * 4
    mlp_pieces = compnet_ext.count_pieces(compnet_ext.encode(peaks, scales, sign=sign))
    assert mlp_pieces.tolist() == [2**D] * 4


# ---------------------------------------------------------------------------------------------
# the engine


def test_compare_shapes_determinism_and_seed_dependence():
    a = train.compare("x3", None, **SMALL)
    b = train.compare("x3", None, **SMALL)
    c = train.compare("x3", None, **SMALL, seed=1)
    assert list(a) == list(train.KINDS)
    for k in train.KINDS:
        assert a[k].shape == (3,) and bool(torch.isfinite(a[k]).all()) and bool((a[k] >= 0).all())
        assert torch.equal(a[k], b[k])
        assert not torch.equal(a[k], c[k])


def test_callable_tensor_and_named_targets_agree():
    x = torch.linspace(0, 1, SMALL["points"])
    by_name = train.compare("sin", None, **SMALL)
    by_fn = train.compare(lambda t: torch.sin(math.pi * t / 2), +1, **SMALL)
    by_values = train.compare(torch.sin(math.pi * x / 2), +1, **SMALL)
    for k in train.KINDS:
        torch.testing.assert_close(by_fn[k], by_name[k])
        torch.testing.assert_close(by_values[k], by_name[k])


def test_batching_does_not_change_a_kinds_result():
    # Each seed's loss is its own and Adam is elementwise, so training a kind alone or batched
    # with all others (and another target) must give the same numbers up to float rounding.
    _, alone = train.run(_paper_targets("x3"), kinds=("enforced",), **SMALL, keep_curves=False)
    _, joint = train.run(_paper_targets("x3", "sin"), **SMALL, keep_curves=False)
    torch.testing.assert_close(alone["x3"]["enforced"].final, joint["x3"]["enforced"].final,
                               rtol=1e-4, atol=1e-9)


def test_compositional_kinds_share_starting_peaks_and_all_kinds_get_equal_steps():
    # With no training steps, kinds 3-5 are the same encoded starting network (not_enforced
    # starts from the smooth scales of the same peaks), so their MSEs coincide.
    _, res = train.run(_paper_targets("x3"), seeds=4, points=64, epochs=(0, 0))
    r = res["x3"]
    torch.testing.assert_close(r["no_pretraining"].final, r["enforced"].final)
    torch.testing.assert_close(r["not_enforced"].final, r["enforced"].final)
    _, res = train.run(_paper_targets("x3"), seeds=2, points=32, epochs=(7, 5))
    for k, kr in res["x3"].items():
        assert kr.curve.shape == (12, 2), k
        assert kr.best_fit.shape == (32,)


def test_paper_claims_at_small_size():
    # 4 seeds, 150 + 150 steps, 200 points. Observed at this size: 'enforced' mean is ~7x below
    # the next kind and 1e3-1e5x below default/raai, so the asserted margins (lowest; >= 100x)
    # leave room for platform rounding while still failing if pretraining stopped helping.
    for name in ("x3", "sin"):
        r = train.compare(name, None, seeds=4, points=200, epochs=(150, 150))
        means = {k: v.mean().item() for k, v in r.items()}
        assert min(means, key=means.get) == "enforced", means
        assert means["default"] >= 100 * means["enforced"], means
        assert means["raai"] >= 100 * means["enforced"], means


# ---------------------------------------------------------------------------------------------
# errors, raised before any training


@pytest.fixture
def no_work(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("training started before the arguments were checked")

    monkeypatch.setattr(stages, "train_mlp", boom)
    monkeypatch.setattr(stages, "train_peaks", boom)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(kinds=("default", "bogus")), ValueError, "kinds"),
    (dict(kinds=()), ValueError, "kinds"),
    (dict(depth=0), ValueError, "depth"),
    (dict(seeds=0), ValueError, "seeds"),
    (dict(seeds=2.5), TypeError, "seeds"),
    (dict(epochs=(10, -1)), ValueError, "epochs"),
    (dict(epochs=(10,)), ValueError, "epochs"),
    (dict(points=1), ValueError, "points"),
    (dict(lr_peaks=0), ValueError, "lr_peaks"),
    (dict(lr_weights={"bogus": 1e-3}), ValueError, "lr_weights"),
    (dict(lr_weights=-1.0), ValueError, "lr_weights"),
    (dict(width=3), ValueError, "width"),
    (dict(device="tpu"), ValueError, "device"),
])
def test_bad_arguments(no_work, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        train.compare("x3", None, **{**SMALL, **kwargs})


@pytest.mark.parametrize("target, sign, exc, match", [
    ("nope", None, ValueError, "unknown target"),
    (lambda x: x[:-1], -1, ValueError, "one value per point"),
    (lambda x: x * float("nan"), -1, ValueError, "NaN"),
    (lambda x: 1 / 0, -1, TypeError, "raised ZeroDivisionError"),
    (torch.zeros(5), -1, ValueError, "one value per point"),
    (lambda x: x**3, 2, ValueError, "sign"),  # 0 is the non-convex pair
    (lambda x: x**3, None, ValueError, "sign"),
])
def test_bad_targets(no_work, target, sign, exc, match):
    with pytest.raises(exc, match=match):
        train.compare(target, sign, **SMALL)


@pytest.mark.filterwarnings("ignore:compnet_ext.train:DeprecationWarning")  # the old names, kept a release
@pytest.mark.parametrize("free", [False, True])
def test_fused_stage1_equals_step_by_step_path(free):
    # The training module runs stage 1 fused by default; the step-by-step path is the reference,
    # and the same arithmetic: bitwise (see test_train_peaks.py).
    D, sign = 5, 1
    x = torch.linspace(0, 1, 300, dtype=torch.float64)
    y = torch.sin(torch.pi / 2 * x)
    p0 = starting_peaks(6, D, torch.Generator().manual_seed(4), torch.float64)
    s0 = compnet_ext.smooth_scales(p0, sign) if free else None
    fused = train.train_peaks(x, y, p0, s0, sign, 8, 1e-2)
    steps = train.train_peaks(x, y, p0, s0, sign, 8, 1e-2, fused=False)
    for a, b in zip(fused, steps):
        if b is not None:
            assert torch.equal(a, b)


def test_fused_engine_equals_step_by_step_engine():
    # run() trains every stage of every kind in one launch by default; the step-by-step engine
    # (one launch + one BatchedAdam step per epoch) is the reference. Short run, float64.
    targets = {"x3": ("x3", -1), "sin": ("sin", 1)}
    targets = {n: (get_target(n).fn, sign) for n, (_, sign) in targets.items()}
    kw = dict(seeds=3, points=120, epochs=(6, 5), dtype=torch.float64, keep_curves=True)
    x1, fused = train.run(targets, **kw)
    x2, steps = train.run(targets, fused=False, **kw)
    assert torch.equal(x1, x2)
    for n in targets:
        for k in train.KINDS:
            a, b = fused[n][k], steps[n][k]
            assert a.curve.shape == b.curve.shape == (11, 3)
            # the same kernels and the same Adam operations: bitwise (see test_train_peaks.py)
            assert torch.equal(a.final, b.final), (n, k)
            assert torch.equal(a.curve, b.curve), (n, k)
            assert torch.equal(a.best_fit, b.best_fit), (n, k)
