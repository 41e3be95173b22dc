"""The compositional network's ops: public wrappers, fake (meta) kernels and autograd around
``torch.ops.compnet_ext.{forward, backward, loss_and_grad, train_peaks}``.

Shapes, dtypes and devices are checked before each op (:mod:`compnet_ext.checks`: clear messages
naming the argument, also under torch.compile); value checks (range, NaN/Inf) run inside the C++
op when ``validate=True``.
"""
import torch

from . import reference
from ._extension import forward_autograd as _forward_autograd
from .checks import (check_adam, check_finite, check_network, check_op_args, check_peak_bounds,
                     check_peak_values, check_unit_points, check_warmup,
                     min_peak)  # noqa: F401  (min_peak: documented as compnet_ext.ops.min_peak)
from .chunks import run_in_chunks
from .op_autograd import (below_autograd, differentiable_vjp, differentiated, plain_eager,
                          register_not_differentiable, unwrapped)

_ops = torch.ops.compnet_ext
# The overloads themselves (one Python frame less per call than the packets).
_forward_op, _backward_op = _ops.forward.default, _ops.backward.default
_loss_and_grad_op = _ops.loss_and_grad.default

PEAK_BOUNDS = (1e-3, 1 - 1e-3)
"""Where stage 1 clamps the peaks after every Adam step: the default ``peak_bounds`` of
:func:`train_peaks`, and what the experiments use (docs/hyperparameters.md)."""

# ---------------------------------------------------------------------------------------------
# fake kernels (shapes only) for torch.compile / meta tensors


@torch.library.register_fake("compnet_ext::forward")
def _forward_fake(x, peaks, scales, sign, validate):
    S, _ = check_op_args(x, peaks, scales, sign)
    return peaks.new_empty(S, x.shape[-1])


@torch.library.register_fake("compnet_ext::backward")
def _backward_fake(grad_y, x, peaks, scales, sign, need_x, need_peaks, need_scales):
    S, D = check_op_args(x, peaks, scales, sign)
    gx = x.new_empty(x.shape) if need_x else x.new_empty(0)
    gp = peaks.new_empty(S, D + 1) if need_peaks else peaks.new_empty(0)
    gs = peaks.new_empty(S, D) if (need_scales and scales is not None) else peaks.new_empty(0)
    return gx, gp, gs


@torch.library.register_fake("compnet_ext::loss_and_grad")
def _loss_and_grad_fake(x, target, peaks, scales, sign, validate):
    S, D = check_op_args(x, peaks, scales, sign, target)
    gs = peaks.new_empty(S, D) if scales is not None else peaks.new_empty(0)
    return peaks.new_empty(S), peaks.new_empty(S, D + 1), gs


