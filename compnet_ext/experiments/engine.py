"""The experiment engine: every target x kind x seed of an experiment (MATH.md section 6) in as
few batched networks as possible (:func:`run`), and :func:`compare` on one target.

Stage 1 (:func:`~compnet_ext.experiments.stages.train_peaks`) trains the compositional
parameters -- peaks, and free scales when differentiability is not enforced; stage 2
(:func:`~compnet_ext.experiments.stages.train_mlp`) encodes them as a 4-neuron ReLU network
(:func:`compnet_ext.encode`) and trains all weights of S batched MLPs. Every seed's loss is its
own MSE and Adam is elementwise, so training S seeds in one batch gives each seed exactly the run
it would have alone.

Sign-0 (non-convex) targets, MATH.md section 7: every kind gets the same width-9 network; stage 1
trains the difference-of-convex pair (:mod:`~compnet_ext.experiments.nonconvex_stages`), stage
2 its encoding (:func:`compnet_ext.nonconvex.encode`) as above. The points then span the
``domain`` setting. A run holds sign-0 targets only or none (the widths differ).

A *block* is the S rows of one kind on one target. Weight-only kinds (default, raai,
no_pretraining) train during stage 1 of the others, then everything trains for the last
``epochs[1]`` steps: the fused engine as one launch series per kind, the step-by-step engine as
ONE BatchedMLP with one optimiser that keeps every row's Adam state.
"""
import contextlib
from dataclasses import dataclass, field

import torch

from ..batched_mlp import BatchedMLP
from ..checks import check_target_scale
from .. import nonconvex
from ..init import default_layers, mlp_widths, raai_layers, starting_peaks
from ..network import encode
from ..ops import smooth_scales
from ..optim import BatchedAdam
from ..targets import domain_of, evaluate_target, get_target
from . import nonconvex_stages, stages
from .config import STAGE1_KINDS, WEIGHT_ONLY_KINDS, Config, cpu_threads
from .progress import progress_bar


# The last starting draw, kept while reuse_draws() is active: {key: (start layers, peaks)}.
_draws = None


@contextlib.contextmanager
def reuse_draws():
    """Within it, :func:`run` keeps its last starting draw and reuses it when the next run draws
    the same (same ``seed``, ``seeds``, widths, ``dtype``, ``peak_range``): a split experiment
    trains many cells of one depth, each a seed block of the same whole draw. Freed on exit."""
    global _draws
    outer = _draws
    _draws = {} if outer is None else outer
    try:
        yield
    finally:
        _draws = outer


@dataclass
class KindResult:
    """One (target, kind): ``final [S]`` MSE, ``curve [E0+E1, S]`` (or None), best seed's fit
    ``best_fit [N]``, for stage-1 kinds the stage-1 ``peaks``/``scales`` (sign 0: ``[S, 2, D+1]``
    / ``[S, 2, D]``, and the pair's ``coef [S, 4]``, functions of u), and with ``keep_layers``
    the trained ``mlp_layers`` (functions of x). Sign-0 runs train every kind on u = (x - lo) /
    (hi - lo), the same input map for all; the map is folded into the first layer only when
    the layers are handed back."""
    final: torch.Tensor
    curve: torch.Tensor | None
    best_fit: torch.Tensor
    peaks: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    mlp_layers: list = field(default_factory=list)
    coef: torch.Tensor | None = None


