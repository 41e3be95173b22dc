"""Public ops: fake (meta) kernels, autograd, and argument checking around torch.ops.compnet_ext.

Shapes, dtypes and devices are checked here (clear messages naming the argument, also under
torch.compile); value checks (range, NaN/Inf) run inside the C++ op when ``validate=True``.
"""
import math
import numbers
from typing import Sequence

import torch

from . import reference
from ._extension import WITH_CUDA
from .chunks import run_in_chunks

_ops = torch.ops.compnet_ext

# ---------------------------------------------------------------------------------------------
# argument checks


def _check_tensor(name, t, ref=None):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"`{name}` must be float32 or float64, got {t.dtype}")
    if ref is not None:
        if t.dtype != ref.dtype:
            raise TypeError(f"`{name}` has dtype {t.dtype} but `peaks` has {ref.dtype}")
        if t.device != ref.device:
            raise ValueError(f"`{name}` is on {t.device} but `peaks` is on {ref.device}")
    elif t.device.type == "cuda" and not WITH_CUDA:
        raise RuntimeError(
            f"`{name}` is a CUDA tensor but compnet_ext was built without CUDA; rebuild with a "
            "CUDA build of torch and nvcc available (see README, 'Building for CUDA')"
        )
    elif t.device.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"`{name}` is on {t.device}; only CPU and CUDA are supported")


def _check_points(name, t, S, N=None):
    """[N] (shared by all seeds) or [S, N]."""
    if t.dim() == 2 and t.shape[0] == S and (N is None or t.shape[1] == N):
        return
    if t.dim() == 1 and (N is None or t.shape[0] == N):
        return
    want = f"[N] or [S, N] with S = {S}" + ("" if N is None else f", N = {N}")
    raise ValueError(f"`{name}` has shape {list(t.shape)}, expected {want}")


def _check_sign(sign):
    if isinstance(sign, bool) or sign not in (-1, 1):
        raise ValueError(f"`sign` must be -1 or +1, got {sign!r}")


INT64_MAX = 2**63 - 1
"""Largest value of an ``int`` argument of the op schemas (C++ int64_t)."""


def _check_int(name, value):
    """An int in [0, INT64_MAX]: a larger one would fail inside the op schema, unnamed."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        raise ValueError(f"`{name}` must be an int >= 0 (at most 2**63 - 1), got {value!r}")


def _real(value):
    """float(value) for a real number, inf for one too large for a float, None otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # a huge Python int
        return math.inf


def _check_adam(epochs, lr, betas, eps, record_every):
    """Hyper-parameters of the fused training stages; returns (lr, beta1, beta2, eps) as floats."""
    _check_int("epochs", epochs)
    _check_int("record_every", record_every)
    lr_, eps_ = _real(lr), _real(eps)
    if lr_ is None or not (math.isfinite(lr_) and lr_ >= 0):
        raise ValueError(f"`lr` must be a finite number >= 0, got {lr!r}")
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2
            and all(_real(b) is not None and 0 <= b < 1 for b in betas)):
        raise ValueError(f"`betas` must be a pair of numbers in [0, 1), got {betas!r}")
    if eps_ is None or not (math.isfinite(eps_) and eps_ > 0):
        raise ValueError(f"`eps` must be a finite number > 0, got {eps!r}")
    return lr_, float(betas[0]), float(betas[1]), eps_


def _check_peak_bounds(peak_bounds):
    """``(lo, hi)`` with ``0 < lo <= hi < 1``, as floats."""
    if not (isinstance(peak_bounds, (tuple, list)) and len(peak_bounds) == 2
            and all(_real(b) is not None for b in peak_bounds)
            and 0 < peak_bounds[0] <= peak_bounds[1] < 1):
        raise ValueError("`peak_bounds` must be a pair (lo, hi) with 0 < lo <= hi < 1, got "
                         f"{peak_bounds!r}")
    return float(peak_bounds[0]), float(peak_bounds[1])


def min_peak(dtype):
    """The smallest valid peak of ``dtype``: below ``sqrt(finfo.tiny)`` 1/a^2 overflows
    (about 1.1e-19 in float32, 1.5e-154 in float64)."""
    return math.sqrt(torch.finfo(dtype).tiny)


def check_peak_values(peaks):
    """Value check of ``peaks`` (one device sync): in (0, 1), at least :func:`min_peak`, no NaN."""
    lo = min_peak(peaks.dtype)
    if peaks.numel() and not bool(((peaks >= lo) & (peaks < 1)).all()):
        raise ValueError(f"`peaks` must lie in the open interval (0, 1), and be at least {lo:.3g} "
                         f"in {peaks.dtype} (smaller peaks overflow 1/a^2; NaN is not allowed)")


