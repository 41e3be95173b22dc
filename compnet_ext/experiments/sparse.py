"""The later version's sparse-data test: ten training points, ten test points per target.

The paper's later versions train the four targets of section 4.1 on ten points only and compare
the test MSE of default-initialised networks with the full method (MATH.md section 6 otherwise:
4 x 5 networks, Adam, 1000 + 1000 epochs, weight-only kinds train all 2000 steps on the weights).
:func:`run` trains every kind on every target like :func:`compnet_ext.train.run`, and measures
each network on the held-out test points, both at the end and after every ``test_every``-th
weight step (docs/reproduce.md, "Sparse data").

Where the points lie (:func:`sparse_points`): training points evenly spaced on [0, 1] including
both ends, ``i / 9``; test points at the centres of ten equal cells, ``(2j + 1) / 20``. Every
named target is 0 at 0 and 1 at 1 and the compositional networks take those values by
construction, so giving the ends to every kind as training data keeps that knowledge from being
an advantage of the method; the test points then measure interpolation only, spread evenly over
the interval (their MSE is the midpoint rule for the mean squared error over [0, 1]); and no test
point is a training point (20 i is even, 9 (2j + 1) odd).

Stage 2 runs as launches of ``test_every`` steps of the fused op that carry Adam's state from one
launch to the next, which is bitwise the run of one launch (:mod:`compnet_ext.chunks`); after each
launch the networks are evaluated on the test points through the batched forward op.
``fused=False`` runs the step-by-step reference (one launch and one
:class:`~compnet_ext.optim.BatchedAdam` step per epoch) instead, with the same results.
"""
from dataclasses import dataclass, field

import torch

from ..batched_mlp import BatchedMLP
from ..checks import check_adam, check_int, check_sign
from ..init import mlp_widths
from ..mlp_ops import pack, unpack
from ..network import encode
from ..ops import PEAK_BOUNDS, smooth_scales
from ..optim import BatchedAdam
from ..targets import evaluate_target
from . import stages
from .config import STAGE1_KINDS, Config, cpu_threads
from .engine import starting_draw
from .progress import progress_bar

TRAIN_POINTS = 10
TEST_POINTS = 10
SPARSE_LR = 1e-3
"""The later version's one learning rate (Adam), for the peaks and the weights of every kind."""

SPARSE_SETTINGS = {"points": TRAIN_POINTS, "lr_peaks": SPARSE_LR, "lr_weights": SPARSE_LR,
                   "warmup_fraction": 0.0, "peak_bounds": PEAK_BOUNDS, "threads": 1}
"""What :func:`run` changes in a default :class:`Config` when none is given: the later
version's plain Adam (one constant rate, no warm-up; the library's peak clamp, not the
experiments' tuned one). One CPU thread: the launches on ten points are so short that OpenMP's
barriers cost more than the work (the 6-seed quick run took 0.5 s on one thread, 2.8-7 s on two
busy cores)."""

LATER_VERSION = {
    "x3": {"default": 2.41e-4, "enforced": 5.65e-6},
    "x11": {"default": 2.14e-3, "enforced": 6.53e-4},
    "sin": {"default": 2.27e-5, "enforced": 7.92e-7},
    "tanh3": {"default": 1.60e-4, "enforced": 5.09e-6},
}
"""Minimum test MSE (n = 30) of the later version's sparse-data test, as reported to us second
hand (we could not read its text): approximate, and its point layout is unknown."""

_ops = torch.ops.compnet_ext
_BETAS, _EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as everywhere in compnet_ext


def sparse_points(train=TRAIN_POINTS, test=TEST_POINTS, dtype=torch.float32):
    """``(x_train [train], x_test [test])``: ``i / (train - 1)`` (both ends included) and the cell
    centres ``(2j + 1) / (2 test)``. ValueError when a test point would be a training point."""
    check_int("train", train, 2)
    check_int("test", test, 1)
    # divisions, correctly rounded (linspace's interpolation may differ in the last bit)
    x_train = torch.arange(train, dtype=torch.float64) / (train - 1)
    x_test = (2 * torch.arange(test, dtype=torch.float64) + 1) / (2 * test)
    # i / (n-1) == (2j+1) / (2m)  <=>  2 m i == (n-1)(2j+1): exact in integers.
    if any(2 * test * i == (train - 1) * (2 * j + 1) for i in range(train) for j in range(test)):
        raise ValueError(f"`train` = {train} and `test` = {test} points share a point; choose "
                         f"counts whose grids are disjoint (e.g. 10 and 10)")
    return x_train.to(dtype), x_test.to(dtype)


