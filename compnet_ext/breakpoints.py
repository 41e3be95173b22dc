"""Exact breakpoints (kinks) and linear pieces of batched 1-D-input ReLU MLPs, found analytically.

Two routes, both float64.

**The compositional network** (``peaks=``, ``scales=``, ``sign=``), in closed form. Its kinks are
the points where a wave hits the next peak, ``W_{j-1}(x) = a_j``: the 2^j kinks of level j, one on
each of the 2^j pieces of ``W_{j-1}`` (which runs linearly from 0 to 1 or from 1 to 0 on each, so
the kink is found by interpolation). At a level-j kink ``W_j`` peaks, ``W_{j+1}`` has a valley
and every later wave follows it with slope factor ``1/a``, so the slope of ``y`` changes by

    sign * |W_{j-1}'| / (a_j (1 - a_j)) * C_j,   C_j = Q_{j+1} / (1 - a_{j+1}) - s_j,
    Q_D = 0,   Q_i = s_i + Q_{i+1} / a_{i+1}:

a level's kinks are all kinks (C_j != 0) or none. Smooth scales telescope to
``C_j = -s_j * prod_{m=j+2..D} (1 - a_m) != 0`` (every level: 2^D pieces on [0, 1]); for free
scales, ``C_j != 0`` is decided exactly, in rational arithmetic on the float64 values. No
tolerance. :func:`count_pieces` does not build the kinks: it counts those below ``lo`` and ``hi``
by descending through the nested pieces that contain the point, O(D) a level.

**Any MLP** (:class:`compnet_ext.nn.BatchedMLP` or a list of ``(W, b)``): activation-pattern
walking, layer by layer. On each current piece every neuron's pre-activation is affine,
``z = A x + B``; its root ``-B / A`` splits the piece if it lies inside; the ReLU pattern of each
new piece is read at its midpoint. Floating point places a root only to within its rounding, so
the two roots of one kink (a neuron touching 0 at an existing knot, two neurons sharing a root)
land up to thousands of ulps apart on trained free-scale networks and leave a sliver between
them. What separates a sliver from a real piece is each root's own rounding bound:

* every root gets a radius: a first-order bound (terms in u^2 dropped) on how far it moves
  when every rounding that produced its ``A`` and ``B``, and every weight's last float64 bit,
  is perturbed by the unit roundoff u = 2^-53: gamma_{n+2} a layer of fan-in n (the n products
  and their sum, the bias, the weight). The layers' errors are carried to the root with the
  *signed* sensitivity ``dz/dz_k`` on the piece's activation pattern (a backward sweep), then
  divided by ``|A|``; so a neuron that is 0 on a whole piece up to rounding gets a radius
  spanning the piece, not a spurious root. (A bound carried with ``|W|`` is valid too but
  useless here: the encoded compositional network cancels in every layer,
  ``t1/a - t2/(a(1-a))``, so such a bound grows like ((2-a)/a)^D; it swallowed 0.6% of the
  real pieces at D = 20);
* a root whose radius overlaps that of a knot of its piece (``lo`` and ``hi``: radius 0), or
  that of another new root, is the same kink;
* a knot is a kink only if the slope changes by more than the two slopes' bounds (same sweep).

So two roots closer than their own rounding are one kink, and a piece wider than that counts,
whatever the interval ``[lo, hi]``. What this cannot see are real pieces narrower than the
rounding of their kinks: the float64 weights :func:`compnet_ext.encode` returns have sub-ulp
dips at some valleys (weights whose exact pieces number 37, not 32, in one D = 5 case), which
are the rounding of the weights, not pieces of the network they encode.

**Limits.** :func:`count_pieces` in closed form needs no memory and no time to speak of; its
int64 result caps it at 2^63 - 1 pieces (D <= 62). Everything else raises
:class:`CountLimitError` once it would walk or return more than ``max_pieces`` pieces, summed
over the seeds. The walk covers ``[lo, hi]`` in chunks, depth first and left to right, keeping
only the chunk at hand, sized to stay under ``WALK_BYTES`` (:func:`_chunk_pieces`); so memory
grows with the count only in what :func:`breakpoints` returns and builds (kinks, midpoints and
slopes a piece), and time with the count and the depth. ``MAX_PIECES`` bounds both; the
measured memory and time at that limit are in docs/training.md ("Outputs of compnet sweep").
"""
import math
from fractions import Fraction
from typing import NamedTuple

