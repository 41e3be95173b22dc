"""A learned per-feature activation: one compositional 1-D function per feature
(:class:`CompositionalActivation`, public as :mod:`compnet_ext.nn`; MATH.md section 7).

Each feature f of a ``[..., F]`` input gets its own function of one variable on the interval
``domain = (lo, hi)``, with ``u = (x - lo) / (hi - lo)``:

* ``sign = 0`` (default): the difference-of-convex pair of :mod:`compnet_ext.nonconvex`,
  ``y = c0 (F1(u) - u) + c1 (F2(u) - u) + c2 u + c3``, F1 of sign -1 and F2 of sign +1;
* ``sign = -1`` / ``+1``: one convex / concave network with the same learned affine part,
  ``y = c0 (F(u) - u) + c1 u + c2`` with the curvature ``c0 >= 0`` (so the function stays convex /
  concave: without the affine part every feature would be pinned to y(lo) = lo, y(hi) = hi).

The features are the rows of the batched ops: a call is one fused forward launch (2F rows for
the pair, F for one sign) and one fused backward launch, whatever the batch shape.

**Two stages**, as in the paper. Stage 1 (on construction) trains the peaks of the waves (smooth
scales, MATH.md section 3) and the coefficients. :meth:`CompositionalActivation.to_relu` encodes
every feature into its ReLU network (width 9 for the pair, 5 for one sign: the network's four
neurons per half and one that carries u; the domain map folded into the first layer) and from
then on the raw weights train, through the fused MLP kernels (a :class:`BatchedMLP` with S = F).

**Outside the domain** the function continues its first and last linear pieces:

    y(x) = y(lo) + g_lo (x - lo)   for x < lo,       y(x) = y(hi) + g_hi (x - hi)   for x > hi

In stage 1, ``g_lo`` and ``g_hi`` are the exact one-sided end slopes of the stage-1 function
(computed in closed form from the peaks: near u = 0 every wave rises as u / (a_0 ... a_i), near
u = 1 as (1 - u) / ((1 - a_0) a_1 ... a_i); with smooth scales the sum telescopes,
:func:`half_end_slopes`). :meth:`to_relu` copies them into a parameter
``tail [F, 2]`` that trains with the weights in stage 2 (a trained ReLU network's own end slope
is not a robust quantity: right after the encoding every t1 neuron has its kink exactly at u = 0,
where rounding would decide it). So the two stages agree everywhere right after
:meth:`to_relu`, the output is continuous, and gradients reach x outside the domain (as for
ReLU's linear half, unlike a clamp). NaN inputs give NaN outputs; +-inf gives +-inf (NaN where
the tail slope is exactly 0).

**Initialisation** (deterministic, no random draw): all peaks 1/2, where F1(u) - u = u^2 - u and
F2(u) - u = u - u^2 up to 4^-(D+1) (Yarotsky), and coefficients that make every feature the
quadratic q(t) = t/2 + t^2/4 (SiLU's second-order Taylor polynomial, within 0.02 of SiLU on
[-1, 1]; mirrored, t/2 - t^2/4, for sign = +1) in the domain's own coordinates: with
m = (lo + hi)/2, r = (hi - lo)/2, y(x) = m + r q((x - m)/r). So a fresh layer on the default
domain (-1, 1) is a smooth SiLU-like activation. The concave half of the pair starts with c1 = 0:
its peaks start learning after the first step moves c1.

**Keeping the parameters valid.** The forward uses the peaks clamped to
:data:`compnet_ext.ops.PEAK_BOUNDS` (and, for sign +-1, the curvature clamped to >= 0), so no
parameter value gives NaN or garbage. Call :meth:`CompositionalActivation.clamp_peaks_` (or
:func:`clamp_peaks_` on a whole model) after every optimiser step, as the paper's stage 1 does:
it projects the stored values into the bounds, so a peak that reached a bound keeps a gradient
(a clamp inside the forward alone would leave the stored value beyond the bound, with zero
gradient, stuck). In stage 2 it does nothing.
"""
import torch

from .batched_mlp import BatchedMLP
from .checks import check_depth, check_int, check_tensor
from .network import encode as encode_half
from .nonconvex import SIGNS, check_domain
from .nonconvex import encode as encode_pair
from .nonconvex import forward as pair_forward
from .ops import PEAK_BOUNDS
from .ops import forward as op_forward

