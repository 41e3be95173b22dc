"""Two-stage training of many seeds of all five kinds (MATH.md section 6), batched.

Stage 1 (:func:`train_peaks`) trains the compositional parameters -- peaks, and free scales when
differentiability is not enforced -- with Adam on the fused ``loss_and_grad`` kernel. Stage 2
(:func:`train_weights`) encodes them as a 4-neuron ReLU network (``compnet_ext.encode``) and trains
all weights of S batched MLPs (``compnet_ext.nn.BatchedMLP``) with Adam.

Both stages use :class:`~compnet_ext.optim.BatchedAdam` (the ``torch.optim.Adam`` update on raw
tensors, one step counter per seed). Every seed's loss is its own MSE and Adam is elementwise, so
training S seeds in one batch gives each seed exactly the run it would have alone.

Peaks stay in the open interval (0, 1) by clamping to ``[PEAK_EPS, 1 - PEAK_EPS]`` after every
Adam step (a projection: the kernel's gradients are exact, and the clamp is inactive in practice
for targets like the paper's; a sigmoid reparameterisation would rescale the gradients instead).

:func:`run` is the engine: all targets x kinds x seeds of an experiment in as few batched
networks as possible -- weight-only kinds (default, raai, no_pretraining) train during stage 1 of
the others, then everything trains as ONE BatchedMLP for the last ``epochs[1]`` steps.
"""
import contextlib
import math
from dataclasses import dataclass, field

import torch

from . import ops
from .init import PEAK_RANGE, default_layers, mlp_widths, raai_layers, starting_peaks
from .optim import BatchedAdam
from .progress import progress_bar
from .targets import evaluate_target, get_target

KINDS = ("default", "raai", "no_pretraining", "not_enforced", "enforced")
WEIGHT_ONLY_KINDS = ("default", "raai", "no_pretraining")  # no stage 1
STAGE1_KINDS = ("not_enforced", "enforced")

# Chosen by the sweep in docs/hyperparameters.md (Adam's other settings are torch's defaults).
# The weights' rate is per kind: each kind gets the rate that served it best, so no kind (least
# of all the baselines) is handicapped by a rate tuned for another.
LR_PEAKS = 1e-2
LR_WEIGHTS = {"default": 3e-3, "raai": 1e-2, "no_pretraining": 3e-4, "not_enforced": 1e-4,
              "enforced": 1e-4}
PEAK_EPS = 1e-3


