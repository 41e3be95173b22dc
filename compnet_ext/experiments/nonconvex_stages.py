"""Stage 1 of a non-convex (sign 0) experiment: the difference-of-convex pair of MATH.md
section 7 (:mod:`compnet_ext.nonconvex`) trained on its compositional parameters.

:func:`train_pair` takes Adam steps on both halves' peaks (``[S, 2, D+1]``), the four
coefficients ``[S, 4]`` and, when differentiability is not enforced, both halves' free scales
``[S, 2, D]``; the peaks are clamped to ``peak_bounds`` after every step, as in the convex
stage 1. Each step is ONE fused forward launch on the 2S rows of every seed's two halves
(:func:`compnet_ext.nonconvex.forward`) and ONE fused backward launch (the registered autograd
of :func:`compnet_ext.forward`), then a :class:`~compnet_ext.optim.BatchedAdam` step: the loop
runs in Python, one step per epoch. Stage 2 is the convex case's: the pair encoded as one
width-9 ReLU network (:func:`compnet_ext.nonconvex.encode`) trained on raw weights.

``reference=True`` takes the same steps with the pure-PyTorch pair
(:func:`compnet_ext.nonconvex.reference_forward`, each half with its own sign): what the tests
compare the fused steps with.
"""
import torch

from .. import nonconvex
from ..checks import check_int, check_peak_bounds
from ..ops import PEAK_BOUNDS
from ..optim import BatchedAdam


def pair_loss(x, target, peaks, coef, scales=None, *, domain, reference=False, validate=False):
    """Per-seed MSE ``[S]`` of the pair against ``target`` (``[N]`` or ``[S, N]``)."""
    if reference:
        y = nonconvex.reference_forward(x, peaks, coef, scales, domain=domain)
    else:
        y = nonconvex.forward(x, peaks, coef, scales, domain=domain, validate=validate)
    return ((y - target) ** 2).mean(dim=-1)


def train_pair(x, target, peaks, coef, scales=None, *, domain, epochs, lr=1e-2,
               peak_bounds=PEAK_BOUNDS, record_every=0, reference=False, progress=None):
    """Stage 1 on S pairs: ``epochs`` Adam steps on peaks, coefficients (and free scales).

    Args:
        x: ``[N]`` points in ``domain``; target: ``[N]`` or ``[S, N]``.
        peaks ``[S, 2, D+1]``, coef ``[S, 4]``, scales ``[S, 2, D]`` or None (smooth): the
            starting parameters (not modified).
        domain: ``(lo, hi)``, mapped onto [0, 1].
        epochs, lr, peak_bounds, record_every: as in :func:`compnet_ext.train_peaks` (one
            learning rate for every parameter; the peaks clamped after every step).
        reference: take the steps with the pure-PyTorch pair instead of the fused op.
        progress: optional bar with ``update(n)``, advanced by one per step.

    Returns:
        ``(peaks, scales or None, coef, loss [S], curve [S, R])``: new tensors; ``curve[:, r]``
        is the loss before step ``r * record_every``, ``loss`` the loss after the last step.
    """
    lo, hi = check_peak_bounds(peak_bounds, peaks.dtype)
    check_int("epochs", epochs, 0, wrong_type=ValueError)
    check_int("record_every", record_every, 0, wrong_type=ValueError)
    curve = peaks.new_empty(peaks.shape[0], -(-epochs // record_every) if record_every else 0)
    params = [peaks.detach().clone(), coef.detach().clone()]
    if scales is not None:
        params.append(scales.detach().clone())
    loss_of = lambda ps, validate=False: pair_loss(
        x, target, ps[0], ps[1], ps[2] if len(ps) > 2 else None, domain=domain,
        reference=reference, validate=validate)
    with torch.no_grad():
        loss_of(params, validate=True)  # values checked once: x in domain, peaks in (0, 1)
    opt = BatchedAdam(params, lr)
    for t in range(epochs):
        leaves = [p.detach().requires_grad_() for p in params]  # views of params: no copy
        with torch.enable_grad():
            loss = loss_of(leaves)
            grads = torch.autograd.grad(loss.sum(), leaves)
        opt.step(grads)
        params[0].clamp_(lo, hi)
        if record_every and t % record_every == 0:
            curve[:, t // record_every] = loss.detach()
        if progress is not None:
            progress.update(1)
    with torch.no_grad():
        loss = loss_of(params)
    return params[0], params[2] if scales is not None else None, params[1], loss, curve