@torch.library.register_fake("compnet_ext::train_peaks")
def _train_peaks_fake(x, target, peaks, scales, sign, epochs, lr, beta1, beta2, eps, peak_min,
                      peak_max, record_every, validate, state=None, step=0, warmup=0):
    S, D = check_op_args(x, target=target, peaks=peaks, scales=scales, sign=sign)
    records = -(-epochs // record_every) if record_every > 0 else 0
    P = D + 1 + (D if scales is not None else 0)
    return (peaks.new_empty(S, D + 1), peaks.new_empty(S, D) if scales is not None
            else peaks.new_empty(0), peaks.new_empty(S), peaks.new_empty(S, records),
            peaks.new_empty(S, 2, P))


# ---------------------------------------------------------------------------------------------
# autograd: one fused backward launch computes only the requested gradients; with
# create_graph=True the backward of the plain-PyTorch reference; forward mode and torch.func
# transforms through the reference itself, chosen in the wrapper (see compnet_ext.op_autograd)


def _setup_context(ctx, inputs, output):
    x, peaks, scales, sign, _validate = inputs
    ctx.save_for_backward(x, peaks, scales)
    ctx.sign = sign


def _reference_vjp(grad_y, x, peaks, scales, sign, need_x, need_peaks, need_scales):
    """The backward with create_graph=True (grad mode on): through the reference, so that it is
    itself differentiable. Also called by the C++ node (compnet/autograd.cpp)."""
    f = lambda x, peaks, scales: reference.forward(x, peaks, scales, sign)
    return tuple(differentiable_vjp(f, (x, peaks, scales), (need_x, need_peaks, need_scales),
                                    grad_y))


def _backward(ctx, grad_y):
    x, peaks, scales = ctx.saved_tensors
    need_x, need_peaks, need_scales = ctx.needs_input_grad[:3]
    if torch.is_grad_enabled():
        return (*_reference_vjp(grad_y, x, peaks, scales, ctx.sign, need_x, need_peaks,
                                need_scales), None, None)
    with below_autograd():  # what the registered autograd does with grad mode off, minus its cost
        gx, gp, gs = _backward_op(grad_y, x, peaks, scales, ctx.sign, need_x, need_peaks,
                                  need_scales and scales is not None)
    return (gx if need_x else None, gp if need_peaks else None,
            gs if need_scales and scales is not None else None, None, None)


torch.library.register_autograd("compnet_ext::forward", _backward, setup_context=_setup_context)


register_not_differentiable("backward", "gradients", "For higher-order gradients "
                            "differentiate compnet_ext.forward with create_graph=True")
_refuse_loss_and_grad = register_not_differentiable(
    "loss_and_grad", "a loss and its gradients", "For a differentiable loss use "
    "compnet_ext.forward and a torch loss, e.g. "
    "((compnet_ext.forward(x, peaks) - target) ** 2).mean(1)")
_refuse_train_peaks = register_not_differentiable(
    "train_peaks", "trained parameters", "To differentiate through training, unroll it with "
    "compnet_ext.forward and an update in torch ops")


# ---------------------------------------------------------------------------------------------
# public API


def _needs_grad(x, peaks, scales, target=None):
    """Whether autograd records a call on these tensors (written out: this runs on every call)."""
    return torch.is_grad_enabled() and (
        peaks.requires_grad or x.requires_grad or (scales is not None and scales.requires_grad)
        or (target is not None and target.requires_grad))


def forward(x, peaks, scales=None, sign=-1, *, validate=True):
    """Output of S compositional networks at N points, in one fused kernel.

    Args:
        x: points in [0, 1], ``[N]`` (shared by all seeds) or ``[S, N]``.
        peaks: triangle peaks in the open interval (0, 1), ``[S, D+1]`` for depth D.
        scales: ``None`` for smooth scales derived from the peaks (MATH.md section 3), or free
            scales ``[S, D]`` (the last peak column is then unused and gets a zero gradient).
        sign: -1 subtracts the waves (convex targets), +1 adds them (concave targets).
        validate: check values (peaks in (0, 1), x in [0, 1], no NaN/Inf). Costs one device
            sync on CUDA; pass False in hot loops once inputs are known to be valid.

    Returns:
        ``y`` of shape ``[S, N]``, differentiable w.r.t. x, peaks and scales: first order by
        the fused backward; higher orders (``create_graph=True``) by the backward of
        :func:`compnet_ext.reference.forward`, which is then used in its place. Forward mode
        (``torch.autograd.forward_ad``, ``torch.func.jvp``, ``jacfwd``) and the torch.func
        transforms ``grad``, ``vjp``, ``jacrev``, ``hessian`` run the reference itself (same
        values to rounding, same value checks); ``vmap`` runs the fused op per sample.
    """
    check_op_args(x, peaks, scales, sign)
    if differentiated(x, peaks, scales):
        if validate:
            check_peak_values(unwrapped(peaks))
            check_finite("scales", unwrapped(scales))
            check_unit_points("x", unwrapped(x))
        return reference.forward(x, peaks, scales, int(sign))
    sign, validate = int(sign), bool(validate)
    if not plain_eager():
        return _forward_op(x, peaks, scales, sign, validate)  # the registered autograd
    if _needs_grad(x, peaks, scales):
        # the registered autograd's forward and backward, with the node in C++
        return _forward_autograd(x, peaks, scales, sign, validate)
    with below_autograd():
        return _forward_op(x, peaks, scales, sign, validate)


def loss_and_grad(x, target, peaks, scales=None, sign=-1, *, validate=True):
    """Per-seed MSE and its gradients, forward and backward in one launch (the training hot path).

    Args:
        x: ``[N]`` or ``[S, N]`` points in [0, 1].
        target: ``[N]`` or ``[S, N]`` values to fit.
        peaks, scales, sign, validate: as in :func:`forward`.

    Returns:
        ``(loss [S], g_peaks [S, D+1], g_scales [S, D] or None)``: ``loss[s]`` is the mean
        squared error over the N points (0 when N = 0); the gradients are of ``loss.sum()``.
        ``g_scales`` is None in smooth mode (the scales' gradient flows into ``g_peaks``).
        Not differentiable: a backward through the results raises (use :func:`forward` and a
        torch loss for a differentiable loss).
    """
    check_op_args(x, peaks, scales, sign, target)
    _refuse_loss_and_grad(x, target, peaks, scales)
    args = (x, target, peaks, scales, int(sign), bool(validate))
    if not plain_eager() or _needs_grad(x, peaks, scales, target):
        loss, gp, gs = _loss_and_grad_op(*args)  # the registered autograd: raises on backward
    else:
        with below_autograd():
            loss, gp, gs = _loss_and_grad_op(*args)
    return loss, gp, (gs if scales is not None else None)


def smooth_scales(peaks, sign=-1, *, validate=True):
    """Smooth scales ``[S, D]`` derived from ``peaks [S, D+1]`` (MATH.md section 3); differentiable."""
    check_network(peaks, None, sign, validate=validate)
    return reference.smooth_scales(peaks, sign)


def train_peaks(x, target, peaks, scales=None, sign=-1, *, epochs, lr=1e-2, betas=(0.9, 0.999),
                eps=1e-8, peak_bounds=PEAK_BOUNDS, record_every=0, validate=True, warmup=0):
    """Stage 1 of the paper's method, fused: ``epochs`` Adam steps on the peaks.

    Every seed is trained independently (a CUDA warp or a CPU task owns a seed and keeps its
    parameters and gradients to itself). Each step is exactly :func:`loss_and_grad` followed by
    the Adam update of :class:`compnet_ext.optim.BatchedAdam` (``torch.optim.Adam``'s formula,
    no weight decay, fresh state) and ``peaks.clamp_(*peak_bounds)``; free ``scales`` are
    trained too, unclamped. The epochs run as launches of about 0.25 s each
    (:mod:`compnet_ext.chunks`), so Ctrl-C raises KeyboardInterrupt promptly; the result does
    not depend on the chunking.

    Args:
        x, target, peaks, scales, sign, validate: as in :func:`loss_and_grad` (not modified).
        epochs: number of Adam steps (>= 0).
        lr, betas, eps: Adam's hyper-parameters (ValueError naming the argument when out of range).
        peak_bounds: ``(lo, hi)`` with ``min_peak(dtype) <= lo <= hi < 1``; keeps the peaks
            valid (:func:`min_peak`). Default :data:`PEAK_BOUNDS`, the experiments' clamp.
        record_every: record the loss before every k-th step (0: no curve).
        warmup: steps of linear learning-rate warm-up: step t < warmup (1-based) takes
            ``lr * t / warmup`` (:func:`compnet_ext.optim.warmup_lr`); 0 (default): none.

    Returns:
        ``(peaks [S, D+1], scales [S, D] or None, loss [S], curve [S, ceil(epochs / k)])``:
        the trained parameters, the loss at the trained parameters, the recorded losses.
    """
    check_op_args(x, peaks, scales, sign, target)
    _refuse_train_peaks(x, target, peaks, scales)
    lr, beta1, beta2, eps = check_adam(epochs, lr, betas, eps, record_every)
    lo, hi = check_peak_bounds(peak_bounds, peaks.dtype)
    warmup = check_warmup(warmup)

    def launch(params, state, n, step):
        p, s = params
        p, s, loss, curve, state = _ops.train_peaks(
            x, target, p, s, int(sign), n, lr, beta1, beta2, eps, lo, hi, record_every,
            bool(validate) and step == 0, state, step, warmup)
        return (p, s if scales is not None else None), loss, curve, state

    cost = peaks.shape[0] * x.shape[-1] * peaks.shape[1]
    (p, s), loss, curve, _ = run_in_chunks(launch, (peaks, scales), epochs, record_every, cost,
                                           peaks.device)
    return p, s, loss, curve