STAGES = (1, 2)
"""Stage 1: peaks and coefficients train; stage 2: the encoded ReLU weights train."""


def check_layer_sign(sign):
    """``sign`` in {-1, 0, +1} (ValueError naming `sign` otherwise)."""
    if isinstance(sign, bool) or sign not in (-1, 0, 1):
        raise ValueError(f"`sign` must be -1 (convex), 0 (difference of convex) or +1 (concave), "
                         f"got {sign!r}")
    return int(sign)


def half_end_slopes(peaks, sign):
    """One-sided derivatives ``(F'(0+), F'(1-))``, each ``[S]``, of the networks of ``sign``
    with smooth scales and ``peaks [S, D+1]`` (closed form, differentiable; module docstring).

    Near u = 0 wave i rises as u / (a_0 ... a_i), near u = 1 as (1 - u) / ((1 - a_0) a_1 ... a_i).
    Divided by those products the smooth scales are c q_i with q_i = a_{i+1} prod_{k=1}^{i} (1 - a_k)
    (c = 1 or (1 - a_0) / a_0 at u = 0, a_0 / (1 - a_0) or 1 at u = 1, for sign -1 / +1), and
    sum_i q_i telescopes to 1 - P, P = prod_{k=1}^{D} (1 - a_k). So no product of peaks is
    formed: those underflow in float32 beyond a dozen layers of small peaks, and their quotient
    was 0/0 = NaN. P and 1 - P come from the sum of log(1 - a_k) (log1p, expm1), so 1 - P keeps
    its relative accuracy also where P is close to 1 (small peaks)."""
    a0 = peaks[:, 0]
    log_p = torch.log1p(-peaks[:, 1:]).sum(1)
    p, one_minus_p = log_p.exp(), -torch.expm1(log_p)
    if sign < 0:
        return p, 1 + a0 / (1 - a0) * one_minus_p
    return 1 + (1 - a0) / a0 * one_minus_p, p


def end_slopes(peaks, coef, sign, domain):
    """Slopes ``[S, 2]`` (at lo, at hi; per unit of x) of the stage-1 function of each feature:
    ``peaks`` and ``coef`` as :class:`CompositionalActivation` stores them (already valid)."""
    lo, hi = domain
    if sign == 0:
        (d0, d1), (e0, e1) = (half_end_slopes(peaks[:, h], sg) for h, sg in enumerate(SIGNS))
        c0, c1, c2 = coef[:, 0], coef[:, 1], coef[:, 2]
        g = torch.stack([c0 * (d0 - 1) + c1 * (e0 - 1) + c2,
                         c0 * (d1 - 1) + c1 * (e1 - 1) + c2], dim=1)
    else:
        d0, d1 = half_end_slopes(peaks, sign)
        c0, c1 = coef[:, 0], coef[:, 1]
        g = torch.stack([c0 * (d0 - 1) + c1, c0 * (d1 - 1) + c1], dim=1)
    return g / (hi - lo)


def encode_single(peaks, coef, sign, domain):
    """The ReLU network of width 5 computing ``c0 (F(u) - u) + c1 u + c2`` on ``domain``: the
    network's four neurons (MATH.md section 5) and one carrying u, the map x -> u folded into the
    first layer and the coefficients into the output layer. ``[(W [S, out, in], b [S, out])]``."""
    lo, hi = domain
    S, D = peaks.shape[0], peaks.shape[1] - 1
    half = encode_half(peaks, sign=sign)
    dtype, device = peaks.dtype, peaks.device
    f64 = dict(dtype=torch.float64, device=device)
    inv = 1.0 / (hi - lo)
    c = coef.to(torch.float64)
    layers = []
    for k, (W0, b0) in enumerate(half):
        W0, b0 = W0.to(torch.float64), b0.to(torch.float64)
        if k == 0:  # W u + b = (W / (hi - lo)) x + (b - W lo / (hi - lo))
            W = torch.cat([W0, torch.ones(S, 1, 1, **f64)], dim=1)
            b = torch.cat([b0, torch.zeros(S, 1, **f64)], dim=1)
            b = b - W[:, :, 0] * (lo * inv)
            W = W * inv
        elif k < D:
            W = torch.zeros(S, 5, 5, **f64)
            W[:, :4, :4], W[:, 4, 4] = W0, 1.0
            b = torch.cat([b0, torch.zeros(S, 1, **f64)], dim=1)
        else:  # c0 (F - u) + c1 u + c2
            W = torch.cat([c[:, 0, None, None] * W0, (c[:, 1] - c[:, 0])[:, None, None]], dim=2)
            b = c[:, 0, None] * b0 + c[:, 2, None]
        layers.append((W.to(dtype), b.to(dtype)))
    return layers


