"""Non-convex 1-D functions on any interval: a difference of two compositional networks
(MATH.md section 7).

On a domain ``[lo, hi]``, with ``u = (x - lo) / (hi - lo)``:

    y(x) = c[0] * (F1(u) - u) + c[1] * (F2(u) - u) + c[2] * u + c[3]

F1 is a compositional network of sign -1 (its wave sum is convex), F2 one of sign +1 (concave);
``c = (c_convex, c_concave, slope, offset)`` are four free coefficients per function. Both
halves are evaluated as rows of ONE fused launch: the sign +1 network is the sign -1 network of
the reflected input with its first peak reflected,

    F2(u; a_0, a_1, ...) = 1 - F1(1 - u; 1 - a_0, a_1, ...)

because T_a(1 - u) = T_{1-a}(u) and the smooth scale s_0 = (1 - a_0) a_1 of sign +1 is the
s_0 = a'_0 a_1 of sign -1 with a'_0 = 1 - a_0 (free scales pass through unchanged). So a batch of S
functions is the op's ``forward`` on 2S rows: row 2k is F1 of function k at u, row 2k+1 the
reflected F2 at 1 - u. The parameters stay in the natural form (both halves' peaks as
:func:`compnet_ext.forward` takes them with their own sign), so :func:`encode` and the tests can
use the ordinary encoding of each half.

Shapes: ``peaks [S, 2, D+1]`` (half 0 convex, half 1 concave), ``scales [S, 2, D]`` or None
(smooth), ``coef [S, 4]``; ``x [N]`` or ``[S, N]``, inside ``domain``.
"""

import torch

from . import reference
from .checks import check_domain, check_peak_values, check_points, check_tensor
from .network import encode as encode_half
from .ops import forward as op_forward

SIGNS = (-1, 1)
"""The signs of the two halves: half 0 is convex (sign -1), half 1 concave (sign +1)."""

PAIR_WIDTH = 9
"""Hidden width of the encoded pair (:func:`encode`): 4 + 4 neurons of the halves and u."""


def to_unit(x, domain):
    """The affine map of ``domain`` onto [0, 1]: ``u = (x - lo) / (hi - lo)``."""
    lo, hi = check_domain(domain, x.dtype)
    return (x - lo) / (hi - lo)


def check_pair(peaks, coef, scales=None):
    """Shapes, dtypes and devices of one batch of pairs; returns ``(S, D)``."""
    check_tensor("peaks", peaks)
    if peaks.dim() != 3 or peaks.shape[1] != 2 or peaks.shape[2] < 2:
        raise ValueError(f"`peaks` must be [S, 2, D+1] with D >= 1 (half 0 convex, half 1 "
                         f"concave), got shape {list(peaks.shape)}")
    S, _, D1 = peaks.shape
    check_tensor("coef", coef, peaks)
    if tuple(coef.shape) != (S, 4):
        raise ValueError(f"`coef` must be [S, 4] = [{S}, 4] (c_convex, c_concave, slope, "
                         f"offset), got {list(coef.shape)}")
    if scales is not None:
        check_tensor("scales", scales, peaks)
        if tuple(scales.shape) != (S, 2, D1 - 1):
            raise ValueError(f"`scales` must be [S, 2, D] = [{S}, 2, {D1 - 1}], got "
                             f"{list(scales.shape)}")
    return S, D1 - 1


def check_pair_values(peaks, coef, scales=None):
    """Value check of a batch of pairs (one device sync): peaks valid
    (:func:`~compnet_ext.checks.check_peak_values`), coefficients and scales finite."""
    check_peak_values(peaks)
    for name, t in (("coef", coef), ("scales", scales)):
        if t is not None and not bool(t.isfinite().all()):
            raise ValueError(f"`{name}` contains NaN or Inf")