def run(targets, config=None, **settings):
    """Train every kind on every target; the batched engine behind :func:`compare` and the CLI.

    Args:
        targets: dict name -> (target, sign), target a callable on points or a tensor ``[points]``
            (:func:`compnet_ext.targets.select` makes one from names); sign -1, +1, or 0 for
            a non-convex target (all targets of a run sign 0, or none).
        config: a :class:`~compnet_ext.experiments.config.Config`; ``settings`` are its fields
            (``kinds``, ``seeds``, ``points``, ``width``, ``depth``, ``epochs``, ``lr_peaks``,
            ``lr_weights``, ``warmup_fraction``, ``peak_bounds``, ``device``, ``seed``, ``dtype``,
            ``peak_range``, ``seed_block``, ``fused``, ``threads``, ``keep_curves``,
            ``keep_layers``, ``progress``, ``domain``), given
            alone or as changes to ``config``. Checked before any work.

    Returns:
        ``(x [points], {target: {kind: KindResult}})`` with tensors on the CPU; the rows are the
        seeds of ``config.rows`` (with ``draws`` > 1: draw after draw, ``draws x seeds``).
    """
    cfg = Config(**settings) if config is None else config.replace(**settings)
    if targets:
        cfg = cfg.replace(domain=domain_of(targets, cfg.domain))
    with cpu_threads(cfg.threads if cfg.device.type == "cpu" else None):
        exp = _Experiment(targets, cfg)
        E0, E1 = cfg.epochs
        desc = f"train {len(exp.names)} target(s) x {len(cfg.kinds)} kind(s) x {exp.S} seeds"
        if cfg.fused:
            bar = progress_bar(len(exp.weight_kinds) + len(exp.stage1_kinds), desc, cfg.progress)
            mlp, blocks, curves, stage1 = _train_fused(exp, bar)
        else:
            bar = progress_bar(E0 + E1, desc, cfg.progress)
            mlp, blocks, curves, stage1 = _train_steps(exp, bar)
        return exp.x, _results(exp, mlp, blocks, curves, stage1)


def compare(target, sign, config=None, **settings):
    """Final MSE per seed of every kind on one target: ``{kind: Tensor[seeds]}`` (CPU; with
    ``draws`` > 1, ``Tensor[draws x seeds]``, draw after draw).

    ``target``: a callable on a tensor of points in the ``domain`` setting (returns one value
    per point), a tensor of ``points`` values, or a registered target's name
    (:data:`compnet_ext.targets.TARGETS`: the paper's "x3", "x11", "sin", "tanh3", the
    non-convex "cubic", "periodic", "bump"; ``sign`` may then be None to use its sign, and
    without a ``domain`` setting, in ``config`` or the keywords, its domain is used).
    ``sign``: -1 for convex targets (waves subtracted), +1 for concave, 0 for any other (a
    difference of one network of each sign, MATH.md section 7; every kind then gets the same
    width-9 network), e.g.
    ``compare(lambda x: x**3 - x, sign=0, domain=(-1, 1))``. Settings as in :func:`run`
    (curves are not kept). Deterministic given ``seed`` on a given device.
    """
    if isinstance(target, str):
        target = get_target(target)  # callable, and carries its domain (targets.domain_of)
        sign = target.sign if sign is None else sign
    _, res = run({"target": (target, sign)}, config, **{**settings, "keep_curves": False})
    return {k: r.final for k, r in res["target"].items()}


