"""The linear learning-rate warm-up (``warmup``) of the fused stages, of BatchedAdam (their
bitwise mirror) and of the experiments (issue 11, docs/hyperparameters.md)."""
import argparse

import pytest
import torch

import compnet_ext
from compnet_ext import chunks, train
from compnet_ext.experiments.cli import parse_peak_bounds, parse_warmup_fraction
from compnet_ext.experiments.config import KINDS, WARMUP_FRACTION, Config
from compnet_ext.mlp_ops import mlp_train, pack
from compnet_ext.nn import BatchedMLP
from compnet_ext.optim import BatchedAdam, warmup_lr
from compnet_ext.targets import get_target
from conftest import make_problem

F64 = torch.float64


def test_warmup_lr():
    # lr * t / W for t < W, then lr; W = 0 or 1: no warm-up at all.
    assert [warmup_lr(0.4, 4, t) for t in range(1, 7)] == [0.1, 0.2, 0.30000000000000004, 0.4,
                                                           0.4, 0.4]
    assert warmup_lr(0.4, 0, 1) == warmup_lr(0.4, 1, 1) == 0.4


def _peaks_by_steps(x, target, peaks, scales, sign, epochs, lr, bounds, warmup):
    """loss_and_grad + BatchedAdam(warmup) + clamp, one launch per step."""
    params = [peaks.clone()] + ([scales.clone()] if scales is not None else [])
    opt = BatchedAdam(params, lr, warmup=warmup)
    for _ in range(epochs):
        s = params[1] if scales is not None else None
        _, gp, gs = compnet_ext.loss_and_grad(x, target, params[0], s, sign)
        opt.step([gp] + ([gs] if scales is not None else []))
        params[0].clamp_(*bounds)
    return params[0], (params[1] if scales is not None else None)


# Bitwise: cn::scheduled_lr and BatchedAdam compute lr * (t / W) with the same two IEEE float64
# operations, the rest of the step is unchanged (see test_train_peaks.py), so any difference is a
# bug. The warm-up is counted from the run's start: chunked launches (continued at step > 0)
# must give the same bits.
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("free", [False, True])
def test_train_peaks_warmup_matches_step_by_step_bitwise(dtype, free, monkeypatch):
    x, peaks, scales = make_problem(5, 6, 300, dtype=dtype, free=free, seed=41)
    target, bounds, epochs, warmup = x**3, (1e-4, 1 - 1e-4), 30, 17
    ref = _peaks_by_steps(x, target, peaks, scales, -1, epochs, 0.02, bounds, warmup)
    kw = dict(epochs=epochs, lr=0.02, peak_bounds=bounds, record_every=3, warmup=warmup)
    one = compnet_ext.train_peaks(x, target, peaks, scales, -1, **kw)
    monkeypatch.setattr(chunks, "CHUNK_SECONDS", 0.0)
    many = compnet_ext.train_peaks(x, target, peaks, scales, -1, **kw)
    for got in (one, many):
        assert torch.equal(got[0], ref[0])
        assert (got[1] is None and ref[1] is None) or torch.equal(got[1], ref[1])
    plain = compnet_ext.train_peaks(x, target, peaks, scales, -1, **{**kw, "warmup": 0})
    assert not torch.equal(plain[0], one[0]), "a warm-up must change the steps"


def _mlp(S, dtype, seed=2):
    return BatchedMLP(S, (1, 4, 4, 4, 1), generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_mlp_train_warmup_matches_step_by_step_bitwise(dtype, monkeypatch):
    S, epochs, warmup = 4, 25, 9
    m = _mlp(S, dtype)
    x = torch.linspace(0, 1, 200, dtype=dtype)
    target = x**3 - 0.5 * x
    ref = BatchedMLP.from_layers(m.layers())
    opt = BatchedAdam(list(ref.parameters()), 0.01, warmup=warmup)
    for _ in range(epochs):
        _, grads = ref.loss_and_grad(x, target)
        opt.step([W for W, _ in grads] + [b for _, b in grads])
    want = pack(ref.layers()).detach()
    one = mlp_train(x, target, m.layers(), epochs=epochs, lr=0.01, warmup=warmup)
    monkeypatch.setattr(chunks, "CHUNK_SECONDS", 0.0)
    many = mlp_train(x, target, m.layers(), epochs=epochs, lr=0.01, record_every=2, warmup=warmup)
    assert torch.equal(pack(one[0]), want) and torch.equal(pack(many[0]), want)
    # warmup 0 and 1 are both "no warm-up" (step 1 already takes lr), the default
    plain = mlp_train(x, target, m.layers(), epochs=epochs, lr=0.01)
    one_step = mlp_train(x, target, m.layers(), epochs=epochs, lr=0.01, warmup=1)
    assert torch.equal(pack(plain[0]), pack(one_step[0]))
    assert not torch.equal(pack(plain[0]), want)


def test_batched_adam_per_seed_warmup_and_cat():
    # Rows with different warm-ups and step counts in one optimiser (the step-by-step engine's
    # batch) take exactly the steps they take alone.
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 5, generator=g, dtype=F64), torch.rand(3, 5, generator=g, dtype=F64)
    grads = [torch.rand(5, 5, generator=g, dtype=F64) - 0.5 for _ in range(8)]
    pa, pb = a.clone(), b.clone()
    oa, ob = BatchedAdam([pa], 0.05, warmup=6), BatchedAdam([pb], 0.02, warmup=0)
    for gr in grads[:3]:
        oa.step([gr[:2]])
    both = torch.cat([pa, pb])
    joint = BatchedAdam.cat([oa, ob], [both])
    for gr in grads[3:]:
        oa.step([gr[:2]])
        ob.step([gr[2:]])
        joint.step([gr])
    assert torch.equal(both, torch.cat([pa, pb]))
    per_seed = BatchedAdam([b.clone()], 0.02, warmup=torch.tensor([0, 4, 7]))
    assert per_seed.warmup.tolist() == [0, 4, 7]


