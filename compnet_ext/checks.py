"""Every argument check of compnet_ext, in one place.

Each check raises TypeError (wrong kind of value) or ValueError (wrong value) with a message
that names the argument, and returns the value normalised where that is useful. The ops, the
network view, the piece counters and the experiment settings all check through these functions,
so one rule has one wording. Shapes, dtypes and devices are checked in Python (also under
torch.compile); value checks of tensors (range, NaN/Inf) cost a device sync and are made only
where a caller asks for them (``validate=True``; the C++ ops check values themselves).
"""
import math
import numbers

import torch

from ._extension import MLP_MAX_HIDDEN, MLP_MAX_WIDTH, WITH_CUDA

INT64_MAX = 2**63 - 1
"""Largest value of an ``int`` argument of the op schemas (C++ int64_t)."""
_BOUND_NAMES = {INT64_MAX: "2**63 - 1"}

# ---------------------------------------------------------------------------------------------
# numbers


def real(value):
    """float(value) for a real number, inf for one too large for a float, None otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # a huge Python int
        return math.inf


def check_int(name, value, minimum=0, maximum=None, *, wrong_type=TypeError):
    """An int (not a bool) in ``[minimum, maximum]`` (``maximum`` None: no upper bound).

    Raises ``wrong_type`` for a value that is not an int (the op arguments raise ValueError,
    as the op schema would) and ValueError for one out of range. Returns ``value``.
    """
    if maximum is None:
        rule = f">= {minimum}"
    elif maximum in _BOUND_NAMES:
        rule = f">= {minimum} (at most {_BOUND_NAMES[maximum]})"
    else:
        rule = f"in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(f"`{name}` must be an int {rule}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"`{name}` must be an int {rule}, got {value!r}")
    return value


def check_real(name, value, *, positive=False):
    """A finite real number, ``>= 0`` (``positive``: ``> 0``); returned as a float."""
    v = real(value)
    if v is None or not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"`{name}` must be a finite number {'> 0' if positive else '>= 0'}, "
                         f"got {value!r}")
    return v


def check_choice(name, value, choices):
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be {' or '.join(map(repr, choices))}, got {value!r}")
    return value


def check_adam(epochs, lr, betas, eps, record_every):
    """Hyper-parameters of the fused training stages; returns (lr, beta1, beta2, eps) as floats."""
    check_int("epochs", epochs, 0, INT64_MAX, wrong_type=ValueError)
    check_int("record_every", record_every, 0, INT64_MAX, wrong_type=ValueError)
    lr = check_real("lr", lr)
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2
            and all(real(b) is not None and 0 <= b < 1 for b in betas)):
        raise ValueError(f"`betas` must be a pair of numbers in [0, 1), got {betas!r}")
    return lr, float(betas[0]), float(betas[1]), check_real("eps", eps, positive=True)


def check_warmup(warmup, name="warmup"):
    """Steps of linear learning-rate warm-up: an int >= 0 (ValueError naming it otherwise)."""
    return check_int(name, warmup, 0, INT64_MAX, wrong_type=ValueError)


def check_bounds(name, bounds):
    """``(lo, hi)`` with ``0 < lo <= hi < 1``, as floats (peak bounds and ranges)."""
    if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2
            and all(real(b) is not None for b in bounds) and 0 < bounds[0] <= bounds[1] < 1):
        raise ValueError(f"`{name}` must be a pair (lo, hi) with 0 < lo <= hi < 1, got {bounds!r}")
    return float(bounds[0]), float(bounds[1])


def min_peak(dtype):
    """The smallest valid peak of ``dtype``: below ``sqrt(finfo.tiny)`` 1/a^2 overflows
    (about 1.1e-19 in float32, 1.5e-154 in float64)."""
    return math.sqrt(torch.finfo(dtype).tiny)


def check_peak_bounds(peak_bounds, dtype):
    """The clamp of stage 1: ``(lo, hi)`` with ``min_peak(dtype) <= lo <= hi < 1``, as floats."""
    lo, hi = check_bounds("peak_bounds", peak_bounds)
    if lo < min_peak(dtype):
        raise ValueError(f"`peak_bounds` lo must be at least min_peak({dtype}) = "
                         f"{min_peak(dtype):.3g} (smaller peaks overflow 1/a^2), got {lo!r}")
    return lo, hi


def check_target_scale(name, y):
    """ValueError naming ``name`` when the values ``y`` are too large to fit in their dtype:
    beyond ``sqrt(finfo.max) / 16`` (1.2e18 in float32) the squared errors of a fit (the MSE, and
    Adam's squared gradients, which grow with them) overflow into inf and then NaN."""
    limit = math.sqrt(torch.finfo(y.dtype).max) / 16
    top = float(y.abs().max()) if y.numel() else 0.0
    if top > limit:
        raise ValueError(f"`{name}` has values up to {top:.3g}, more than {y.dtype} can fit "
                         f"({limit:.3g}: their squared errors would overflow); scale it down")
    return y


DOMAIN_VALUES = 2**12
"""Fewest values of the dtype a domain must hold (:func:`check_domain`)."""


def check_domain(domain, dtype=None):
    """``domain`` as a pair of floats ``(lo, hi)`` that ``dtype`` (None: float64) can compute on;
    TypeError/ValueError naming `domain` otherwise. The rule, from the arithmetic of the map
    ``u = (x - lo) / (hi - lo)`` onto [0, 1] and of its inverse:

    - ``lo < hi``, both finite in ``dtype`` (float32 holds up to 3.4e38), and so is ``hi - lo``;
    - ``hi - lo >= min_peak(dtype)`` (1.1e-19 in float32, 1.5e-154 in float64): a normal number
      whose reciprocal, the map's scale, times any weight 1/a of a valid peak stays finite when
      the map is folded into a network's first layer (the peaks' own bound, for the same reason);
    - ``hi - lo >= DOMAIN_VALUES * eps * max(|lo|, |hi|)``: the dtype has at least 4096 values
      between lo and hi (its spacing near x is at most eps |x|), so the points of an experiment
      are distinct and u is resolved to 2^-12 of the domain; on (1e10, 1e10 + 1) float32 has one
      value, and every point would be the same.
    """
    try:
        lo, hi = (float(v) for v in domain)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"`domain` must be a pair of numbers (lo, hi), got {domain!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"`domain` must be finite with lo < hi, got ({lo}, {hi})")
    dtype = torch.float64 if dtype is None else dtype
    info = torch.finfo(dtype)
    width = hi - lo
    if max(abs(lo), abs(hi), width) > info.max:
        raise ValueError(f"`domain` ({lo!r}, {hi!r}) is too large for {dtype}: its ends and "
                         f"hi - lo must be at most {info.max:.3g}")
    if width < min_peak(dtype):
        raise ValueError(f"`domain` ({lo!r}, {hi!r}) is too narrow for {dtype}: hi - lo must be "
                         f"at least {min_peak(dtype):.3g} (the map onto [0, 1] would overflow)")
    if width < DOMAIN_VALUES * info.eps * max(abs(lo), abs(hi)):
        raise ValueError(f"`domain` ({lo!r}, {hi!r}) is too narrow for its offset in {dtype}: "
                         f"hi - lo must be at least {DOMAIN_VALUES} x eps x max(|lo|, |hi|) = "
                         f"{DOMAIN_VALUES * info.eps * max(abs(lo), abs(hi)):.3g} (fewer "
                         f"distinct values of the dtype lie between lo and hi)")
    return lo, hi


def check_interval(lo, hi, within=None):
    """``lo < hi``, finite floats, inside ``within`` if given; returned as floats."""
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"`{name}` must be a float, got {type(v).__name__}")
        if not math.isfinite(v):
            raise ValueError(f"`{name}` must be finite, got {v}")
    if not lo < hi:
        raise ValueError(f"`lo` must be < `hi`, got lo={lo}, hi={hi}")
    if within is not None and not (within[0] <= lo and hi <= within[1]):
        raise ValueError(f"[`lo`, `hi`] = [{lo}, {hi}] must lie in [{within[0]}, {within[1]}] "
                         "(the compositional network's domain)")
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------
# tensors (the compositional network)