class _Experiment:
    """What both engines share: the points, the targets' values and signs, the starting draw,
    and the rows of each block."""

    def __init__(self, targets, cfg):
        if not targets:
            raise ValueError("`targets` is empty")
        self.cfg = cfg
        self.signs = {name: check_experiment_sign(sign) for name, (_, sign) in targets.items()}
        self.pair = check_pair_run(self.signs, cfg.domain)
        self.x = torch.linspace(*cfg.domain, cfg.points, dtype=cfg.dtype)
        # Every kind's network sees u = (x - lo) / (hi - lo) on [0, 1], the pair's own input: the
        # same input map for all, so raw x far from 0 handicaps none of them (KindResult). Mapped
        # in float64, then rounded: u lies in [0, 1] (from float32 points it can pass 1 by ulps).
        self.x_net = self.x
        if self.pair:
            x64 = torch.linspace(*cfg.domain, cfg.points, dtype=torch.float64)
            self.x_net = nonconvex.to_unit(x64, cfg.domain).to(cfg.dtype)
        self.ys = {name: check_target_scale(f"target {name!r}",
                                            evaluate_target(tgt, self.x, name=f"target {name!r}"))
                   for name, (tgt, _) in targets.items()}
        self.names = list(targets)
        self.weight_kinds = [k for k in cfg.kinds if k in WEIGHT_ONLY_KINDS]
        self.stage1_kinds = [k for k in cfg.kinds if k in STAGE1_KINDS]
        self.dev = cfg.device
        self.x_d = self.x_net.to(self.dev)
        # One draw for everything, in a fixed order, so the selected kinds do not change the
        # numbers; a seed block is rows of the whole draw.
        # A pair's two halves draw their peaks as one row of 2 (D + 1).
        widths = mlp_widths(cfg.network_width(self.pair), cfg.depth)
        key = (cfg.seed, cfg.seeds, cfg.draws, widths, cfg.dtype, tuple(cfg.peak_range),
               self.pair)
        draw = None if _draws is None else _draws.get(key)
        if draw is None:
            draw = starting_draw(cfg, widths, self.pair)
            if _draws is not None:
                _draws.clear()
                _draws[key] = draw
        start, peaks0 = draw
        if cfg.seed_block is not None or _draws is not None:
            # copies: the kept draw must stay as drawn whatever a run does with its rows
            rows = slice(*(cfg.seed_block or (0, cfg.total_seeds)))
            start = {k: [(W[rows].clone(), b[rows].clone()) for W, b in layers]
                     for k, layers in start.items()}
            peaks0 = peaks0[rows].clone()
        self.start, self.peaks0, self.S = start, peaks0, len(cfg.rows)
        # The pair's starting coefficients: per seed and target, the least-squares fit given
        # the starting peaks (nonconvex_stages: why), shared by kinds 3-5 like the peaks.
        self.coef0 = {n: nonconvex.fit_coef(self.x_net, self.ys[n], peaks0)
                      for n in self.names} if self.pair else {}

    def rows(self, i):
        """Rows of the i-th block of a batch."""
        return slice(i * self.S, (i + 1) * self.S)

    def start_layers(self, kind, name):
        """Starting weights of a weight-only kind on target ``name`` (no_pretraining: the
        encoded starting peaks), on the device."""
        if kind in self.start:
            layers = self.start[kind]
        elif self.pair:
            layers = self.encoded((self.peaks0, None, self.coef0[name]))
        else:
            layers = _encoded(self.peaks0.to(self.dev), None, self.signs[name])
        return [(W.to(self.dev), b.to(self.dev)) for W, b in layers]

    def encoded(self, params, name=None):
        """The ReLU layers of stage-1 parameters ``(peaks, scales)`` on target ``name``, or of a
        pair's ``(peaks, scales, coef)`` (on u), detached."""
        if not self.pair:
            return _encoded(*params, self.signs[name])
        peaks, scales, coef = params
        return [(W.detach(), b.detach())
                for W, b in nonconvex.encode(peaks, coef, scales)]

    def target_rows(self, blocks):
        return torch.cat([self.ys[n].expand(self.S, self.cfg.points) for _, n in blocks]).to(self.dev)

    def lr_rows(self, blocks):
        return torch.cat([torch.full((self.S,), self.cfg.lr_weights[k], dtype=torch.float64)
                          for k, _ in blocks]).to(self.dev)

    def warmup_rows(self, blocks):
        return torch.cat([torch.full((self.S,), self.cfg.warmup_steps(k), dtype=torch.int64)
                          for k, _ in blocks]).to(self.dev)

    def train_stage1(self, record_every):
        """Stage 1 of every stage-1 kind on every target (one run per target: the sign is per
        target). Returns ``({block: (peaks, scales)}, {block: [curve [R, S]]})``."""
        cfg, stage1, curves = self.cfg, {}, {}
        for k in self.stage1_kinds:
            for n in self.names:
                p0 = self.peaks0.to(self.dev)
                if self.pair:
                    s0 = None if k == "enforced" else nonconvex.smooth_pair_scales(p0)
                    p, s, c, _, curve = nonconvex_stages.train_pair(
                        self.x_d, self.ys[n].to(self.dev), p0, self.coef0[n].to(self.dev), s0,
                        domain=(0.0, 1.0), epochs=cfg.epochs[0], lr=cfg.lr_peaks,
                        peak_bounds=cfg.peak_bounds, record_every=record_every)
                    stage1[(k, n)] = (p, s, c)
                    curves[(k, n)] = [curve.t()]
                    continue
                s0 = None if k == "enforced" else smooth_scales(p0, self.signs[n])
                p, s, _, curve = stages.train_peaks(
                    self.x_d, self.ys[n].to(self.dev), p0, s0, self.signs[n],
                    epochs=cfg.epochs[0], lr=cfg.lr_peaks, peak_bounds=cfg.peak_bounds,
                    record_every=record_every, fused=cfg.fused)
                stage1[(k, n)] = (p, s)
                curves[(k, n)] = [curve.t()]
        return stage1, curves

    def add_curves(self, curves, blocks, curve):
        """Append each block's rows of a batch's ``curve [rows, R]`` to ``curves`` as ``[R, S]``."""
        for i, b in enumerate(blocks):
            curves.setdefault(b, []).append(curve[self.rows(i)].t())