def test_fused_engine_equals_step_by_step_engine_with_warmup():
    # Per-kind warm-ups that end inside the run, mixed in the step-by-step engine's one batch
    # (weight-only kinds train 5 + 4 steps, the others 4).
    targets = {n: (get_target(n).fn, get_target(n).sign) for n in ("x3", "sin")}
    fractions = {"default": 1 / 3, "raai": 0, "no_pretraining": 0.8, "not_enforced": 0.5,
                 "enforced": 1}
    kw = dict(seeds=2, points=80, epochs=(5, 4), dtype=F64, keep_curves=True,
              warmup_fraction=fractions)
    cfg = Config(**kw)
    assert {k: cfg.warmup_steps(k) for k in KINDS} == {"default": 3, "raai": 0,
                                                       "no_pretraining": 7, "not_enforced": 2,
                                                       "enforced": 4}
    _, fused = train.run(targets, **kw)
    _, steps = train.run(targets, fused=False, **kw)
    _, none = train.run(targets, **{**kw, "warmup_fraction": 0})
    for n in targets:
        for k in KINDS:
            assert torch.equal(fused[n][k].final, steps[n][k].final), (n, k)
            assert torch.equal(fused[n][k].curve, steps[n][k].curve), (n, k)
            if k != "raai":
                assert not torch.equal(fused[n][k].final, none[n][k].final), (n, k)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_bad_warmup_names_the_argument(bad):
    x, peaks, _ = make_problem(2, 3, 10, seed=42)
    with pytest.raises(ValueError, match="`warmup`"):
        compnet_ext.train_peaks(x, x, peaks, epochs=2, warmup=bad)
    layers, xm = _mlp(2, F64).layers(), torch.linspace(0, 1, 10, dtype=F64)
    with pytest.raises(ValueError, match="`warmup`"):
        mlp_train(xm, xm, layers, epochs=2, warmup=bad)
    with pytest.raises(ValueError, match="`warmup`"):
        BatchedAdam([peaks.clone()], 0.1, warmup=bad)



def test_bad_warmup_tensor_and_op():
    p = torch.rand(3, 4, dtype=F64)
    for bad in (torch.tensor([1, 2]), torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, -1, 2])):
        with pytest.raises(ValueError, match="`warmup`"):
            BatchedAdam([p], 0.1, warmup=bad)
    x, peaks, _ = make_problem(2, 3, 10, seed=43)
    with pytest.raises(RuntimeError, match="`warmup` must be >= 0"):
        torch.ops.compnet_ext.train_peaks(x, x, peaks, None, -1, 2, 0.01, 0.9, 0.999, 1e-8, 1e-4,
                                          1 - 1e-4, 0, True, None, 0, -3)
    with pytest.raises(ValueError, match="unknown kind"):
        Config(warmup_fraction={"enforce": 0.5})


def test_config_and_cli_warmup_fraction():
    cfg = Config()
    assert cfg.warmup_fraction == WARMUP_FRACTION
    # the defaults, in steps of the paper's 1000 + 1000 (docs/hyperparameters.md)
    assert {k: cfg.warmup_steps(k) for k in KINDS} == {"default": 0, "raai": 300,
                                                       "no_pretraining": 300, "not_enforced": 100,
                                                       "enforced": 100}
    short = Config(epochs=(300, 300))
    assert short.warmup_steps("raai") == 90 and short.warmup_steps("enforced") == 30
    assert Config(warmup_fraction=0.5).warmup_fraction == {k: 0.5 for k in KINDS}
    assert Config(warmup_fraction={"raai": 1}).warmup_fraction == {**WARMUP_FRACTION, "raai": 1.0}
    for bad in (-0.1, 1.5, float("nan"), "0.1", None, True):
        with pytest.raises(ValueError, match=r"`warmup_fraction\['enforced'\]`"):
            Config(warmup_fraction={"enforced": bad})
    assert parse_warmup_fraction("0.2") == {k: 0.2 for k in KINDS}
    assert parse_warmup_fraction("enforced=0.3,raai=0") == {**WARMUP_FRACTION, "enforced": 0.3,
                                                            "raai": 0.0}
    for bad in ("-1", "x", "enforced=2", "foo=0.1", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_warmup_fraction(bad)


def test_config_and_cli_peak_bounds():
    assert Config(peak_bounds=(0.2, 0.8)).peak_bounds == (0.2, 0.8)
    for bad in ((0.0, 0.5), (0.6, 0.5), (0.1,), 0.5, (1e-30, 0.5)):
        with pytest.raises(ValueError, match="`peak_bounds`"):
            Config(peak_bounds=bad)
    assert parse_peak_bounds("0.1,0.9") == (0.1, 0.9)
    for bad in ("0.1", "0,0.9", "a,b", "0.9,0.1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_peak_bounds(bad)