def check_tensor(name, t, ref=None, ref_name="peaks"):
    """A float32/float64 tensor on a device the build supports, with the dtype and device of
    ``ref`` when given. ``ref_name`` names ``ref`` in the messages: an argument (shown in
    backticks) or, if it has a space, a phrase such as "the layer" (shown as is)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"`{name}` must be float32 or float64, got {t.dtype}")
    if t.device.type == "cuda" and not WITH_CUDA:
        raise RuntimeError(
            f"`{name}` is a CUDA tensor but compnet_ext was built without CUDA; rebuild with a "
            "CUDA build of torch and nvcc available (see README, 'Building for CUDA')"
        )
    if t.device.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"`{name}` is on {t.device}; only CPU and CUDA are supported")
    if ref is not None:
        ref_name = ref_name if " " in ref_name else f"`{ref_name}`"
        if t.dtype != ref.dtype:
            raise TypeError(f"`{name}` has dtype {t.dtype} but {ref_name} has {ref.dtype}")
        if t.device != ref.device:
            raise ValueError(f"`{name}` is on {t.device} but {ref_name} is on {ref.device}")


def check_points(name, t, S, N=None):
    """``[N]`` (shared by all seeds) or ``[S, N]``."""
    if t.dim() == 2 and t.shape[0] == S and (N is None or t.shape[1] == N):
        return
    if t.dim() == 1 and (N is None or t.shape[0] == N):
        return
    want = f"[N] or [S, N] with S = {S}" + ("" if N is None else f", N = {N}")
    raise ValueError(f"`{name}` has shape {list(t.shape)}, expected {want}")


def check_sign(sign):
    if isinstance(sign, bool) or sign not in (-1, 1):
        raise ValueError(f"`sign` must be -1 or +1, got {sign!r}")


def check_peak_values(peaks):
    """Value check of ``peaks`` (one device sync): in (0, 1), at least :func:`min_peak`, no NaN."""
    lo = min_peak(peaks.dtype)
    if peaks.numel() and not bool(((peaks >= lo) & (peaks < 1)).all()):
        raise ValueError(f"`peaks` must lie in the open interval (0, 1), and be at least {lo:.3g} "
                         f"in {peaks.dtype} (smaller peaks overflow 1/a^2; NaN is not allowed)")


def check_finite(name, t):
    """Value check (one device sync): no NaN or Inf in ``t`` (None passes)."""
    if t is not None and t.numel() and not bool(t.isfinite().all()):
        raise ValueError(f"`{name}` contains NaN or Inf")


def check_unit_points(name, x):
    """Value check (two device syncs): every point of ``x`` in [0, 1], no NaN or Inf."""
    check_finite(name, x)
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(f"`{name}` must lie in [0, 1]")


def _check_peaks(peaks):
    check_tensor("peaks", peaks)
    if peaks.dim() != 2 or peaks.shape[1] < 2:
        raise ValueError(f"`peaks` must be [S, D+1] with D >= 1, got shape {list(peaks.shape)}")
    return peaks.shape[0], peaks.shape[1] - 1


def _check_scales(scales, peaks, S, D):
    if scales is not None:
        check_tensor("scales", scales, peaks)
        if scales.dim() != 2 or tuple(scales.shape) != (S, D):
            raise ValueError(f"`scales` must be [S, D] = [{S}, {D}], got {list(scales.shape)}")


def check_network(peaks, scales, sign, *, validate=True):
    """``peaks [S, D+1]``, ``scales [S, D]`` or None, ``sign``; with ``validate`` also their
    values (peaks valid, scales finite: one device sync). Returns ``(S, D)``."""
    S, D = _check_peaks(peaks)
    _check_scales(scales, peaks, S, D)
    check_sign(sign)
    if validate:
        check_peak_values(peaks)
        check_finite("scales", scales)
    return S, D


_FLOATS = (torch.float32, torch.float64)
_DEVICE_TYPES = ("cpu", "cuda", "meta") if WITH_CUDA else ("cpu", "meta")


def _valid_op_args(x, peaks, scales, sign, target):
    """``(S, D)`` when the arguments are certainly valid, else None: the per-call fast path of
    :func:`check_op_args` (a few attribute reads, no messages built), which runs on every op
    call; anything unusual goes to the full check, which words the error."""
    if not (isinstance(peaks, torch.Tensor) and isinstance(x, torch.Tensor)
            and type(sign) is int and (sign == -1 or sign == 1)):
        return None
    dtype, device, shape = peaks.dtype, peaks.device, peaks.shape
    if (dtype not in _FLOATS or device.type not in _DEVICE_TYPES or len(shape) != 2
            or shape[1] < 2 or x.dtype != dtype or x.device != device):
        return None
    S, D = shape[0], shape[1] - 1
    xs = x.shape
    if not (len(xs) == 1 or (len(xs) == 2 and xs[0] == S)):
        return None
    if scales is not None and not (isinstance(scales, torch.Tensor) and scales.dtype == dtype
                                   and scales.device == device and scales.shape == (S, D)):
        return None
    if target is not None:
        if not (isinstance(target, torch.Tensor) and target.dtype == dtype
                and target.device == device):
            return None
        ts = target.shape
        if not (ts[-1:] == xs[-1:] and (len(ts) == 1 or (len(ts) == 2 and ts[0] == S))):
            return None
    return S, D


def check_op_args(x, peaks, scales, sign, target=None):
    """Arguments of the compositional ops (shapes, dtypes, devices; the op checks values).
    Returns ``(S, D)``."""
    valid = _valid_op_args(x, peaks, scales, sign, target)
    if valid is not None:
        return valid
    S, D = _check_peaks(peaks)
    check_tensor("x", x, peaks)
    check_points("x", x, S)
    _check_scales(scales, peaks, S, D)
    if target is not None:
        check_tensor("target", target, peaks)
        check_points("target", target, S, x.shape[-1])
    check_sign(sign)
    return S, D


# ---------------------------------------------------------------------------------------------
# batched MLPs

MAX_WIDTH = MLP_MAX_WIDTH
"""Widest hidden layer supported by the fused kernels (read from the extension)."""
MAX_HIDDEN = MLP_MAX_HIDDEN
"""Most hidden layers supported by the fused kernels (read from the extension)."""


def check_depth(name, depth):
    """A number of hidden layers the fused MLP kernels take: an int in [1, MAX_HIDDEN]."""
    return check_int(name, depth, 1, MAX_HIDDEN)


def check_width(name, width):
    """A hidden width the fused MLP kernels take: an int in [1, MAX_WIDTH]."""
    return check_int(name, width, 1, MAX_WIDTH)


def check_widths(widths):
    """``(1, hidden..., 1)``: hidden widths in [1, MAX_WIDTH], at most MAX_HIDDEN of them."""
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise TypeError(f"`widths` must be a sequence of ints, got {type(widths).__name__}")
    widths = tuple(widths)
    if not all(isinstance(w, int) and not isinstance(w, bool) for w in widths):
        raise TypeError(f"`widths` must be a sequence of ints, got {widths!r}")
    if len(widths) < 2 or widths[0] != 1 or widths[-1] != 1:
        raise ValueError(f"`widths` must start and end with 1 (scalar in, scalar out), got {widths}")
    hidden = widths[1:-1]
    if len(hidden) > MAX_HIDDEN:
        raise ValueError(f"`widths` has {len(hidden)} hidden layers; at most {MAX_HIDDEN} supported")
    if any(w < 1 or w > MAX_WIDTH for w in hidden):
        raise ValueError(f"`widths` hidden widths must lie in [1, {MAX_WIDTH}], got {hidden}")
    return widths


def _valid_layers(layers):
    """``(S, widths)`` when ``layers`` are certainly valid, else None: the per-call fast path of
    :func:`check_layers`, as :func:`_valid_op_args` is :func:`check_op_args`'s."""
    if type(layers) not in (list, tuple) or not 0 < len(layers) <= MAX_HIDDEN + 1:
        return None
    widths, dtype = [1], None
    for pair in layers:
        if type(pair) not in (tuple, list) or len(pair) != 2:
            return None
        W, b = pair
        if not (isinstance(W, torch.Tensor) and isinstance(b, torch.Tensor)):
            return None
        ws = W.shape
        if dtype is None:
            dtype, device, S = W.dtype, W.device, ws[0] if len(ws) == 3 else -1
            if dtype not in _FLOATS or device.type not in _DEVICE_TYPES:
                return None
        if (len(ws) != 3 or ws[0] != S or ws[2] != widths[-1] or b.shape != (S, ws[1])
                or W.dtype != dtype or b.dtype != dtype or W.device != device
                or b.device != device):
            return None
        widths.append(ws[1])
    if widths[-1] != 1 or not all(1 <= w <= MAX_WIDTH for w in widths[1:-1]):
        return None
    return S, tuple(widths)