@dataclass
class SparseResult:
    """One (target, kind) of the sparse-data test; rows are the seeds.

    ``test [S]`` and ``train [S]``: MSE of the trained networks on the test and training points;
    ``best_test [S]``: the lowest test MSE seen during weight training (after every
    ``test_every``-th step and at its start) and ``best_step [S]`` the Adam step where it was
    seen (counted over both stages); ``test_curve`` / ``train_curve`` ``[S, R + 1]`` with
    ``steps [R + 1]`` (Adam steps done at each record); ``layers``: the trained ``(W, b)``.
    """
    test: torch.Tensor
    train: torch.Tensor
    best_test: torch.Tensor
    best_step: torch.Tensor
    steps: torch.Tensor
    test_curve: torch.Tensor
    train_curve: torch.Tensor
    layers: list = field(default_factory=list)


def run(targets, config=None, *, x_train=None, x_test=None, test_every=1, **settings):
    """Train every kind on every target on the training points; measure on the test points.

    Args:
        targets: dict name -> (target, sign) (:func:`compnet_ext.targets.select` makes one from
            names), target a callable on points in [0, 1].
        config: a :class:`~compnet_ext.experiments.config.Config`; ``settings`` are its fields
            (given alone they change :data:`SPARSE_SETTINGS`: one learning rate 1e-3). The
            starting draws are those of :func:`compnet_ext.train.run` with the same ``seed``.
            ``points``, ``keep_curves`` and ``keep_layers`` do not apply.
        x_train, x_test: 1-D tensors of points (default :func:`sparse_points`), no point in both.
        test_every: evaluate on the test points after every k-th weight step (>= 1).

    Returns:
        ``(x_train, x_test, {target: {kind: SparseResult}})``, tensors on the CPU.
    """
    if config is None:
        cfg = Config(**{**SPARSE_SETTINGS, **settings})
    else:
        cfg = config.replace(**settings)
    check_int("test_every", test_every, 1)
    default_train, default_test = sparse_points(dtype=cfg.dtype)
    x_train = _points("x_train", default_train if x_train is None else x_train, cfg.dtype)
    x_test = _points("x_test", default_test if x_test is None else x_test, cfg.dtype)
    if bool(torch.isin(x_test, x_train).any()):
        raise ValueError("`x_test` and `x_train` share points; the test points must be new")
    if not targets:
        raise ValueError("`targets` is empty")
    ys = {}
    for name, (fn, sign) in targets.items():
        check_sign(sign)
        ys[name] = (evaluate_target(fn, x_train, name=f"target {name!r}"),
                    evaluate_target(fn, x_test, name=f"target {name!r}"), sign)
    with cpu_threads(cfg.threads if cfg.device.type == "cpu" else None):
        return x_train, x_test, _train(ys, x_train, x_test, cfg, test_every)


def _points(name, x, dtype):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a 1-D tensor of points, got {type(x).__name__}")
    if x.dim() != 1 or x.numel() < 1 or not bool(torch.isfinite(x).all()):
        raise ValueError(f"`{name}` must be a non-empty 1-D tensor of finite points, got shape "
                         f"{list(x.shape)}")
    return x.detach().to("cpu", dtype)


def _starts(cfg):
    """The starting draws of :func:`compnet_ext.train.run` (seed s starts alike; every draw)."""
    layers, peaks0 = starting_draw(cfg, mlp_widths(cfg.network_width(), cfg.depth))
    rows = slice(*(cfg.seed_block or (0, cfg.total_seeds)))
    return {k: [(W[rows], b[rows]) for W, b in v] for k, v in layers.items()}, peaks0[rows]


def _encoded(peaks, scales, sign):
    return [(W.detach(), b.detach()) for W, b in encode(peaks, scales, sign=sign)]