import torch

from .batched_mlp import BatchedMLP
from .checks import check_int, check_interval, check_layers, check_network
from .ops import forward

F64 = torch.float64
U = 2.0 ** -53  # unit roundoff of float64
MAX_PIECES = 2 ** 22
"""Default ``max_pieces`` (module docstring, 'Limits')."""
WALK_BYTES = 128 * 2 ** 20
"""Working-set budget of one chunk of the activation walk (see :func:`_chunk_pieces`)."""


class CountLimitError(RuntimeError):
    """More pieces than ``max_pieces`` (or than an int64 holds) were asked for."""


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


def _limit_error(what, max_pieces):
    return CountLimitError(
        f"{what} more than max_pieces = {max_pieces} pieces (summed over the seeds). The limit "
        "bounds memory and time: breakpoints() holds every piece, and the walk's time grows with "
        "the count. Pass a larger `max_pieces=` if the machine has the room, "
        "or count the compositional network in closed form, count_pieces(peaks=...), which "
        "has no such limit")


# ---------------------------------------------------------------------------------------------
# arguments


def _walk_layers(mlp):
    """The layers as float64 CPU tensors, checked for NaN/Inf (named as the caller passed them)."""
    if isinstance(mlp, BatchedMLP):
        pairs = mlp.layers()
        names = [(f"mlp.weights[{l}]", f"mlp.biases[{l}]") for l in range(len(pairs))]
    else:
        check_layers(mlp)
        pairs = mlp
        names = [(f"layers[{l}][0]", f"layers[{l}][1]") for l in range(len(pairs))]
    out = []
    for pair, pair_names in zip(pairs, names):
        for t, name in zip(pair, pair_names):
            if not bool(torch.isfinite(t.detach()).all()):
                raise ValueError(f"`{name}` contains NaN or Inf")
        out.append(tuple(t.detach().to("cpu", F64) for t in pair))
    return out


def _compositional(peaks, scales, sign):
    """Checked peaks and scales as float64 CPU tensors: ``(S, a, s)``."""
    S, _ = check_network(peaks, scales, sign)
    a = peaks.detach().to("cpu", F64)
    s = None if scales is None else scales.detach().to("cpu", F64)
    return S, a, s


# ---------------------------------------------------------------------------------------------
# closed form (the compositional network)


def _levels_that_kink(a, s):
    """[D] bools: does the slope change at the level-j kinks, i.e. C_j != 0 (module docstring)?

    a: peaks [D+1], s: free scales [D] or None (float64). Decided exactly with fractions."""
    D = a.numel() - 1
    if s is None:  # C_j = -s_j prod (1 - a_m), never 0
        return [True] * D
    a = [Fraction(v) for v in a.tolist()]
    s = [Fraction(v) for v in s.tolist()]
    out, q = [False] * D, Fraction(0)  # q = Q_{j+1}
    for j in range(D - 1, -1, -1):
        out[j] = q / (1 - a[j + 1]) != s[j]
        q = s[j] + q / a[j + 1]
    return out


def _kinks_below(a, t, inclusive):
    """Per level j < D: the number of level-j kinks x < t (x <= t if inclusive), t in [0, 1].

    Descends through the pieces of W_{-1}, W_0, ... that contain t; piece i of each wave rises if
    i is even. The kink arithmetic is that of :func:`_compositional_kinks`, so the two agree;
    all kinks lie inside (0, 1), also those closer to 0 or 1 than float64 can tell (D > ~50)."""
    a = a.tolist()
    if t <= 0 or t >= 1:
        return [0 if t <= 0 else 2**j for j in range(len(a) - 1)]
    xl, xr, i, out = 0.0, 1.0, 0, []
    for j in range(len(a) - 1):
        d = xr - xl
        k = xl + a[j] * d if i % 2 == 0 else xr - a[j] * d
        out.append(i + (k <= t if inclusive else k < t))  # i whole pieces to the left, then this
        xl, xr, i = (xl, k, 2 * i) if t < k else (k, xr, 2 * i + 1)
    return out