def check_layers(layers):
    """A list of ``(W [S, out, in], b [S, out])``; returns ``(S, widths)``."""
    valid = _valid_layers(layers)
    if valid is not None:
        return valid
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError("`layers` must be a non-empty list of (W [S, out, in], b [S, out]) pairs")
    ref = None
    widths = [1]
    for i, pair in enumerate(layers):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"`layers[{i}]` must be a pair (W, b)")
        W, b = pair
        check_tensor(f"layers[{i}][0]", W, ref, "layers[0][0]")
        ref = W if ref is None else ref
        check_tensor(f"layers[{i}][1]", b, ref, "layers[0][0]")
        S = ref.shape[0]
        if W.dim() != 3 or W.shape[0] != S or W.shape[2] != widths[-1]:
            raise ValueError(f"`layers[{i}][0]` must be [S, out, in] = [{S}, out, {widths[-1]}], "
                             f"got {list(W.shape)}")
        if tuple(b.shape) != (S, W.shape[1]):
            raise ValueError(f"`layers[{i}][1]` must be [S, out] = [{S}, {W.shape[1]}], "
                             f"got {list(b.shape)}")
        widths.append(W.shape[1])
    return ref.shape[0], check_widths(widths)


def check_mlp_points(x, S):
    """Points of S networks: ``[N]`` or ``[S, N]``."""
    if not ((x.dim() == 1) or (x.dim() == 2 and x.shape[0] == S)):
        raise ValueError(f"`x` has shape {list(x.shape)}, expected [N] or [S, N] with S = {S}")


def check_mlp_target(target, x, S, ref, ref_name):
    """``target`` is ``[N]`` or ``[S, N]`` like ``x``, with the dtype and device of ``ref``."""
    check_tensor("target", target, ref, ref_name)
    if not (target.dim() in (1, 2) and target.shape[-1] == x.shape[-1]
            and (target.dim() == 1 or target.shape[0] == S)):
        raise ValueError(f"`target` has shape {list(target.shape)}, expected [N] or [S, N] "
                         f"with S = {S}, N = {x.shape[-1]}")