def _one_draw(seed, cfg, widths, pair):
    """The starting draw of master seed ``seed``: ``({"default", "raai": layers}, peaks0)``."""
    S, dtype = cfg.seeds, cfg.dtype
    g = torch.Generator().manual_seed(seed)
    start = {"default": default_layers(S, widths, g, dtype),
             "raai": raai_layers(S, widths, g, dtype)}
    if pair:
        peaks0 = starting_peaks(S, 2 * cfg.depth + 1, g, dtype, *cfg.peak_range)
        return start, peaks0.reshape(S, 2, cfg.depth + 1)
    return start, starting_peaks(S, cfg.depth, g, dtype, *cfg.peak_range)


def starting_draw(cfg, widths, pair=False):
    """Every row's start, ``({"default", "raai": layers [draws x seeds, ...]}, peaks0)``: draw
    ``r``'s rows as a run with master seed ``seed + r`` draws them alone, so a draw's numbers
    depend neither on ``draws`` nor on the other draws."""
    draws = [_one_draw(cfg.seed + r, cfg, widths, pair) for r in range(cfg.draws)]
    if len(draws) == 1:
        return draws[0]
    start = {k: _cat_layers([d[0][k] for d in draws]) for k in draws[0][0]}
    return start, torch.cat([d[1] for d in draws])


def check_experiment_sign(sign):
    """``sign`` of a target of an experiment: -1, +1, or 0 (non-convex); ValueError naming
    `sign` otherwise."""
    if isinstance(sign, bool) or sign not in (-1, 0, 1):
        raise ValueError(f"`sign` must be -1 (convex), +1 (concave) or 0 (non-convex), got "
                         f"{sign!r}")
    return int(sign)


def check_pair_run(signs, domain):
    """Whether a run's targets (``{name: sign}``) are sign 0: all or none of them (the widths
    differ); a domain other than [0, 1] needs them (the sign -1/+1 networks are pinned to
    y(0) = 0 and y(1) = 1 on [0, 1])."""
    zero = [n for n, s in signs.items() if s == 0]
    if zero and len(zero) != len(signs):
        raise ValueError(f"sign-0 targets {zero} cannot share a run with sign -1/+1 targets "
                         f"(their networks have width 9, not 4): run them separately")
    if not zero and tuple(domain) != (0.0, 1.0):
        raise ValueError(f"`domain` {tuple(domain)} needs sign-0 targets: the sign -1/+1 "
                         f"networks live on [0, 1] (y(0) = 0, y(1) = 1); use sign=0")
    return bool(zero)


def _encoded(peaks, scales, sign):
    return [(W.detach(), b.detach()) for W, b in encode(peaks, scales, sign=sign)]


def _cat_layers(layer_lists):
    return [(torch.cat([l[i][0] for l in layer_lists]), torch.cat([l[i][1] for l in layer_lists]))
            for i in range(len(layer_lists[0]))]


def _detached(mlp):
    return [(W.detach(), b.detach()) for W, b in mlp.layers()]


def _train_fused(exp, bar):
    """The fused engine: each stage of each kind is one launch series for all its targets and
    seeds (stage 1 per target; then stage 2 on every target's networks of the kind at once, at
    the kind's learning rate).
    Returns (mlp of all blocks, blocks, curves {block: [R x S pieces]}, stage1)."""
    E0, E1 = exp.cfg.epochs
    every = 1 if exp.cfg.keep_curves else 0
    parts, blocks = [], []
    stage1, curves = exp.train_stage1(every)

    def stage2(kind, kind_blocks, layers, steps):
        mlp = BatchedMLP.from_layers(layers)
        _, curve = stages.train_mlp(mlp, exp.x_d, exp.target_rows(kind_blocks), epochs=steps,
                                    lr=exp.cfg.lr_weights[kind], warmup=exp.cfg.warmup_steps(kind),
                                    record_every=every)
        parts.append(_detached(mlp))
        blocks.extend(kind_blocks)
        exp.add_curves(curves, kind_blocks, curve)
        bar.update(1)

    for k in exp.weight_kinds:  # all E0 + E1 steps on the weights
        kb = [(k, n) for n in exp.names]
        stage2(k, kb, _cat_layers([exp.start_layers(k, n) for n in exp.names]), E0 + E1)
    for k in exp.stage1_kinds:
        kb = [(k, n) for n in exp.names]
        stage2(k, kb, _cat_layers([exp.encoded(stage1[b], b[1]) for b in kb]), E1)
    bar.close()
    return BatchedMLP.from_layers(_cat_layers(parts)), blocks, curves, stage1