def _closed_levels(a, s, lo, hi):
    """One seed: (does level j kink, number of level-j kinks in (lo, hi)) for j < D."""
    above, below = _kinks_below(a, hi, False), _kinks_below(a, lo, True)
    return _levels_that_kink(a, s), [h - l for h, l in zip(above, below)]


def _compositional_kinks(a, kink, lo, hi):
    """Sorted kinks in (lo, hi) of the levels that kink: the knots of W_0, W_1, ... built level by
    level, keeping only the pieces that meet (lo, hi), so the work is bounded by what lies there
    (written in place: the last level dominates the memory, 9 bytes a knot)."""
    xs = torch.tensor([0.0, 1.0], dtype=F64)  # the knots of W_{j-1} around (lo, hi)
    tag = torch.zeros(2, dtype=torch.bool)    # which of them are kinks of y
    first = 0                                 # index of the first piece (even: W rises on it)
    for j in range(max((j + 1 for j, k in enumerate(kink) if k), default=0)):
        n = xs.numel() - 1
        rising = torch.zeros(n, dtype=torch.bool)
        rising[first % 2 :: 2] = True
        new, new_tag = torch.empty(2 * n + 1, dtype=F64), torch.empty(2 * n + 1, dtype=torch.bool)
        new[0::2], new_tag[0::2] = xs, tag
        d = xs[1:] - xs[:-1]
        new[1::2] = torch.where(rising, xs[:-1] + a[j] * d, xs[1:] - a[j] * d)
        new_tag[1::2] = kink[j]
        del d, rising
        # the pieces i0..i1 meet (lo, hi)
        i0 = max(int(torch.searchsorted(new, lo, right=True)) - 1, 0)
        i1 = int(torch.searchsorted(new, hi)) - 1
        xs, tag, first = new[i0 : i1 + 2], new_tag[i0 : i1 + 2], 2 * first + i0
    return xs[tag & (xs > lo) & (xs < hi)]


# ---------------------------------------------------------------------------------------------
# activation walk (any MLP)