def _check_args(x, peaks, scales, sign, target=None):
    _check_tensor("peaks", peaks)
    if peaks.dim() != 2 or peaks.shape[1] < 2:
        raise ValueError(f"`peaks` must be [S, D+1] with D >= 1, got shape {list(peaks.shape)}")
    S, D = peaks.shape[0], peaks.shape[1] - 1
    _check_tensor("x", x, peaks)
    _check_points("x", x, S)
    if scales is not None:
        _check_tensor("scales", scales, peaks)
        if scales.dim() != 2 or tuple(scales.shape) != (S, D):
            raise ValueError(f"`scales` must be [S, D] = [{S}, {D}], got {list(scales.shape)}")
    if target is not None:
        _check_tensor("target", target, peaks)
        _check_points("target", target, S, x.shape[-1])
    _check_sign(sign)
    return S, D


# ---------------------------------------------------------------------------------------------
# fake kernels (shapes only) for torch.compile / meta tensors


@torch.library.register_fake("compnet_ext::forward")
def _forward_fake(x, peaks, scales, sign, validate):
    S, _ = _check_args(x, peaks, scales, sign)
    return peaks.new_empty(S, x.shape[-1])


@torch.library.register_fake("compnet_ext::backward")
def _backward_fake(grad_y, x, peaks, scales, sign, need_x, need_peaks, need_scales):
    S, D = _check_args(x, peaks, scales, sign)
    gx = x.new_empty(x.shape) if need_x else x.new_empty(0)
    gp = peaks.new_empty(S, D + 1) if need_peaks else peaks.new_empty(0)
    gs = peaks.new_empty(S, D) if (need_scales and scales is not None) else peaks.new_empty(0)
    return gx, gp, gs


@torch.library.register_fake("compnet_ext::loss_and_grad")
def _loss_and_grad_fake(x, target, peaks, scales, sign, validate):
    S, D = _check_args(x, peaks, scales, sign, target)
    gs = peaks.new_empty(S, D) if scales is not None else peaks.new_empty(0)
    return peaks.new_empty(S), peaks.new_empty(S, D + 1), gs


