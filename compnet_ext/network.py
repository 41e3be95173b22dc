"""The compositional network as a real 4-neuron-wide ReLU network (MATH.md section 5).

Hidden layer k (k = 0 .. D-1) has the neurons, in this order,

    t1_k  = r_k * W_{k-1}(x)              (always active: W >= 0, r_k >= 0)
    t2_k  = r_k * relu(W_{k-1}(x) - a_k)  (active right of the peak)
    acc_k = x + sign * sum_{i<k} s_i W_i(x) + beta_k     (the running sum, offset by beta_k >= 0)
    c_k   = r_k                            (the constant neuron: a decaying bias)

where r_k is the amplitude the layer carries. MATH.md's choice is r_k = s_k (amplitude decay); we
use r_k = max_{j >= k} |s_j|, which *is* s_k for smooth scales (they decrease strictly) and stays
exact for any free scales:

* negative scales: t1, t2, c carry r_k >= 0, so ReLU never clips them; the sign of s_k enters only
  through the weight s_k / r_k (in [-1, 1]) into the accumulator;
* scales that underflow to 0 (fp32, deep nets): r_k = 0 only when every later scale is 0 too, and
  then nothing downstream matters; the 0/0 ratios are defined as 0 (never NaN);
* a running sum that could go negative (free scales with sign * s_i < 0): the accumulator carries
  the offset beta_k = sum_{i<k} max(0, -sign * s_i) (through its bias), which keeps it >= x >= 0
  on [0, 1]; the output layer subtracts it again. In smooth mode acc_k >= 0 already (MATH.md) and
  beta = 0.

Every weight is O(1): a ratio r_{k+1}/r_k <= 1, s_k/r_k in [-1, 1], 1/a, 1/(a(1-a)), a, sign or 1.
The weights are computed in float64 and returned in the dtype of ``peaks``; they are
differentiable w.r.t. peaks and scales.
"""
import torch

from .checks import check_network
from .reference import smooth_scales


def _safe_div(num, den):
    """num / den, with 0 where den == 0 (only happens where num == 0 too, see module docstring)."""
    ok = den != 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def _amplitudes(scales):
    """r_k = max_{j >= k} |s_j|, [S, D]."""
    rev = scales.abs().flip(1)
    return torch.cummax(rev, dim=1).values.flip(1)


def encode(peaks, scales=None, *, sign=-1, validate=True):
    """Weights of the 4-neuron ReLU network that computes ``compnet_ext.forward(x, peaks, scales, sign)``.

    Args:
        peaks: ``[S, D+1]`` float32/float64 peaks in (0, 1).
        scales: ``None`` (smooth scales derived from the peaks) or free scales ``[S, D]`` of any
            sign (zeros allowed).
        sign: -1 or +1, as in :func:`compnet_ext.forward`.
        validate: check that the peaks lie in (0, 1) and that scales are finite.

    Returns:
        A list of D + 1 pairs ``(W [S, out, in], b [S, out])`` in the dtype and device of
        ``peaks``: the first layer maps 1 -> 4, then D - 1 hidden layers 4 -> 4, and the output
        layer 4 -> 1. Apply ReLU after every layer but the last (see
        :class:`compnet_ext.nn.BatchedMLP`). On x in [0, 1] the network equals the compositional
        network to rounding (see the module docstring for how negative or underflowing scales
        are kept exact).
    """
    S, D = check_network(peaks, scales, sign, validate=validate)

    dtype = peaks.dtype
    a = peaks.to(torch.float64)
    smooth = scales is None
    s = smooth_scales(a, sign) if smooth else scales.to(torch.float64)
    r = _amplitudes(s)
    sigma = _safe_div(s, r)                   # s_k / r_k in [-1, 1]
    rho = _safe_div(r[:, 1:], r[:, :-1])      # r_{k+1} / r_k in [0, 1], k = 0 .. D-2
    # neg_i: how far wave i can pull the running sum down; beta_k = sum_{i<k} neg_i
    neg = torch.zeros_like(s) if smooth else torch.clamp(-sign * s, min=0)
    beta_last = neg[:, :-1].sum(dim=1)
    ia = 1 / a[:, :D]                         # 1/a_k
    iab = 1 / (a[:, :D] * (1 - a[:, :D]))     # 1/(a_k (1 - a_k))
    zero = torch.zeros(S, dtype=torch.float64, device=a.device)
    one = torch.ones_like(zero)

    layers = []
    # first layer: reads x
    W = torch.stack([r[:, 0], r[:, 0], one, zero], dim=1)[:, :, None]
    b = torch.stack([zero, -r[:, 0] * a[:, 0], zero, r[:, 0]], dim=1)
    layers.append((W, b))
    for k in range(D - 1):
        # W_k = t1_k / (r_k a_k) - t2_k / (r_k a_k (1 - a_k)), so r_{k+1} W_k is rho * (...)
        p, q = ia[:, k], iab[:, k]
        rk, sk = rho[:, k], sign * sigma[:, k]
        W = torch.stack([
            torch.stack([rk * p, -rk * q, zero, zero], dim=1),
            torch.stack([rk * p, -rk * q, zero, -rk * a[:, k + 1]], dim=1),
            torch.stack([sk * p, -sk * q, one, zero], dim=1),
            torch.stack([zero, zero, zero, rk], dim=1),
        ], dim=1)
        b = torch.stack([zero, zero, neg[:, k], zero], dim=1)
        layers.append((W, b))
    sk = sign * sigma[:, D - 1]
    W = torch.stack([sk * ia[:, D - 1], -sk * iab[:, D - 1], one, zero], dim=1)[:, None, :]
    b = (-beta_last)[:, None]
    layers.append((W, b))
    return [(W.to(dtype), b.to(dtype)) for W, b in layers]