def _train(ys, x_train, x_test, cfg, test_every):
    dev, (E0, E1) = cfg.device, cfg.epochs
    names = list(ys)
    start, peaks0 = _starts(cfg)
    S = peaks0.shape[0]
    xd, td = x_train.to(dev), x_test.to(dev)
    work = sum(E0 + E1 if k not in STAGE1_KINDS else E1 for k in cfg.kinds) * len(names)
    bar = progress_bar(work, f"sparse test: {len(names)} target(s) x {len(cfg.kinds)} kind(s) x "
                             f"{S} seeds", cfg.progress)
    out = {n: {} for n in names}
    for k in cfg.kinds:
        per_target = []
        for n in names:
            y_train, _, sign = ys[n]
            if k in STAGE1_KINDS:  # stage 1 per target: the sign is the target's
                p0 = peaks0.to(dev)
                s0 = None if k == "enforced" else smooth_scales(p0, sign)
                p, s, _, _ = stages.train_peaks(xd, y_train.to(dev), p0, s0, sign,
                                                epochs=E0, lr=cfg.lr_peaks,
                                                peak_bounds=cfg.peak_bounds, fused=cfg.fused)
                per_target.append(_encoded(p, s, sign))
            elif k == "no_pretraining":
                per_target.append(_encoded(peaks0.to(dev), None, sign))
            else:
                per_target.append([(W.to(dev), b.to(dev)) for W, b in start[k]])
        layers = [(torch.cat([l[i][0] for l in per_target]),
                   torch.cat([l[i][1] for l in per_target])) for i in range(len(per_target[0]))]
        y_tr = torch.cat([ys[n][0].expand(S, -1) for n in names]).to(dev)
        y_te = torch.cat([ys[n][1].expand(S, -1) for n in names]).to(dev)
        # Weight-only kinds train both stages' steps on the weights; the others stage 2 only.
        offset, steps = (E0, E1) if k in STAGE1_KINDS else (0, E0 + E1)
        layers, tests, trains, done = _train_weights(
            layers, xd, y_tr, td, y_te, steps, cfg.lr_weights[k], cfg.warmup_steps(k),
            test_every, cfg.fused, bar)
        for i, n in enumerate(names):
            rows = slice(i * S, (i + 1) * S)
            te, tr = tests[rows].cpu(), trains[rows].cpu()
            best = te.argmin(dim=1)
            out[n][k] = SparseResult(
                test=te[:, -1].clone(), train=tr[:, -1].clone(),
                best_test=te.gather(1, best[:, None])[:, 0], best_step=done[best] + offset,
                steps=done + offset, test_curve=te, train_curve=tr,
                layers=[(W[rows].detach().cpu(), b[rows].detach().cpu()) for W, b in layers])
    bar.close()
    return out


def _mse(params, widths, x, y):
    return ((_ops.mlp_forward(x, params, widths) - y) ** 2).mean(dim=-1)


def _train_weights(layers, x, y, x_test, y_test, epochs, lr, warmup, test_every, fused, bar):
    """``epochs`` Adam steps (the rate warmed up over ``warmup`` steps) on all weights of the
    batched networks, measured on both point sets at the start and after every ``test_every``
    steps (and at the end).

    Returns ``(layers, test [rows, R + 1], train [rows, R + 1], steps [R + 1])``."""
    widths = [layers[0][0].shape[2]] + [W.shape[1] for W, _ in layers]
    lr, beta1, beta2, eps = check_adam(epochs, lr, _BETAS, _EPS, 0)
    with torch.no_grad():
        params = pack(layers).contiguous()
        mlp = opt = state = None
        if not fused:
            mlp = BatchedMLP.from_layers(layers)
            opt = BatchedAdam(stages.flat_params(mlp), lr, betas=_BETAS, eps=eps, warmup=warmup)
        tests, trains = [_mse(params, widths, x_test, y_test)], [_mse(params, widths, x, y)]
        steps = [0]
        done = 0
        while done < epochs:
            n = min(test_every, epochs - done)
            if fused:
                params, _, _, state = _ops.mlp_train(x, y, params, widths, n, lr, beta1, beta2,
                                                     eps, 0, state, done, warmup)
            else:
                stages.train_mlp(mlp, x, y, epochs=n, fused=False, opt=opt)
                params = pack(mlp.layers())
            done += n
            tests.append(_mse(params, widths, x_test, y_test))
            trains.append(_mse(params, widths, x, y))
            steps.append(done)
            bar.update(n)
        return (unpack(params, widths), torch.stack(tests, 1), torch.stack(trains, 1),
                torch.tensor(steps))
