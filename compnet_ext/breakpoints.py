"""Exact breakpoints (kinks) and linear pieces of batched 1-D-input ReLU MLPs, found analytically.

Two routes, both float64:

* any MLP (:class:`compnet_ext.nn.BatchedMLP` or a list of ``(W, b)``): activation-pattern
  walking, layer by layer. On each current piece every neuron's pre-activation is affine,
  ``z = A x + B``; its root ``-B / A`` splits the piece if it lies strictly inside; the ReLU pattern
  of each new piece is read at its midpoint. Roots within a few ulps of an existing knot are
  dropped (a neuron touching 0 at a knot, e.g. ``relu(W_k)`` where ``W_k = 0``, adds no kink).
* the compositional network (``peaks=``, ``scales=``, ``sign=``): its kinks are the points where
  some wave hits the next peak, ``W_{j-1}(x) = a_j``; they are computed by pulling the levels back
  through the triangles' two inverse branches (2^D - 1 interior kinks), and each piece's slope is
  the network's exact derivative at the piece's midpoint.

Pieces whose slopes agree are merged: the kink at t counts only if
``|slope_right - slope_left| > rtol * max(|slope_left|, |slope_right|)`` (default ``rtol = 1e-9``;
genuine kinks of the networks here change the slope by far more, rounding by far less). So a
constant (dead) network has one piece.
"""
from typing import NamedTuple

import torch

F64 = torch.float64


class CountLimitError(RuntimeError):
    """Exact piece counting would exceed its memory limit."""


class Pieces(NamedTuple):
    """Piecewise-linear structure of one seed on [lo, hi] (float64)."""

    kinks: torch.Tensor   # [K] sorted interior kink locations
    slopes: torch.Tensor  # [K + 1] slope of each linear piece, left to right

    @property
    def delta_slopes(self):
        """[K] slope change at each kink (the breakpoints paper's delta-slope view)."""
        return self.slopes[1:] - self.slopes[:-1]

    @property
    def count(self):
        return int(self.slopes.numel())


def _check_interval(lo, hi, within=None):
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"`{name}` must be a float, got {type(v).__name__}")
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"`{name}` must be finite, got {v}")
    if not lo < hi:
        raise ValueError(f"`lo` must be < `hi`, got lo={lo}, hi={hi}")
    if within is not None and not (within[0] <= lo and hi <= within[1]):
        raise ValueError(f"[`lo`, `hi`] = [{lo}, {hi}] must lie in [{within[0]}, {within[1]}] "
                         "(the compositional network's domain)")
    return float(lo), float(hi)


def _merge(knots, slopes, rtol, wtol=0.0):
    """Drops interior knots where the slope does not change; knots includes lo and hi.

    Pieces no wider than ``wtol`` are dropped first (their two knots become one, at the middle):
    a root computed on a steep piece can land a few ulps of its slope away from the same kink
    found through another neuron, and the sliver between them is rounding, not a piece.
    """
    if wtol > 0 and slopes.numel() > 1:
        wide = (knots[1:] - knots[:-1]) > wtol
        if wide.any() and not wide.all():
            idx = torch.nonzero(wide).flatten()
            inner = 0.5 * (knots[idx[:-1] + 1] + knots[idx[1:]])
            knots = torch.cat([knots[:1], inner, knots[-1:]])
            slopes = slopes[idx]
    if slopes.numel() > 1:
        d = (slopes[1:] - slopes[:-1]).abs()
        big = torch.maximum(slopes[1:].abs(), slopes[:-1].abs())
        keep = d > rtol * big
        slopes = torch.cat([slopes[:1], slopes[1:][keep]])
        knots = knots[1:-1][keep]
    else:
        knots = knots[1:-1]
    return Pieces(knots, slopes)


def _walk_seed(layers, lo, hi, rtol, wtol):
    """One seed: layers = [(W [out, in], b [out])] in float64."""
    knots = torch.tensor([lo, hi], dtype=F64)
    A = torch.ones(1, 1, dtype=F64)   # input x = 1 * x + 0 on every piece
    B = torch.zeros(1, 1, dtype=F64)
    last = len(layers) - 1
    snap = 8 * torch.finfo(F64).eps * max(abs(lo), abs(hi), 1.0)
    for l, (W, b) in enumerate(layers):
        Az = A @ W.T          # [pieces, out]
        Bz = B @ W.T + b
        if l == last:
            return _merge(knots, Az[:, 0], rtol, wtol)
        left, right = knots[:-1, None], knots[1:, None]
        nz = Az != 0
        r = torch.where(nz, -Bz / torch.where(nz, Az, torch.ones_like(Az)), left)
        inside = nz & (r > left + snap) & (r < right - snap)
        if inside.any():
            old = knots
            knots = torch.unique(torch.cat([knots, r[inside]]))  # sorted
            mids = 0.5 * (knots[:-1] + knots[1:])
            idx = (torch.searchsorted(old, mids, right=True) - 1).clamp(0, Az.shape[0] - 1)
            Az, Bz = Az[idx], Bz[idx]  # each new piece inherits its parent piece's affine forms
        mids = 0.5 * (knots[:-1] + knots[1:])
        on = (Az * mids[:, None] + Bz) > 0
        A = torch.where(on, Az, torch.zeros_like(Az))
        B = torch.where(on, Bz, torch.zeros_like(Bz))
    raise AssertionError("unreachable")