@torch.library.register_fake("compnet_ext::train_peaks")
def _train_peaks_fake(x, target, peaks, scales, sign, epochs, lr, beta1, beta2, eps, peak_min,
                      peak_max, record_every, validate, state=None, step=0):
    S, D = _check_args(x, target=target, peaks=peaks, scales=scales, sign=sign)
    records = -(-epochs // record_every) if record_every > 0 else 0
    P = D + 1 + (D if scales is not None else 0)
    return (peaks.new_empty(S, D + 1), peaks.new_empty(S, D) if scales is not None
            else peaks.new_empty(0), peaks.new_empty(S), peaks.new_empty(S, records),
            peaks.new_empty(S, 2, P))


# ---------------------------------------------------------------------------------------------
# autograd: one fused backward launch computes only the requested gradients. The fused kernels
# have no derivatives of their own, so a backward that must itself be differentiable
# (create_graph=True, which runs it with grad mode on) goes through the plain-PyTorch reference.


def _differentiable_vjp(f, inputs, need, grad_y):
    """Gradients of ``sum(grad_y * f(*inputs))`` w.r.t. the inputs flagged in ``need`` (None for
    the others), as autograd graphs: higher derivatives go through them."""
    wanted = [t for t, n in zip(inputs, need) if n]
    grads = iter(torch.autograd.grad(f(*inputs), wanted, grad_y, create_graph=True))
    return [next(grads) if n else None for n in need]


def _setup_context(ctx, inputs, output):
    x, peaks, scales, sign, _validate = inputs
    ctx.save_for_backward(x, peaks, scales)
    ctx.sign = sign


def _backward(ctx, grad_y):
    x, peaks, scales = ctx.saved_tensors
    need_x, need_peaks, need_scales = ctx.needs_input_grad[:3]
    if torch.is_grad_enabled():
        f = lambda x, peaks, scales: reference.forward(x, peaks, scales, ctx.sign)
        return (*_differentiable_vjp(f, (x, peaks, scales), (need_x, need_peaks, need_scales),
                                     grad_y), None, None)
    gx, gp, gs = _ops.backward(grad_y, x, peaks, scales, ctx.sign, need_x, need_peaks,
                               need_scales and scales is not None)
    return (gx if need_x else None, gp if need_peaks else None,
            gs if need_scales and scales is not None else None, None, None)


torch.library.register_autograd("compnet_ext::forward", _backward, setup_context=_setup_context)


@torch.library.custom_op("compnet_ext::_not_differentiable", mutates_args=())
def _not_differentiable(grads: list[torch.Tensor], shape: Sequence[int], message: str
                        ) -> torch.Tensor:
    """Raises ``message``: the gradient of an op that has none. An op rather than a plain
    ``raise`` in the backward because torch.compile traces the backward ahead of time: the error
    must come when a backward runs, not when a function whose outputs require grad is compiled.
    It takes the incoming gradients so that the compiled graph cannot move it into the forward."""
    raise RuntimeError(message)


@_not_differentiable.register_fake
def _(grads, shape, message):
    return grads[0].new_empty(shape)


def _register_not_differentiable(op, returns, instead):
    """Autograd for ``compnet_ext::op``, whose outputs (``returns``) come from a fused kernel
    without a derivative: differentiating through them raises, with ``instead`` saying what to
    do, rather than torch's default of a warning and silently missing terms."""
    message = (f"compnet_ext::{op} is not differentiable: it returns {returns}, computed by a "
               f"fused kernel that has no derivative. {instead}. To use its results as "
               "constants, call it under torch.no_grad() or on detached tensors.")

    def setup_context(ctx, inputs, output):
        ctx.shapes = [t.shape if isinstance(t, torch.Tensor) else None for t in inputs]

    def backward(ctx, *grads):
        grads = [g for g in grads if g is not None]
        return tuple(_not_differentiable(grads, shape, message) if need else None
                     for shape, need in zip(ctx.shapes, ctx.needs_input_grad))

    torch.library.register_autograd(f"compnet_ext::{op}", backward, setup_context=setup_context)


_register_not_differentiable("backward", "gradients", "For higher-order gradients "
                             "differentiate compnet_ext.forward with create_graph=True")
_register_not_differentiable("loss_and_grad", "a loss and its gradients", "For a differentiable "
                             "loss use compnet_ext.forward and a torch loss, e.g. "
                             "((compnet_ext.forward(x, peaks) - target) ** 2).mean(1)")
_register_not_differentiable("train_peaks", "trained parameters", "To differentiate through "
                             "training, unroll it with compnet_ext.forward and an update in "
                             "torch ops")


# ---------------------------------------------------------------------------------------------
# public API


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
        :func:`compnet_ext.reference.forward`, which is then used in its place.
    """
    _check_args(x, peaks, scales, sign)
    return _ops.forward(x, peaks, scales, int(sign), bool(validate))


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
    _check_args(x, peaks, scales, sign, target)
    loss, gp, gs = _ops.loss_and_grad(x, target, peaks, scales, int(sign), bool(validate))
    return loss, gp, (gs if scales is not None else None)


def smooth_scales(peaks, sign=-1, *, validate=True):
    """Smooth scales ``[S, D]`` derived from ``peaks [S, D+1]`` (MATH.md section 3); differentiable."""
    _check_tensor("peaks", peaks)
    if peaks.dim() != 2 or peaks.shape[1] < 2:
        raise ValueError(f"`peaks` must be [S, D+1] with D >= 1, got shape {list(peaks.shape)}")
    _check_sign(sign)
    if validate:
        check_peak_values(peaks)
    return reference.smooth_scales(peaks, sign)


def train_peaks(x, target, peaks, scales=None, sign=-1, *, epochs, lr=1e-2, betas=(0.9, 0.999),
                eps=1e-8, peak_bounds=(1e-4, 1 - 1e-4), record_every=0, validate=True):
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
            valid (:func:`min_peak`).
        record_every: record the loss before every k-th step (0: no curve).

    Returns:
        ``(peaks [S, D+1], scales [S, D] or None, loss [S], curve [S, ceil(epochs / k)])``:
        the trained parameters, the loss at the trained parameters, the recorded losses.
    """
    _check_args(x, peaks, scales, sign, target)
    lr, beta1, beta2, eps = _check_adam(epochs, lr, betas, eps, record_every)
    lo, hi = _check_peak_bounds(peak_bounds)
    if lo < min_peak(peaks.dtype):
        raise ValueError(f"`peak_bounds` lo must be at least min_peak({peaks.dtype}) = "
                         f"{min_peak(peaks.dtype):.3g} (smaller peaks overflow 1/a^2), got {lo!r}")

    def launch(params, state, n, step):
        p, s = params
        p, s, loss, curve, state = _ops.train_peaks(
            x, target, p, s, int(sign), n, lr, beta1, beta2, eps, lo, hi, record_every,
            bool(validate) and step == 0, state, step)
        return (p, s if scales is not None else None), loss, curve, state

    cost = peaks.shape[0] * x.shape[-1] * peaks.shape[1]
    (p, s), loss, curve, _ = run_in_chunks(launch, (peaks, scales), epochs, record_every, cost,
                                           peaks.device)
    return p, s, loss, curve