def _train_steps(exp, bar):
    """The step-by-step engine: one kernel launch and one BatchedAdam step per epoch.

    Weight-only kinds take their first E0 steps as one BatchedMLP while stage 1 runs on the
    others; then everything trains as ONE BatchedMLP (one optimiser keeping every row's Adam
    state) for the last E1 steps. Returns (mlp, blocks, curves {block: [R x S pieces]}, stage1)."""
    E0, E1 = exp.cfg.epochs
    every = 1 if exp.cfg.keep_curves else 0
    blocks = [(k, n) for k in exp.weight_kinds for n in exp.names]  # row order of the batch
    curves = {}
    # Phase A: weight-only kinds take their first E0 steps while stage 1 runs on the others.
    mlp_a = opt_a = None
    if blocks:
        mlp_a = BatchedMLP.from_layers(_cat_layers([exp.start_layers(k, n) for k, n in blocks]))
        opt_a = BatchedAdam(stages.flat_params(mlp_a), exp.lr_rows(blocks),
                            warmup=exp.warmup_rows(blocks))
        _, curve = stages.train_mlp(mlp_a, exp.x_d, exp.target_rows(blocks), epochs=E0,
                                    record_every=every, fused=False, opt=opt_a, progress=bar)
        exp.add_curves(curves, blocks, curve)
    stage1, stage1_curves = exp.train_stage1(every)
    curves.update(stage1_curves)
    if mlp_a is None:
        bar.update(E0)

    # Phase B: everything as one batched MLP for the last E1 steps.
    new_blocks = list(stage1)
    if new_blocks:
        new_layers = [exp.encoded(params, n) for (k, n), params in stage1.items()]
        parts = ([_detached(mlp_a)] if mlp_a else []) + new_layers
        mlp = BatchedMLP.from_layers(_cat_layers(parts))
        fresh = BatchedAdam(stages.flat_params(BatchedMLP.from_layers(_cat_layers(new_layers))),
                            exp.lr_rows(new_blocks), warmup=exp.warmup_rows(new_blocks))
        opt = BatchedAdam.cat([o for o in (opt_a, fresh) if o is not None],
                              stages.flat_params(mlp))
        blocks = blocks + new_blocks
    else:
        mlp, opt = mlp_a, opt_a
    _, curve = stages.train_mlp(mlp, exp.x_d, exp.target_rows(blocks), epochs=E1,
                                record_every=every, fused=False, opt=opt, progress=bar)
    bar.close()
    exp.add_curves(curves, blocks, curve)
    return mlp, blocks, curves, stage1


def _results(exp, mlp, blocks, curves, stage1):
    """``{target: {kind: KindResult}}`` in the order of the targets and of KINDS."""
    with torch.no_grad():
        y_final = mlp(exp.x_d)
        final = ((y_final - exp.target_rows(blocks)) ** 2).mean(dim=-1)
    layers = [(W.detach().cpu(), b.detach().cpu()) for W, b in mlp.layers()] \
        if exp.cfg.keep_layers else None
    if layers and exp.pair:  # trained on u: hand back networks of x
        layers[0] = nonconvex.fold_domain(*layers[0], exp.cfg.domain)
    out = {n: {} for n in exp.names}
    for i, (k, n) in enumerate(blocks):
        rows = exp.rows(i)
        f = final[rows].cpu()
        p, s, *c = stage1.get((k, n), (None, None))
        out[n][k] = KindResult(
            final=f, curve=torch.cat(curves[(k, n)]).cpu() if exp.cfg.keep_curves else None,
            best_fit=y_final[rows][int(torch.argmin(f))].detach().cpu(),
            peaks=None if p is None else p.cpu(), scales=None if s is None else s.cpu(),
            mlp_layers=[] if layers is None else [(W[rows], b[rows]) for W, b in layers],
            coef=c[0].cpu() if c else None)
    return {n: {k: out[n][k] for k in exp.cfg.kinds} for n in exp.names}