def _compositional_kinks(a, lo, hi):
    """Interior kinks on (lo, hi) of one seed's waves W_0..W_{D-1}: a = peaks [D+1] float64."""
    D = a.numel() - 1
    pts = []
    for j in range(D):  # kinks of W_j beyond those of W_{j-1}: W_{j-1}(x) = a_j
        v = a[j : j + 1]
        for i in range(j - 1, -1, -1):  # pull back through T_{a_i}: u = a_i v or 1 - (1 - a_i) v
            v = torch.cat([a[i] * v, 1 - (1 - a[i]) * v])
        pts.append(v)
    k = torch.sort(torch.cat(pts)).values
    return k[(k > lo) & (k < hi)]


def _layers_of(mlp):
    from .nn import BatchedMLP, _check_layers

    if isinstance(mlp, BatchedMLP):
        return [(W.detach(), b.detach()) for W, b in mlp.layers()]
    _check_layers(mlp)
    return [(W.detach(), b.detach()) for W, b in mlp]


def breakpoints(mlp=None, lo=0.0, hi=1.0, *, peaks=None, scales=None, sign=-1, rtol=1e-9,
                wtol=1e-12):
    """Exact kinks and piece slopes of S batched 1-D ReLU networks on ``[lo, hi]``.

    Args:
        mlp: a :class:`compnet_ext.nn.BatchedMLP` or a list of ``(W [S, out, in], b [S, out])``;
            or None together with ``peaks`` (and ``scales``, ``sign``) for the compositional
            network of :func:`compnet_ext.forward` (kinks computed in closed form; then
            ``0 <= lo < hi <= 1``).
        lo, hi: the interval.
        rtol: relative slope-change tolerance below which adjacent pieces are merged.
        wtol: for ``mlp``: pieces no wider than ``wtol * (hi - lo)`` are rounding slivers
            between two roots of one kink and are merged away (the compositional networks'
            narrowest genuine pieces, e.g. 0.3^20 = 3.5e-11 at D = 20, are far wider).

    Returns:
        A list of S :class:`Pieces` ``(kinks [K], slopes [K+1])``, float64 on the CPU.
    """
    if not isinstance(rtol, (int, float)) or isinstance(rtol, bool) or not rtol >= 0:
        raise ValueError(f"`rtol` must be a non-negative float, got {rtol!r}")
    if (mlp is None) == (peaks is None):
        raise TypeError("pass either `mlp` or `peaks=` (with optional `scales=`, `sign=`)")
    if mlp is not None:
        lo, hi = _check_interval(lo, hi)
        layers = [(W.to("cpu", F64), b.to("cpu", F64)) for W, b in _layers_of(mlp)]
        S = layers[0][0].shape[0]
        if not isinstance(wtol, (int, float)) or isinstance(wtol, bool) or not wtol >= 0:
            raise ValueError(f"`wtol` must be a non-negative float, got {wtol!r}")
        w = wtol * (hi - lo)
        return [_walk_seed([(W[i], b[i]) for W, b in layers], lo, hi, rtol, w) for i in range(S)]
    from .ops import _check_args

    lo, hi = _check_interval(lo, hi, within=(0.0, 1.0))
    x0 = torch.zeros(1, dtype=peaks.dtype, device=peaks.device)
    S, D = _check_args(x0, peaks, scales, sign)
    if not bool(((peaks > 0) & (peaks < 1)).all()):
        raise ValueError("`peaks` must lie in the open interval (0, 1) (and not be NaN)")
    from .ops import forward

    a = peaks.detach().to("cpu", F64)
    s = None if scales is None else scales.detach().to("cpu", F64)
    out = []
    for i in range(S):
        k = _compositional_kinks(a[i], lo, hi)
        knots = torch.cat([torch.tensor([lo], dtype=F64), k, torch.tensor([hi], dtype=F64)])
        mids = (0.5 * (knots[:-1] + knots[1:]))[None].requires_grad_(True)
        with torch.enable_grad():
            y = forward(mids, a[i : i + 1], None if s is None else s[i : i + 1], sign)
            slopes, = torch.autograd.grad(y.sum(), mids)
        out.append(_merge(knots, slopes[0], rtol))
    return out


def count_pieces(mlp=None, lo=0.0, hi=1.0, *, peaks=None, scales=None, sign=-1, rtol=1e-9,
                 wtol=1e-12):
    """Number of linear pieces per seed, ``int64 [S]``; arguments as :func:`breakpoints`."""
    p = breakpoints(mlp, lo, hi, peaks=peaks, scales=scales, sign=sign, rtol=rtol, wtol=wtol)
    return torch.tensor([q.count for q in p], dtype=torch.int64)