def op_rows(peaks, scales=None):
    """The op's rows ``[2S, D+1]`` (and ``[2S, D]`` scales) of a batch of pairs: half 1's first
    peak reflected (module docstring). Differentiable."""
    reflected = torch.cat([1 - peaks[:, 1, :1], peaks[:, 1, 1:]], dim=1)
    rows = torch.stack([peaks[:, 0], reflected], dim=1).reshape(-1, peaks.shape[2])
    srows = None if scales is None else scales.reshape(-1, scales.shape[2])
    return rows, srows


def _combine(f1, f2, u, coef):
    c = coef.unsqueeze(-1)
    return c[:, 0] * (f1 - u) + c[:, 1] * (f2 - u) + c[:, 2] * u + c[:, 3]


def forward(x, peaks, coef, scales=None, *, domain=(0.0, 1.0), validate=True):
    """``y [S, N]`` of S difference-of-convex functions (module docstring) at ``x [N]`` or
    ``[S, N]`` in ``domain``: one fused launch of :func:`compnet_ext.forward` on 2S rows.
    Differentiable w.r.t. x, peaks, coef and scales."""
    S, _ = check_pair(peaks, coef, scales)
    lo, hi = check_domain(domain, peaks.dtype)
    check_tensor("x", x, peaks)
    check_points("x", x, S)
    if validate:
        check_pair_values(peaks, coef, scales)
        if x.numel() and not bool(((x >= lo) & (x <= hi)).all()):
            raise ValueError(f"`x` must lie in the domain [{lo:g}, {hi:g}] (NaN is not allowed)")
    N = x.shape[-1]
    u = to_unit(x, domain).expand(S, N)
    rows, srows = op_rows(peaks, scales)
    xu = torch.stack([u, 1 - u], dim=1).reshape(2 * S, N)  # N explicit: S = 0 is fine
    y = op_forward(xu, rows, srows, -1, validate=validate).reshape(S, 2, N)
    return _combine(y[:, 0], 1 - y[:, 1], u, coef)


def reference_forward(x, peaks, coef, scales=None, *, domain=(0.0, 1.0)):
    """The same function in plain PyTorch, each half with its own sign (no reflection): the
    ground truth for the tests."""
    S, _ = check_pair(peaks, coef, scales)
    u = to_unit(x, domain).expand(S, x.shape[-1])
    f = [reference.forward(u, peaks[:, h], None if scales is None else scales[:, h], sign)
         for h, sign in enumerate(SIGNS)]
    return _combine(f[0], f[1], u, coef)


def encode(peaks, coef, scales=None, *, domain=(0.0, 1.0), validate=True):
    """The ReLU network of width :data:`PAIR_WIDTH` (9) that computes :func:`forward` on ``domain``.

    Hidden layers: half 0's four neurons (MATH.md section 5, sign -1), half 1's four (sign +1)
    and one neuron carrying u (>= 0 on the domain, so ReLU passes it); block-diagonal weights.
    The map x -> u is folded into the first layer, the coefficients into the output layer.
    Returns ``[(W [S, out, in], b [S, out]), ...]`` like :func:`compnet_ext.network.encode`.
    """
    S, D = check_pair(peaks, coef, scales)
    lo, hi = check_domain(domain, peaks.dtype)
    if validate:
        check_pair_values(peaks, coef, scales)
    halves = [encode_half(peaks[:, h], None if scales is None else scales[:, h], sign=sign,
                          validate=validate) for h, sign in enumerate(SIGNS)]
    dtype, device = peaks.dtype, peaks.device
    f64 = dict(dtype=torch.float64, device=device)
    c = coef.to(torch.float64)
    layers = []
    for k in range(D + 1):
        (W0, b0), (W1, b1) = [(W.to(torch.float64), b.to(torch.float64)) for W, b in
                              (halves[0][k], halves[1][k])]
        if k == 0:  # x -> (half 0, half 1, u)
            W = torch.cat([W0, W1, torch.ones(S, 1, 1, **f64)], dim=1)
            b = torch.cat([b0, b1, torch.zeros(S, 1, **f64)], dim=1)
            W, b = fold_domain(W, b, (lo, hi))
        elif k < D:
            W = torch.zeros(S, PAIR_WIDTH, PAIR_WIDTH, **f64)
            W[:, :4, :4], W[:, 4:8, 4:8], W[:, 8, 8] = W0, W1, 1.0
            b = torch.cat([b0, b1, torch.zeros(S, 1, **f64)], dim=1)
        else:  # c0 (F1 - u) + c1 (F2 - u) + c2 u + c3
            W = torch.cat([c[:, 0, None, None] * W0, c[:, 1, None, None] * W1,
                           (c[:, 2] - c[:, 0] - c[:, 1])[:, None, None]], dim=2)
            b = c[:, 0, None] * b0 + c[:, 1, None] * b1 + c[:, 3, None]
        layers.append((W.to(dtype), b.to(dtype)))
    return layers