def _gamma(n):
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of n roundings."""
    return n * U / (1 - n * U)


def _chunk_pieces(layers):
    """Most pieces one chunk of the walk may carry into a layer, so that it stays in WALK_BYTES.

    Bytes a piece, with n the widest layer and L layers (float64 and int64 tensors): the history
    for the backward sweeps, L * (8 + 24 n) (parent, and ReLU mask and two error bounds a
    neuron); a layer's state once it has split each piece in up to n + 1, (n + 1) * (24 + 88 n)
    (knots, radii, A, B, Az, Bz, eA, eB, |A| and their temporaries); and the sweeps of up to n
    roots a piece, n * 64 n. An over-estimate of what the walk holds."""
    n = max(W.shape[0] for W, _ in layers)
    L = len(layers)
    per_piece = L * (8 + 24 * n) + (n + 1) * (24 + 88 * n) + 64 * n * n
    return max(WALK_BYTES // per_piece, 1)  # P > 1 pieces always split into >= 2 parts


def _sweep(layers, hist, v, q):
    """First-order error of targets at layer l = len(hist) from the rounding of layers < l.

    v: [C, n_l] each target's dependence on z_l; q: its piece in the partition layer l reads.
    Returns [C, 2]: sum_k |v_k| . (eA_k, eB_k), v_k = (v_{k+1} W_{k+1}) * mask_k the signed
    sensitivity to z_k; the error at x is [:, 0] |x| + [:, 1]."""
    err = v.new_zeros(v.shape[0], 2)
    for k in range(len(hist) - 1, -1, -1):
        parent, h = hist[k]  # h [P_k, 3, n_k]: ReLU mask, eA, eB of each piece of layer k
        g = h.index_select(0, q)
        v = (v @ layers[k + 1][0]) * g[:, 0]
        err += torch.bmm(g[:, 1:], v.abs().unsqueeze(2)).squeeze(2)
        q = parent.index_select(0, q)
    return err


def _new_knots(knots, rad, p, x, rho):
    """Adds roots x (radius rho, inside piece p) to the knots (radius rad): a root overlapping a
    knot of its piece is that knot; overlapping roots are one, placed at the best-bounded."""
    apart = (x - knots[p] > rho + rad[p]) & (knots[p + 1] - x > rho + rad[p + 1])
    x, order = torch.sort(x[apart])
    rho = rho[apart][order]
    start = torch.ones(x.numel(), dtype=torch.bool)
    start[1:] = (x[1:] - x[:-1]) > (rho[1:] + rho[:-1])  # neighbours across a knot never overlap
    cid = torch.cumsum(start, 0) - 1
    best = torch.full((int(start.sum()),), math.inf, dtype=F64).scatter_reduce(
        0, cid, rho, "amin")
    cand = rho == best[cid]
    seen = torch.cumsum(cand, 0)
    first = cand & (seen - (seen - cand.long())[start][cid] == 1)  # the first best of a cluster
    knots, order = torch.sort(torch.cat([knots, x[first]]))
    return knots, torch.cat([rad, rho[first]])[order]


def _walk_interval(layers, lo, hi, rlo, rhi, chunk):
    """One seed on [lo, hi] (whose ends have radii rlo, rhi).

    Returns (knots [P+1] with the ends, slopes [P], is-a-kink [P-1], slope bounds [P]: at least
    of the first and last piece), or, once a layer would walk more than `chunk` pieces, the knots
    (and their radii) to split [lo, hi] at: as many parts as the growth so far says are needed."""
    knots = torch.tensor([lo, hi], dtype=F64)
    rad = torch.tensor([rlo, rhi], dtype=F64)
    A, B = torch.ones(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64)  # x = 1 x + 0
    Aa, G = A, 0.0  # |W|-propagated |A| and the summed gammas: a cheap bound on the slope error
    hist = []  # per layer k: (parent piece in layer k-1, [P_k, 3, n_k] ReLU mask, eA, eB)
    for l, (W, b) in enumerate(layers):
        P = knots.numel() - 1
        if P > chunk:
            grow = P / hist[-2][0].numel() if len(hist) > 1 else P
            parts = min(P, math.ceil(P * grow ** (len(layers) - 1 - l) / chunk))
            at = torch.unique(torch.linspace(0, P, parts + 1, dtype=F64).round().long()[1:-1])
            return knots[at], rad[at]
        Az, Bz = A @ W.T, B @ W.T + b
        g = _gamma(W.shape[1] + 2)
        G += g
        eA, eB = g * (A.abs() @ W.abs().T), g * (B.abs() @ W.abs().T + b.abs())
        Aa = Aa @ W.abs().T
        if not bool(torch.isfinite(eA).all() and torch.isfinite(eB).all()):
            raise ValueError(f"`mlp`: the walk's affine forms overflow float64 at layer {l}")
        if l == len(layers) - 1:
            s = Az[:, 0]
            d = (s[1:] - s[:-1]).abs()
            unsure = d <= G * (Aa[1:, 0] + Aa[:-1, 0])  # else a kink whatever the sweep says
            need = torch.zeros(P, dtype=torch.bool)
            need[:-1] |= unsure
            need[1:] |= unsure
            need[[0, -1]] = True  # the ends meet the neighbouring chunks
            q = torch.nonzero(need).flatten()
            es = torch.full((P,), math.nan, dtype=F64)
            es[q] = eA[q, 0] + _sweep(layers, hist, torch.ones(q.numel(), 1, dtype=F64), q)[:, 0]
            return knots, s, ~unsure | (d > es[1:] + es[:-1]), es
        nz = Az != 0
        r = -Bz / torch.where(nz, Az, torch.ones_like(Az))
        p, o = torch.nonzero(nz & (r > knots[:-1, None]) & (r < knots[1:, None]), as_tuple=True)
        parent = torch.arange(P)
        if p.numel():
            x, a = r[p, o], Az[p, o].abs()
            # this layer's own rounding (and the division's) is a lower bound of the radius: a
            # root that overlaps a knot with it already needs no sweep
            rho = (eA[p, o] * x.abs() + eB[p, o]) / a + U * x.abs()
            near = (x - knots[p] <= rho + rad[p]) | (knots[p + 1] - x <= rho + rad[p + 1])
            p, o, x, a, rho = p[~near], o[~near], x[~near], a[~near], rho[~near]
            onehot = torch.nn.functional.one_hot(o, W.shape[0]).to(F64)
            e = _sweep(layers, hist, onehot, p)
            rho = rho + (e[:, 0] * x.abs() + e[:, 1]) / a
            old = knots
            knots, rad = _new_knots(knots, rad, p, x, rho)
            if knots.numel() > old.numel():
                mids = 0.5 * (knots[:-1] + knots[1:])
                parent = torch.searchsorted(old, mids, right=True) - 1
                Az, Bz, eA, eB, Aa = Az[parent], Bz[parent], eA[parent], eB[parent], Aa[parent]
        mids = 0.5 * (knots[:-1] + knots[1:])
        on = (Az * mids[:, None] + Bz) > 0
        hist.append((parent, torch.stack([on.to(F64), eA, eB], 1)))
        zero = torch.zeros_like(Az)
        A, B, Aa = torch.where(on, Az, zero), torch.where(on, Bz, zero), torch.where(on, Aa, zero)
    raise AssertionError("unreachable")


def _walk_seed(layers, lo, hi, used, max_pieces, keep):
    """Pieces of one seed, walked chunk by chunk (depth first, left to right). Returns
    (count, Pieces or None); raises CountLimitError once used + count > max_pieces."""
    chunk = _chunk_pieces(layers)
    todo = [(lo, hi, 0.0, 0.0)]
    count, kinks, slopes, last = 1, [], [], None  # last: previous chunk's last (slope, bound)
    while todo:
        a, b, ra, rb = todo.pop()
        res = _walk_interval(layers, a, b, ra, rb, chunk)
        if len(res) == 2:  # split at these knots (with their radii); leftmost part on top
            at = [a] + res[0].tolist() + [b]
            r = [ra] + res[1].tolist() + [rb]
            todo += [(at[i], at[i + 1], r[i], r[i + 1]) for i in range(len(at) - 2, -1, -1)]
            continue
        k, s, kink, e = res
        if last is None:
            slopes.append(s[:1])
        elif (s[0] - last[0]).abs() > e[0] + last[1]:  # the kink where the chunks meet
            count += 1
            if keep:
                kinks.append(k[:1])
                slopes.append(s[:1])
        count += int(kink.sum())
        if used + count > max_pieces:
            raise _limit_error("The activation walk found", max_pieces)
        if keep:
            kinks.append(k[1:-1][kink])
            slopes.append(s[1:][kink])
        last = (s[-1], e[-1])
    return count, (Pieces(torch.cat(kinks), torch.cat(slopes)) if keep else None)


# ---------------------------------------------------------------------------------------------
# public


def breakpoints(mlp=None, lo=0.0, hi=1.0, *, peaks=None, scales=None, sign=-1,
                max_pieces=MAX_PIECES):
    """Exact kinks and piece slopes of S batched 1-D ReLU networks on ``[lo, hi]``.

    Args:
        mlp: a :class:`compnet_ext.nn.BatchedMLP` or a list of ``(W [S, out, in], b [S, out])``
            (activation walk); or None together with ``peaks`` (and ``scales``, ``sign``) for the
            compositional network of :func:`compnet_ext.forward` (kinks in closed form; then
            ``0 <= lo < hi <= 1``).
        lo, hi: the interval.
        max_pieces: the most pieces returned over all seeds together (see the module docstring,
            'Limits'); beyond it :class:`CountLimitError`.

    Returns:
        A list of S :class:`Pieces` ``(kinks [K], slopes [K+1])``, float64 on the CPU. What
        counts as a kink (and what as rounding) is in the module docstring.
    """
    return _pieces(mlp, lo, hi, peaks, scales, sign, max_pieces, keep=True)


def count_pieces(mlp=None, lo=0.0, hi=1.0, *, peaks=None, scales=None, sign=-1,
                 max_pieces=MAX_PIECES):
    """Number of linear pieces per seed, ``int64 [S]``; arguments as :func:`breakpoints`.

    With ``peaks=`` the count is in closed form, without building the kinks: no limit (beyond
    int64). With ``mlp`` the walk counts without keeping the pieces, but its time grows with the
    count, so ``max_pieces`` (over all seeds) applies."""
    return _pieces(mlp, lo, hi, peaks, scales, sign, max_pieces, keep=False)


def _pieces(mlp, lo, hi, peaks, scales, sign, max_pieces, keep):
    if (mlp is None) == (peaks is None):
        raise TypeError("pass either `mlp` or `peaks=` (with optional `scales=`, `sign=`)")
    check_int("max_pieces", max_pieces, 1, wrong_type=ValueError)
    if mlp is not None:
        lo, hi = check_interval(lo, hi)
        layers = _walk_layers(mlp)
        counts, out = [], []
        for i in range(layers[0][0].shape[0]):
            n, p = _walk_seed([(W[i], b[i]) for W, b in layers], lo, hi, sum(counts),
                              max_pieces, keep)
            counts.append(n)
            out.append(p)
        return out if keep else torch.tensor(counts, dtype=torch.int64)

    lo, hi = check_interval(lo, hi, within=(0.0, 1.0))
    S, a, s = _compositional(peaks, scales, sign)
    levels = [_closed_levels(a[i], None if s is None else s[i], lo, hi) for i in range(S)]
    counts = [1 + sum(n for k, n in zip(kink, ns) if k) for kink, ns in levels]
    if not keep:
        if max(counts, default=0) > 2**63 - 1:
            raise CountLimitError(f"a count of {max(counts)} pieces exceeds int64, so no "
                                  "max_pieces can allow it: the closed form counts up to D = 62")
        return torch.tensor(counts, dtype=torch.int64)
    # building the kinks visits every wave's kinks in (lo, hi) up to the last level that kinks
    work = sum(1 + sum(ns[: max((j for j, k in enumerate(kink) if k), default=-1) + 1])
               for kink, ns in levels)
    if work > max_pieces:
        raise _limit_error(f"breakpoints(peaks=...) would build {work} pieces,", max_pieces)
    out = []
    for i, (kink, _) in enumerate(levels):
        k = _compositional_kinks(a[i], kink, lo, hi)
        knots = torch.cat([torch.tensor([lo], dtype=F64), k, torch.tensor([hi], dtype=F64)])
        mids = (knots[:-1] + knots[1:]).mul_(0.5)
        del knots
        slopes = torch.empty_like(mids)
        for j in range(0, mids.numel(), 2**20):  # slices bound autograd's temporaries
            x = mids[None, j : j + 2**20].clone().requires_grad_(True)
            with torch.enable_grad():
                y = forward(x, a[i : i + 1], None if s is None else s[i : i + 1], sign)
                slopes[j : j + 2**20], = torch.autograd.grad(y.sum(), x)[0]
        out.append(Pieces(k, slopes))
    return out


# The package re-exports breakpoints() over this module's name, so `compnet_ext.breakpoints` is
# the function: give it the error too, so `except compnet_ext.breakpoints.CountLimitError` works.
breakpoints.CountLimitError = CountLimitError