def initial_coef(sign, domain):
    """The coefficients of the initial SiLU-like quadratic (module docstring), as a list."""
    lo, hi = domain
    m, r = (lo + hi) / 2, (hi - lo) / 2
    # t = 2u - 1: t/2 + t^2/4 = (u^2 - u) + u - 1/4 and t/2 - t^2/4 = (u - u^2) + u - 3/4
    if sign == 0:
        return [r, 0.0, r, m - r / 4]
    return [r, r, m - (r / 4 if sign < 0 else 3 * r / 4)]


class CompositionalActivation(torch.nn.Module):
    """A learned activation ``[..., F] -> [..., F]``: each feature its own compositional
    function of one variable (KAN-like; the next linear layer combines them).

    Args:
        num_features: F, the size of the last input dimension (>= 1).
        depth: D, the number of waves per network (hidden layers of the encoded ReLU network),
            in [1, MAX_HIDDEN].
        sign: 0 (default): a difference of a convex and a concave network plus an affine part
            (any shape); -1: convex; +1: concave (one network plus an affine part).
        domain: ``(lo, hi)``, finite, lo < hi: the interval the waves cover. Outside it each
            function continues linearly (module :mod:`compnet_ext.activation` docstring).
        dtype, device: of the parameters (default: torch's default dtype, CPU). float32 or
            float64, one that can compute on ``domain`` (``compnet_ext.checks.check_domain``),
            here and at any later conversion (``.float()``, ``.to(dtype)``), which is refused
            otherwise before anything changes.

    Stage 1 parameters: ``peaks`` (``[F, 2, D+1]`` for sign 0, ``[F, D+1]`` otherwise) and
    ``coef`` (``[F, 4]``: c_convex, c_concave, slope, offset; ``[F, 3]``: curvature, slope,
    offset). After :meth:`to_relu`: ``mlp`` (a :class:`compnet_ext.nn.BatchedMLP`, S = F,
    widths ``(1, 9 or 5, ..., 1)``) and ``tail [F, 2]`` (the slopes outside the domain). The
    buffer ``stage`` (1 or 2) is saved in the ``state_dict``; loading a state dict of the other
    stage switches the module to it (it must then hold all of that stage's parameters). A load
    is checked whole before anything changes: one that fails (a size mismatch, a bad stage)
    raises and leaves the layer exactly as it was. Parameters change at :meth:`to_relu` and at
    such a switch (the new ones require grad if any old one did, so a frozen layer stays frozen):
    build the optimiser (and ``torch.compile``) after it.

    Typical use::

        act = CompositionalActivation(64)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for ...:                                  # stage 1
            loss.backward(); opt.step(); opt.zero_grad(); act.clamp_peaks_()
        act.to_relu()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        for ...:                                  # stage 2
            loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(self, num_features, depth=5, *, sign=0, domain=(-1.0, 1.0), dtype=None,
                 device=None):
        super().__init__()
        check_int("num_features", num_features, 1)
        check_depth("depth", depth)
        self.num_features, self.depth = num_features, depth
        self.sign = check_layer_sign(sign)
        dtype = dtype or torch.get_default_dtype()
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"`dtype` must be torch.float32 or torch.float64, got {dtype}")
        self.domain = check_domain(domain, dtype)  # what the dtype can compute on, now
        self.register_buffer("stage", torch.tensor(1, dtype=torch.int64, device=device))
        self._stage = 1
        self._make_stage1(dtype, self.stage.device)
        with torch.no_grad():
            self.peaks.fill_(0.5)
            self.coef.copy_(torch.tensor(initial_coef(self.sign, self.domain), dtype=dtype))

    # -- structure of the two stages ----------------------------------------------------------

    @property
    def width(self):
        """Hidden width of the encoded ReLU network: 9 (sign 0) or 5."""
        return 9 if self.sign == 0 else 5

    def _make_stage1(self, dtype, device):
        F, D = self.num_features, self.depth
        shape = (F, 2, D + 1) if self.sign == 0 else (F, D + 1)
        kw = dict(dtype=dtype, device=device)
        self.peaks = torch.nn.Parameter(torch.full(shape, 0.5, **kw))
        self.coef = torch.nn.Parameter(torch.zeros(F, 4 if self.sign == 0 else 3, **kw))

    def _make_stage2(self, dtype, device):
        widths = (1,) + (self.width,) * self.depth + (1,)
        self.mlp = BatchedMLP(self.num_features, widths, init="zeros", dtype=dtype, device=device)
        self.tail = torch.nn.Parameter(torch.zeros(self.num_features, 2, dtype=dtype,
                                                   device=device))

    def _param(self):
        """A parameter of the current stage: its dtype and device are the layer's."""
        return self.peaks if self._stage == 1 else self.tail

    def _switch(self, stage):
        """Replaces the parameters by zeros of the other stage (to be filled by the caller). They
        require grad if any of the old ones did (so a frozen layer stays frozen; a partly frozen
        stage 1 has no counterpart in stage 2, whose weights all mix peaks and coefficients)."""
        dtype, device = self._param().dtype, self._param().device
        requires_grad = any(p.requires_grad for p in self.parameters())
        if stage == 2:
            del self.peaks, self.coef
            self._make_stage2(dtype, device)
        else:
            del self.mlp, self.tail
            self._make_stage1(dtype, device)
        self.requires_grad_(requires_grad)
        self._stage = stage
        self.stage.fill_(stage)

    def valid_parameters(self):
        """Stage 1: ``(peaks, coef)`` as the forward uses them (peaks clamped to
        :data:`compnet_ext.ops.PEAK_BOUNDS`; for sign +-1 the curvature clamped to >= 0).
        Differentiable."""
        if self._stage != 1:
            raise RuntimeError("valid_parameters() is for stage 1; this layer is in stage 2 "
                               "(after to_relu())")
        peaks = self.peaks.clamp(*PEAK_BOUNDS)
        coef = self.coef
        if self.sign != 0:
            coef = torch.cat([coef[:, :1].clamp(min=0), coef[:, 1:]], dim=1)
        return peaks, coef

    @torch.no_grad()
    def clamp_peaks_(self):
        """Projects the stage-1 parameters into their valid set, in place (call after each
        optimiser step; module docstring). No-op in stage 2. Returns self."""
        if self._stage == 1:
            self.peaks.clamp_(*PEAK_BOUNDS)
            if self.sign != 0:
                self.coef[:, 0].clamp_(min=0)
        return self

    @torch.no_grad()
    def to_relu(self):
        """Stage 2: encodes each feature's function into its ReLU network (exact on the domain,
        to rounding) and the end slopes into ``tail``; from now on the raw weights train. The
        function does not change. No-op in stage 2. Returns self."""
        if self._stage == 2:
            return self
        peaks, coef = self.valid_parameters()
        if self.sign == 0:
            layers = encode_pair(peaks, coef, domain=self.domain)
        else:
            layers = encode_single(peaks, coef, self.sign, self.domain)
        tail = end_slopes(peaks, coef, self.sign, self.domain)
        self._switch(2)
        for (W, b), (W_new, b_new) in zip(self.mlp.layers(), layers):
            W.copy_(W_new)
            b.copy_(b_new)
        self.tail.copy_(tail)
        return self

    def _state_problems(self, state_dict, prefix, stage):
        """Why ``state_dict`` cannot be loaded as ``stage`` (empty: it can): every entry of that
        stage present as a tensor of this layer's shape. A stage switch needs all of them (the
        new parameters have no values of their own to keep); a same-stage load may be partial,
        as torch allows. Checked on a skeleton on the meta device, before anything changes."""
        skeleton = CompositionalActivation(self.num_features, self.depth, sign=self.sign,
                                           domain=self.domain, dtype=self._param().dtype,
                                           device="meta")
        if stage == 2:
            skeleton._switch(2)
        problems, missing = [], []
        layer = (f"stage {stage} of this layer (num_features={self.num_features}, "
                 f"depth={self.depth}, sign={self.sign})")
        for name, want in skeleton.state_dict().items():
            got = state_dict.get(prefix + name)
            if got is None:
                missing.append(f"`{prefix}{name}`")
            elif not isinstance(got, torch.Tensor):
                problems.append(f"`{prefix}{name}` is a {type(got).__name__}, not a tensor")
            elif got.shape != want.shape:
                problems.append(f"size mismatch for `{prefix}{name}`: {list(got.shape)} in the "
                                f"state, {list(want.shape)} in {layer}")
        if missing and stage != self._stage:
            problems.append(f"a switch to stage {stage} needs all of its parameters; missing "
                            + ", ".join(missing))
        return problems

    def _apply(self, fn, *args, **kwargs):
        # `.float()`, `.double()`, `.to(dtype)` of the layer or of a model holding it: a dtype the
        # layer cannot compute in, or compute on its domain in, is refused before anything is
        # converted (as at construction). fn is tried on an empty tensor like the parameters.
        param = self._param()
        dtype = fn(torch.empty(0, dtype=param.dtype, device=param.device)).dtype
        if dtype != param.dtype:
            if dtype not in (torch.float32, torch.float64):
                raise TypeError(f"CompositionalActivation computes in torch.float32 or "
                                f"torch.float64, not {dtype} (for mixed precision use "
                                "torch.autocast: the layer then computes in its own dtype)")
            check_domain(self.domain, dtype)
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # The stage decides which parameters exist, so a load may have to switch before they are
        # copied; and the children (the MLP) load after this, whatever it reports. So the whole
        # state is checked first and a bad one raises here: a failed load changes nothing.
        stage = state_dict.get(prefix + "stage")
        target = self._stage
        if isinstance(stage, torch.Tensor) and stage.numel() == 1:
            target = int(stage)
            if target not in STAGES:
                raise RuntimeError(f"Error in loading state_dict for CompositionalActivation: "
                                   f"`{prefix}stage` must be 1 or 2, got {target}. The layer is "
                                   "unchanged.")
        problems = self._state_problems(state_dict, prefix, target)
        if problems:
            raise RuntimeError("Error(s) in loading state_dict for CompositionalActivation: "
                               + "; ".join(problems) + ". The layer is unchanged.")
        if target != self._stage:
            self._switch(target)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    # -- forward ------------------------------------------------------------------------------

    def _rows(self, input):
        check_tensor("input", input, self._param(), "the layer")
        if input.dim() < 1 or input.shape[-1] != self.num_features:
            raise ValueError(f"`input` must have shape [..., {self.num_features}] (last "
                             f"dimension = num_features), got {list(input.shape)}")
        return input.reshape(-1, self.num_features).t().contiguous()

    def forward(self, input):
        """``[..., F] -> [..., F]``: feature f through function f (one fused launch).

        Under ``torch.autocast`` the input (e.g. bfloat16 from a Linear layer) is computed in the
        parameters' dtype, and so is the output, as autocast's float32 ops do: the fused
        kernels take float32 and float64 only, and the waves' slopes (up to 1/a per layer)
        would not survive bfloat16's 8 bits anyway."""
        device = self._param().device.type
        if (device in ("cpu", "cuda") and torch.is_autocast_enabled(device)
                and isinstance(input, torch.Tensor) and input.is_floating_point()):
            with torch.autocast(device, enabled=False):
                return self._forward(input.to(self._param().dtype))
        return self._forward(input)

    def _forward(self, input):
        x = self._rows(input)                                  # [F, B]
        lo, hi = self.domain
        xc = x.clamp(lo, hi)
        if self._stage == 1:
            peaks, coef = self.valid_parameters()
            if self.sign == 0:
                y = pair_forward(xc, peaks, coef, domain=self.domain, validate=False)
            else:
                u = (xc - lo) / (hi - lo)
                f = op_forward(u, peaks, None, self.sign, validate=False)
                c = coef.unsqueeze(-1)
                y = c[:, 0] * (f - u) + c[:, 1] * u + c[:, 2]
            tail = end_slopes(peaks, coef, self.sign, self.domain)
        else:
            y = self.mlp(xc)
            tail = self.tail
        # continue the end pieces linearly: x - xc is 0 inside, x - lo below, x - hi above
        y = y + torch.where(x < lo, tail[:, :1], tail[:, 1:]) * (x - xc)
        return y.t().reshape(input.shape)

    def extra_repr(self):
        return (f"num_features={self.num_features}, depth={self.depth}, sign={self.sign}, "
                f"domain={self.domain}, stage={self._stage}")


def clamp_peaks_(module):
    """Calls :meth:`CompositionalActivation.clamp_peaks_` on every such layer inside ``module``
    (e.g. after ``optimizer.step()``). Returns ``module``."""
    for m in module.modules():
        if isinstance(m, CompositionalActivation):
            m.clamp_peaks_()
    return module