def fold_domain(W, b, domain):
    """A first layer ``(W [S, out, 1], b [S, out])`` on u, as the same layer on x: ``W u + b =
    (W / (hi - lo)) x + (b - W lo / (hi - lo))``, computed in float64, returned in W's dtype."""
    lo, hi = check_domain(domain, W.dtype)
    inv = 1.0 / (hi - lo)
    W64, b64 = W.to(torch.float64), b.to(torch.float64)
    return (W64 * inv).to(W.dtype), (b64 - W64[:, :, 0] * (lo * inv)).to(b.dtype)


def smooth_pair_scales(peaks):
    """Both halves' smooth scales ``[S, 2, D]`` (each with its own sign): the starting free
    scales of a pair whose differentiability is not enforced (the same function as smooth)."""
    return torch.stack([reference.smooth_scales(peaks[:, h], sign)
                        for h, sign in enumerate(SIGNS)], dim=1)


def fit_coef(x, target, peaks, scales=None, *, domain=(0.0, 1.0)):
    """Per-seed least-squares coefficients ``[S, 4]`` of the pair with these peaks (and scales).

    Minimises the MSE over ``c`` of ``c0 (F1 - u) + c1 (F2 - u) + c2 u + c3`` against ``target``
    (``[N]`` or ``[S, N]``) at ``x [N]``: a linear least-squares problem per seed, solved in
    float64 on the CPU by an SVD (rank-deficient bases get the minimum-norm solution), so the
    result does not depend on the device. Returned in the dtype and on the device of ``peaks``.
    """
    S, _ = check_pair(peaks, peaks.new_zeros(peaks.shape[0], 4), scales)
    check_domain(domain, peaks.dtype)
    check_tensor("x", x, peaks)
    check_points("x", x, S)
    check_tensor("target", target, peaks)
    check_points("target", target, S, x.shape[-1])
    # LAPACK's least squares fails on NaN/Inf with a library message and an internal assert
    check_pair_values(peaks, peaks.new_zeros(0), scales)
    for name, t in (("x", x), ("target", target)):
        if not bool(t.isfinite().all()):
            raise ValueError(f"`{name}` contains NaN or Inf")
    f64 = lambda t: None if t is None else t.detach().to("cpu", torch.float64)
    u = to_unit(f64(x), domain).expand(S, x.shape[-1])
    f = [reference.forward(u, f64(peaks)[:, h], None if scales is None else f64(scales)[:, h],
                           sign) for h, sign in enumerate(SIGNS)]
    basis = torch.stack([f[0] - u, f[1] - u, u, torch.ones_like(u)], dim=-1)  # [S, N, 4]
    rhs = f64(target).expand(S, x.shape[-1]).unsqueeze(-1)
    coef = torch.linalg.lstsq(basis, rhs, driver="gelsd").solution.squeeze(-1)
    return coef.to(peaks.dtype).to(peaks.device)
