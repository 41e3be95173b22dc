"""The two training stages of the paper's method, each one function, fused or step by step.

Stage 1, :func:`train_peaks`: Adam on the compositional parameters (peaks, and free scales when
differentiability is not enforced), the peaks clamped to ``peak_bounds`` after every step.
Stage 2, :func:`train_mlp`: Adam on every weight and bias of S batched ReLU MLPs.

``fused=True`` runs the library's fused stage (:func:`compnet_ext.train_peaks`,
:func:`compnet_ext.nn.train_mlp`: all epochs as a few launches); ``fused=False`` the
step-by-step reference the fused stages are tested against, bitwise: one ``loss_and_grad``
launch and one :class:`~compnet_ext.optim.BatchedAdam` step per epoch. Both return the layout
of the library's stage: the loss at the trained parameters ``[S]`` and the loss curve ``[S, R]``
(``curve[:, r]`` is the loss before step ``r * record_every``).
"""
import torch

from .. import ops
from ..batched_mlp import BatchedMLP, train_mlp as _train_mlp_fused
from ..checks import check_int, check_mlp_target, check_peak_bounds
from ..optim import BatchedAdam


def _curve(like, S, epochs, record_every):
    """The step-by-step paths' empty curve ``[S, R]`` (the arguments checked as the ops do)."""
    check_int("epochs", epochs, 0, wrong_type=ValueError)
    check_int("record_every", record_every, 0, wrong_type=ValueError)
    return like.new_empty(S, -(-epochs // record_every) if record_every > 0 else 0)


def _step_done(curve, t, record_every, loss, progress):
    """After step t: the loss before it recorded (every ``record_every``-th), the bar moved."""
    if record_every and t % record_every == 0:
        curve[:, t // record_every] = loss
    if progress is not None:
        progress.update(1)


def train_peaks(x, target, peaks, scales=None, sign=-1, *, epochs, lr=1e-2,
                peak_bounds=ops.PEAK_BOUNDS, record_every=0, warmup=0, fused=True, progress=None):
    """Stage 1 on S networks: ``epochs`` Adam steps on the peaks (and free ``scales``).

    Args:
        x, target, peaks, scales, sign: as in :func:`compnet_ext.loss_and_grad` (not modified).
        epochs, lr, peak_bounds, record_every, warmup: as in :func:`compnet_ext.train_peaks`.
        fused: the fused stage (default), or the step-by-step reference.
        progress: optional bar with ``update(n)``, advanced by the epochs done.

    Returns:
        ``(peaks [S, D+1], scales [S, D] or None, loss [S], curve [S, R])`` as
        :func:`compnet_ext.train_peaks`: new tensors.
    """
    if fused:
        out = ops.train_peaks(x, target, peaks, scales, sign, epochs=epochs, lr=lr,
                              peak_bounds=peak_bounds, record_every=record_every, warmup=warmup)
        if progress is not None:
            progress.update(epochs)
        return out
    lo, hi = check_peak_bounds(peak_bounds, peaks.dtype)
    curve = _curve(peaks, peaks.shape[0], epochs, record_every)
    peaks = peaks.detach().clone()
    params = [peaks] if scales is None else [peaks, scales.detach().clone()]
    free = params[1] if scales is not None else None
    opt = BatchedAdam(params, lr, warmup=warmup)
    ops.loss_and_grad(x, target, peaks, free, sign)  # validates
    for t in range(epochs):
        loss, gp, gs = ops.loss_and_grad(x, target, peaks, free, sign, validate=False)
        opt.step([gp] if scales is None else [gp, gs])
        peaks.clamp_(lo, hi)
        _step_done(curve, t, record_every, loss, progress)
    loss, _, _ = ops.loss_and_grad(x, target, peaks, free, sign, validate=False)
    return peaks, free, loss, curve


def flat_params(mlp):
    """Parameters in layer order ``[W0, b0, W1, b1, ...]``: the order of the fused gradients, and
    of a :class:`BatchedAdam` over a stage-2 network (:func:`train_mlp`'s ``opt``)."""
    if isinstance(mlp, BatchedMLP):
        return [t for W, b in mlp.layers() for t in (W, b)]
    return list(mlp.parameters())


def _loss_and_grads(mlp, x, target):
    """Per-seed MSE and the gradients of its sum, in ``flat_params`` order."""
    if isinstance(mlp, BatchedMLP):  # fused forward + backward in one pass, detached
        loss, grads = mlp.loss_and_grad(x, target)
        return loss, [g for gW, gb in grads for g in (gW, gb)]
    loss = ((mlp(x) - target) ** 2).mean(dim=-1)
    return loss.detach(), torch.autograd.grad(loss.sum(), flat_params(mlp))


def train_mlp(mlp, x, target, *, epochs, lr=1e-3, record_every=0, warmup=0, fused=True, opt=None,
              progress=None):
    """Stage 2 on S networks, in place: ``epochs`` Adam steps on every weight and bias.

    Args:
        mlp: a :class:`compnet_ext.nn.BatchedMLP`; step by step, also any module mapping x to
            ``[S, N]`` whose parameters all have the seed as first dimension.
        x: ``[N]`` points; target: ``[N]`` or ``[S, N]``.
        epochs, lr, record_every, warmup: as in :func:`compnet_ext.nn.train_mlp`.
        fused: the fused stage (default), or the step-by-step reference, which also takes
            ``lr`` as a per-seed tensor ``[S]`` and ``opt``, a :class:`BatchedAdam` over the
            layers' ``[W0, b0, W1, b1, ...]`` to continue (its rates and warm-up then apply).
        progress: optional bar with ``update(n)``, advanced by the epochs done.

    Returns:
        ``(loss [S], curve [S, R])`` as :func:`compnet_ext.nn.train_mlp`.
    """
    if fused:
        if opt is not None or isinstance(lr, torch.Tensor):
            raise ValueError("the fused stage 2 starts a fresh Adam at one `lr`; `opt` and "
                             "per-seed rates need fused=False")
        out = _train_mlp_fused(mlp, x, target, epochs=epochs, lr=lr, record_every=record_every,
                               warmup=warmup)
        if progress is not None:
            progress.update(epochs)
        return out
    if opt is None:
        opt = BatchedAdam(flat_params(mlp), lr, warmup=warmup)
    S = next(mlp.parameters()).shape[0]
    check_mlp_target(target, x, S, x, "x")  # a module's loss would broadcast a wrong shape
    curve = _curve(x, S, epochs, record_every)
    for t in range(epochs):
        loss, grads = _loss_and_grads(mlp, x, target)
        opt.step(grads)
        _step_done(curve, t, record_every, loss, progress)
    with torch.no_grad():
        loss = (mlp.loss_and_grad(x, target)[0] if isinstance(mlp, BatchedMLP)
                else ((mlp(x) - target) ** 2).mean(dim=-1))
    return loss, curve