def resolve_device(device):
    """``None`` or ``"auto"``: CUDA when available (and compnet_ext was built with it), else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() and ops.WITH_CUDA else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"`device` must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device` is {device!r} but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"`device` must be CPU or CUDA, got {device!r}")
    return dev


@contextlib.contextmanager
def cpu_threads(n):
    """Temporarily set torch's intra-op threads (None: leave as is).

    The fused engine's launches are long (every epoch of a stage), so all cores pay off on a
    quiet machine (full reproduce on 2 cores: 14.0 s with 2 threads, 29.9 s with 1). The
    step-by-step engine's launches are short, and when the cores are shared their OpenMP barriers
    stall (a reproduce-sized step ran ~10x faster with 1 thread than with 2 under load): pass
    threads=1 there.
    """
    if n is None:
        yield
        return
    _check_int("threads", n, 1)
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")


def _check_lr(name, value):
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
            or not math.isfinite(value)):
        raise ValueError(f"`{name}` must be a finite positive number, got {value!r}")


def check_kinds(kinds):
    """Tuple of kinds in KINDS order; ValueError naming `kinds` on unknown, empty or repeated."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    if not kinds:
        raise ValueError("`kinds` is empty")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown kind(s) {bad} in `kinds`; known kinds: {', '.join(KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"`kinds` has repeats: {list(kinds)}")
    return tuple(k for k in KINDS if k in kinds)


def check_config(*, kinds, seeds, points, width, depth, epochs, lr_peaks, lr_weights):
    """Validate an experiment's settings before any work; returns (kinds, epochs) normalised."""
    kinds = check_kinds(kinds)
    _check_int("seeds", seeds, 1)
    _check_int("points", points, 2)
    _check_int("width", width, 1)
    _check_int("depth", depth, 1)
    try:
        epochs = tuple(epochs)
    except TypeError:
        raise TypeError(f"`epochs` must be a pair (stage 1, stage 2), got {epochs!r}") from None
    if len(epochs) != 2:
        raise ValueError(f"`epochs` must be a pair (stage 1, stage 2), got {epochs!r}")
    for e in epochs:
        _check_int("epochs", e, 0)
    _check_lr("lr_peaks", lr_peaks)
    lr_weights = weight_lrs(lr_weights)
    if width != 4 and any(k in kinds for k in ("no_pretraining",) + STAGE1_KINDS):
        raise ValueError(f"`width` must be 4 for the compositional kinds (the encoding of MATH.md "
                         f"section 5 has 4 neurons per layer), got {width}")
    return kinds, epochs, lr_weights


def weight_lrs(lr_weights):
    """{kind: lr} from a number (all kinds) or a dict (missing kinds take LR_WEIGHTS's)."""
    if isinstance(lr_weights, dict):
        bad = [k for k in lr_weights if k not in KINDS]
        if bad:
            raise ValueError(f"unknown kind(s) {bad} in `lr_weights`; known: {', '.join(KINDS)}")
        out = {**LR_WEIGHTS, **lr_weights}
    else:
        out = {k: lr_weights for k in KINDS}
    for k, v in out.items():
        _check_lr(f"lr_weights[{k!r}]", v)
    return out


# ---------------------------------------------------------------------------------------------
# the two stages (stage 1 fused by default; the step-by-step paths are the reference)


def train_peaks(x, target, peaks, scales, sign, epochs, lr=LR_PEAKS, *, eps=PEAK_EPS,
                progress=None, fused=True):
    """Stage 1: Adam on the compositional parameters of S networks.

    Args:
        x: ``[N]`` points in [0, 1]; target: ``[N]`` or ``[S, N]`` values.
        peaks: ``[S, D+1]`` starting peaks in (0, 1). scales: ``None`` (smooth, differentiability
            enforced) or free starting scales ``[S, D]`` (trained too).
        epochs: Adam steps (full batch). progress: optional bar with ``update(n)``.
        fused: run all epochs in one launch (:func:`compnet_ext.train_peaks`); False takes the
            step-by-step path (one ``loss_and_grad`` launch and one :class:`BatchedAdam` step per
            epoch), which the fused stage is tested against.

    Returns:
        ``(peaks [S, D+1], scales [S, D] or None, losses [epochs, S])``: new tensors (the inputs are
        not modified); ``losses[t]`` is the per-seed MSE before step t.
    """
    if fused:
        p, s, _, curve = ops.train_peaks(x, target, peaks, scales, sign, epochs=epochs, lr=lr,
                                         peak_bounds=(eps, 1 - eps), record_every=1)
        if progress is not None:
            progress.update(epochs)
        return p, s, curve.t()
    peaks = peaks.detach().clone()
    params = [peaks] if scales is None else [peaks, scales.detach().clone()]
    opt = BatchedAdam(params, lr)
    losses = peaks.new_empty(epochs, peaks.shape[0])
    ops.loss_and_grad(x, target, peaks, params[1] if scales is not None else None, sign)  # validates
    for t in range(epochs):
        loss, gp, gs = ops.loss_and_grad(x, target, peaks, params[1] if scales is not None else None,
                                         sign, validate=False)
        opt.step([gp] if scales is None else [gp, gs])
        peaks.clamp_(eps, 1 - eps)
        losses[t] = loss
        if progress is not None:
            progress.update(1)
    return peaks, (params[1] if scales is not None else None), losses


def _flat_params(mlp):
    """Parameters in layer order ``[W0, b0, W1, b1, ...]`` (the order of the fused gradients)."""
    if hasattr(mlp, "layers"):
        return [t for W, b in mlp.layers() for t in (W, b)]
    return list(mlp.parameters())


def _weight_step(mlp, opt, x, target):
    from .nn import BatchedMLP

    if isinstance(mlp, BatchedMLP):
        # Fused forward + backward in one pass (issue 3's mlp_loss_and_grad): ~6x faster than
        # autograd through the baddbmm layers on this CPU.
        from .mlp_ops import mlp_loss_and_grad

        with torch.no_grad():  # the gradients are used as constants: no autograd graph
            loss, grads = mlp_loss_and_grad(x, target, mlp.layers())
        opt.step([g for gW, gb in grads for g in (gW, gb)])
        return loss
    params = _flat_params(mlp)
    loss = ((mlp(x) - target) ** 2).mean(dim=-1)
    opt.step(torch.autograd.grad(loss.sum(), params))
    return loss.detach()


def train_weights(mlp, x, target, epochs, lr=LR_WEIGHTS["enforced"], *, opt=None, progress=None):
    """Stage 2: Adam on all weights of a BatchedMLP (S networks, each its own MSE).

    Args:
        mlp: ``compnet_ext.nn.BatchedMLP`` (or any module mapping x -> ``[S, N]``) whose
            parameters all have the seed as first dimension.
        x: ``[N]``; target: ``[N]`` or ``[S, N]``. epochs: Adam steps (full batch).
        lr: a number or per-seed tensor ``[S]`` (ignored when ``opt`` is given).
        opt: a :class:`BatchedAdam` over the layers' ``[W0, b0, W1, b1, ...]`` to continue (default: a fresh one).

    Returns:
        ``losses [epochs, S]``: the per-seed MSE before each step.
    """
    from .nn import _check_target_mlp

    if opt is None:
        opt = BatchedAdam(_flat_params(mlp), lr)
    S = next(mlp.parameters()).shape[0]
    _check_target_mlp(target, x, S, x, "x")  # a module's loss would broadcast a wrong shape
    losses = x.new_empty(epochs, S)
    for t in range(epochs):
        losses[t] = _weight_step(mlp, opt, x, target)
        if progress is not None:
            progress.update(1)
    return losses


# ---------------------------------------------------------------------------------------------
# the experiment engine


@dataclass
class KindResult:
    """One (target, kind): ``final [S]`` MSE, ``curve [E0+E1, S]`` (or None), best seed's fit
    ``best_fit [N]``, and for stage-1 kinds the stage-1 ``peaks``/``scales``."""
    final: torch.Tensor
    curve: torch.Tensor | None
    best_fit: torch.Tensor
    peaks: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    mlp_layers: list = field(default_factory=list)


def _cat_layers(layer_lists):
    return [(torch.cat([l[i][0] for l in layer_lists]), torch.cat([l[i][1] for l in layer_lists]))
            for i in range(len(layer_lists[0]))]


def _encode(peaks, scales, sign):
    from . import encode  # from issue 3 (network.py); imported late so train.py loads without it

    return [(W.detach(), b.detach()) for W, b in encode(peaks, scales, sign=sign)]


def _mlp(layers):
    from .nn import BatchedMLP

    return BatchedMLP.from_layers(layers)


def run(targets, *, kinds=KINDS, seeds=30, points=500, width=4, depth=5, epochs=(1000, 1000),
        lr_peaks=LR_PEAKS, lr_weights=LR_WEIGHTS, device=None, seed=0, dtype=torch.float32,
        keep_curves=True, keep_layers=False, progress=False, threads=None,
        peak_range=PEAK_RANGE, fused=True):
    """Train ``seeds`` networks of every kind on every target; the batched engine behind
    :func:`compare` and the CLI.

    Args:
        targets: dict name -> (target, sign), target a callable on points or a tensor ``[points]``.
        kinds: subset of KINDS. seeds, points, width, depth: as in the paper (MATH.md section 6).
        epochs: (stage 1, stage 2) Adam steps; weight-only kinds train ``sum(epochs)`` steps.
        lr_peaks: stage-1 rate. lr_weights: weights' rate, a number or {kind: rate} (default
            LR_WEIGHTS, per kind).
        device: "auto"/None, "cpu", "cuda". seed: the generator seed; seed s of every target and
            kind starts from the same draw (kinds 3-5 share their starting peaks).
        keep_curves / keep_layers: keep per-step losses / the trained weights.
        peak_range: (low, high) of the uniform starting peaks (kinds 3-5).
        progress: show a progress bar. threads: CPU intra-op threads while training (None:
            torch's setting, the default; see :func:`cpu_threads`); ignored on CUDA.
        fused: run every stage of every kind as one launch (compnet_ext.train_peaks,
            compnet_ext.mlp_ops.mlp_train); False takes the step-by-step path (one launch and one
            :class:`BatchedAdam` step per epoch), the reference the fused path is tested against.

    Returns:
        ``(x [points], {target: {kind: KindResult}})`` with tensors on the CPU.
    """
    kinds, epochs, lr_weights = check_config(kinds=kinds, seeds=seeds, points=points, width=width,
                                             depth=depth, epochs=epochs, lr_peaks=lr_peaks,
                                             lr_weights=lr_weights)
    dev = resolve_device(device)
    with cpu_threads(threads if dev.type == "cpu" else None):
        return _run(targets, kinds, seeds, points, width, depth, epochs, lr_peaks, lr_weights, dev,
                    seed, dtype, keep_curves, keep_layers, progress, peak_range, fused)


def _run(targets, kinds, seeds, points, width, depth, epochs, lr_peaks, lr_weights, dev, seed,
         dtype, keep_curves, keep_layers, progress, peak_range, fused):
    if not targets:
        raise ValueError("`targets` is empty")
    x = torch.linspace(0, 1, points, dtype=dtype)
    ys = {}
    for name, (tgt, sign) in targets.items():
        ops._check_sign(sign)
        ys[name] = evaluate_target(tgt, x, name=f"target {name!r}")
    S, names = seeds, list(targets)
    widths = mlp_widths(width, depth)

    # One draw for everything, in a fixed order, so the selected kinds do not change the numbers.
    g = torch.Generator().manual_seed(seed)
    start = {"default": default_layers(S, widths, g, dtype), "raai": raai_layers(S, widths, g, dtype)}
    peaks0 = starting_peaks(S, depth, g, dtype, *peak_range)

    x_d = x.to(dev)
    wkinds = [k for k in kinds if k in WEIGHT_ONLY_KINDS]
    skinds = [k for k in kinds if k in STAGE1_KINDS]

    def rows_lr(block_list):
        return torch.cat([torch.full((S,), lr_weights[k], dtype=torch.float64)
                          for k, _ in block_list]).to(dev)

    def rows_target(block_list):
        return torch.cat([ys[n].expand(S, points) for _, n in block_list]).to(dev)

    E0, E1 = epochs
    desc = f"train {len(names)} target(s) x {len(kinds)} kind(s) x {S} seeds"
    if fused:
        mlp, blocks, curves, stage1 = _train_fused(
            x_d, ys, targets, names, wkinds, skinds, start, peaks0, S, epochs, lr_peaks,
            lr_weights, keep_curves, rows_target, progress_bar(len(wkinds) + len(skinds), desc, progress))
    else:
        mlp, blocks, curves, stage1 = _train_steps(
            x_d, ys, targets, names, wkinds, skinds, start, peaks0, S, epochs, lr_peaks, rows_lr,
            rows_target, progress_bar(E0 + E1, desc, progress))
    with torch.no_grad():
        y_final = mlp(x_d)
        final = ((y_final - rows_target(blocks)) ** 2).mean(dim=-1)
    layers_final = [(W.detach().cpu(), b.detach().cpu()) for W, b in mlp.layers()] if keep_layers else None

    out = {n: {} for n in names}
    for i, (k, n) in enumerate(blocks):
        rows = slice(i * S, (i + 1) * S)
        f = final[rows].cpu()
        curve = torch.cat(curves[(k, n)]).cpu() if keep_curves else None
        p, s = stage1.get((k, n), (None, None))
        out[n][k] = KindResult(
            final=f, curve=curve, best_fit=y_final[rows][int(torch.argmin(f))].detach().cpu(),
            peaks=None if p is None else p.cpu(), scales=None if s is None else s.cpu(),
            mlp_layers=[] if layers_final is None else [(W[rows], b[rows]) for W, b in layers_final])
    out = {n: {k: out[n][k] for k in kinds} for n in names}
    return x, out


def _start_layers(k, n, start, peaks0, targets, dev):
    """Starting weights of a weight-only kind on target n (no_pretraining: the encoded peaks)."""
    layers = start[k] if k in start else _encode(peaks0.to(dev), None, targets[n][1])
    return [(W.to(dev), b.to(dev)) for W, b in layers]


def _train_steps(x_d, ys, targets, names, wkinds, skinds, start, peaks0, S, epochs, lr_peaks,
                 rows_lr, rows_target, bar):
    """The step-by-step path: one kernel launch and one BatchedAdam step per epoch.

    Weight-only kinds take their first E0 steps as one BatchedMLP while stage 1 runs on the
    others; then everything trains as ONE BatchedMLP (one optimiser keeping every row's Adam
    state) for the last E1 steps. Returns (mlp, blocks, curves {block: [pieces]}, stage1)."""
    E0, E1 = epochs
    dev = x_d.device
    blocks = [(k, n) for k in wkinds for n in names]  # row order of the batched MLP, S rows each
    layer_lists = [_start_layers(k, n, start, peaks0, targets, dev) for k, n in blocks]
    curves = {}  # block -> list of [E, S] pieces
    # Phase A: weight-only kinds take their first E0 steps while stage 1 runs on the others.
    mlp_a = opt_a = None
    if layer_lists:
        mlp_a = _mlp(_cat_layers(layer_lists))
        opt_a = BatchedAdam(_flat_params(mlp_a), rows_lr(blocks))
        loss_a = train_weights(mlp_a, x_d, rows_target(blocks), E0, opt=opt_a, progress=bar)
        for i, b in enumerate(blocks):
            curves[b] = [loss_a[:, i * S:(i + 1) * S]]
    stage1 = {}
    for k in skinds:
        for n in names:
            sign = targets[n][1]
            p0 = peaks0.to(dev)
            s0 = None if k == "enforced" else ops.smooth_scales(p0, sign)
            p, s, loss = train_peaks(x_d, ys[n].to(dev), p0, s0, sign, E0, lr_peaks, fused=False)
            stage1[(k, n)] = (p, s)
            curves[(k, n)] = [loss]
    if mlp_a is None:
        bar.update(E0)

    # Phase B: everything as one batched MLP for the last E1 steps.
    new_blocks = list(stage1)
    if new_blocks:
        new_layers = [_encode(p, s, targets[n][1]) for (k, n), (p, s) in stage1.items()]
        parts = ([[(W.detach(), b.detach()) for W, b in mlp_a.layers()]] if mlp_a else []) + new_layers
        mlp = _mlp(_cat_layers(parts))
        fresh = BatchedAdam(_flat_params(_mlp(_cat_layers(new_layers))), rows_lr(new_blocks))
        opt = BatchedAdam.cat([o for o in (opt_a, fresh) if o is not None], _flat_params(mlp))
        blocks = blocks + new_blocks
    else:
        mlp, opt = mlp_a, opt_a
    loss_b = train_weights(mlp, x_d, rows_target(blocks), E1, opt=opt, progress=bar)
    bar.close()
    for i, b in enumerate(blocks):
        curves[b].append(loss_b[:, i * S:(i + 1) * S])
    return mlp, blocks, curves, stage1


def _train_fused(x_d, ys, targets, names, wkinds, skinds, start, peaks0, S, epochs, lr_peaks,
                 lr_weights, keep_curves, rows_target, bar):
    """The fused path: each stage of each kind is one launch for all its targets and seeds
    (compnet_ext.train_peaks per target for stage 1, since the sign is per target; then
    mlp_train on every target's encoded networks at once, at the kind's learning rate).
    Returns (mlp of all blocks, blocks, curves {block: [pieces]}, stage1)."""
    from .mlp_ops import mlp_train

    E0, E1 = epochs
    dev = x_d.device
    every = 1 if keep_curves else 0
    parts, blocks, curves, stage1 = [], [], {}, {}

    def stage2(kind, kind_blocks, layers, steps):
        new, _, curve = mlp_train(x_d, rows_target(kind_blocks), layers, epochs=steps,
                                  lr=lr_weights[kind], record_every=every)
        parts.append(new)
        blocks.extend(kind_blocks)
        for i, b in enumerate(kind_blocks):
            curves.setdefault(b, []).append(curve[i * S:(i + 1) * S].t())
        bar.update(1)

    for k in wkinds:  # weight-only kinds: all E0 + E1 steps on the weights
        kb = [(k, n) for n in names]
        stage2(k, kb, _cat_layers([_start_layers(k, n, start, peaks0, targets, dev) for n in names]),
               E0 + E1)
    for k in skinds:
        for n in names:
            sign = targets[n][1]
            p0 = peaks0.to(dev)
            s0 = None if k == "enforced" else ops.smooth_scales(p0, sign)
            p, s, loss = train_peaks(x_d, ys[n].to(dev), p0, s0, sign, E0, lr_peaks)
            stage1[(k, n)] = (p, s)
            curves[(k, n)] = [loss] if keep_curves else []
        kb = [(k, n) for n in names]
        stage2(k, kb, _cat_layers([_encode(*stage1[b], targets[b[1]][1]) for b in kb]), E1)
    bar.close()
    return _mlp(_cat_layers(parts)), blocks, curves, stage1


def compare(target, sign, *, kinds=KINDS, seeds=30, points=500, width=4, depth=5,
            epochs=(1000, 1000), lr_peaks=LR_PEAKS, lr_weights=LR_WEIGHTS, device=None, seed=0):
    """Final MSE per seed of every kind on one target: ``{kind: Tensor[seeds]}`` (CPU).

    ``target``: a callable on a tensor of points in [0, 1] (returns one value per point), a
    tensor of ``points`` values, or one of the paper's target names ("x3", "x11", "sin",
    "tanh3"; ``sign`` may then be None to use the paper's). ``sign``: -1 for convex targets
    (waves subtracted), +1 for concave. Other arguments as in :func:`run`. Deterministic given
    ``seed`` on a given device.
    """
    if isinstance(target, str):
        named = get_target(target)
        sign = named.sign if sign is None else sign
        target = named.fn
    _, res = run({"target": (target, sign)}, kinds=kinds, seeds=seeds, points=points, width=width,
                 depth=depth, epochs=epochs, lr_peaks=lr_peaks, lr_weights=lr_weights,
                 device=device, seed=seed, keep_curves=False)
    return {k: r.final for k, r in res["target"].items()}
