"""The settings of one experiment (:class:`Config`), their defaults, and their checks.

An experiment (MATH.md section 6) trains ``seeds`` networks of each kind on each target in two
stages. Every setting is checked when a :class:`Config` is made, before any work, and the
``compnet`` options are checked by the same functions (:func:`check_setting`), so a limit has
one home. The learning rates, warm-ups and the peak clamp were chosen by the tuning in
docs/hyperparameters.md.
"""
import contextlib
import dataclasses
import os
from dataclasses import dataclass, field

import torch

from .._extension import WITH_CUDA
from ..checks import (check_bounds, check_depth, check_domain, check_int, check_peak_bounds,
                      check_real, check_width)
from ..init import PEAK_RANGE
from ..nonconvex import PAIR_WIDTH

KINDS = ("default", "raai", "no_pretraining", "not_enforced", "enforced")
"""The five kinds of network of the paper's Tables 1-2 (docs/training.md)."""
WEIGHT_ONLY_KINDS = ("default", "raai", "no_pretraining")
"""Kinds without stage 1: their weights train for both stages' epochs."""
STAGE1_KINDS = ("not_enforced", "enforced")
"""Kinds whose peaks (and free scales) train first (stage 1), then their encoded weights."""

# Adam's other settings are torch's defaults. The weights' rate and its warm-up are per kind: each
# kind gets what served it best in the same number of tuning trials, on a seed the reports do not
# use (bench/tune_defaults.py, docs/hyperparameters.md), so no kind (least of all the baselines)
# is handicapped by settings tuned for another.
LR_PEAKS = 1e-2
LR_WEIGHTS = {"default": 5e-3, "raai": 2e-2, "no_pretraining": 1e-3, "not_enforced": 3e-4,
              "enforced": 2e-4}
WARMUP_FRACTION = {"default": 0.0, "raai": 0.15, "no_pretraining": 0.15, "not_enforced": 0.1,
                   "enforced": 0.1}
"""Linear warm-up of each kind's weights' rate (``warmup_lr``; stage 1 has none), as a fraction
of the steps the kind trains its weights: ``epochs[0] + epochs[1]`` for the weight-only kinds,
``epochs[1]`` for the others. With the paper's 1000 + 1000: 300 steps for raai and
no_pretraining, 100 for not_enforced and enforced (:meth:`Config.warmup_steps`)."""
PEAK_CLAMP = (0.1, 0.9)
"""Stage 1's clamp of the peaks in the experiments (``Config.peak_bounds``)."""

SEED_MAX = 2**64 - 1
"""torch.Generator.manual_seed takes an unsigned 64-bit seed (negatives would alias large ones)."""


def check_setting(name, value):
    """The check of one integer setting, shared by :class:`Config` and the ``compnet`` options."""
    if name == "depth":
        return check_depth(name, value)
    if name == "width":
        return check_width(name, value)
    if name == "threads":  # more threads than CPUs only slows down (absurd counts crash OpenMP)
        return check_int(name, value, 1, os.cpu_count() or 1)
    if name == "seed":
        return check_int(name, value, 0, SEED_MAX)
    return check_int(name, value, {"seeds": 1, "points": 2, "epochs": 0, "draws": 1}[name])


def check_kinds(kinds):
    """Tuple of kinds in KINDS order; ValueError naming `kinds` on unknown, empty or repeated."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    if not kinds:
        raise ValueError("`kinds` is empty")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown kind(s) {bad} in `kinds`; known kinds: {', '.join(KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"`kinds` has repeats: {list(kinds)}")
    return tuple(k for k in KINDS if k in kinds)


def weight_lrs(lr_weights):
    """{kind: lr} from a number (all kinds) or a dict (missing kinds take LR_WEIGHTS's)."""
    if isinstance(lr_weights, dict):
        bad = [k for k in lr_weights if k not in KINDS]
        if bad:
            raise ValueError(f"unknown kind(s) {bad} in `lr_weights`; known: {', '.join(KINDS)}")
        out = {**LR_WEIGHTS, **lr_weights}
    else:
        out = {k: lr_weights for k in KINDS}
    return {k: check_real(f"lr_weights[{k!r}]", v, positive=True) for k, v in out.items()}


def warmup_fractions(fraction):
    """{kind: fraction in [0, 1]} from a number (all kinds) or a dict (missing kinds take
    WARMUP_FRACTION's)."""
    if isinstance(fraction, dict):
        bad = [k for k in fraction if k not in KINDS]
        if bad:
            raise ValueError(f"unknown kind(s) {bad} in `warmup_fraction`; known: "
                             f"{', '.join(KINDS)}")
        out = {**WARMUP_FRACTION, **fraction}
    else:
        out = {k: fraction for k in KINDS}
    checked = {k: check_real(f"warmup_fraction[{k!r}]", v) for k, v in out.items()}
    for k, v in checked.items():
        if v > 1:
            raise ValueError(f"`warmup_fraction[{k!r}]` must be a number in [0, 1], got {v!r}")
    return checked


def resolve_device(device):
    """``None`` or ``"auto"``: CUDA when available (and compnet_ext was built with it), else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() and WITH_CUDA else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"`device` must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device` is {device!r} but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"`device` must be CPU or CUDA, got {device!r}")
    return dev


@contextlib.contextmanager
def cpu_threads(n):
    """Temporarily set torch's intra-op threads (None: leave as is).

    The fused engine's launches are long, so all cores pay off on a quiet machine; the
    step-by-step engine's launches are short, and when the cores are shared their OpenMP
    barriers stall: pass threads=1 there (docs/hyperparameters.md, "CPU threads").
    """
    if n is None:
        yield
        return
    check_setting("threads", n)
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass(frozen=True)
class Config:
    """One experiment's settings, checked (ValueError/TypeError naming the setting) and
    normalised when made: ``kinds`` in KINDS order, ``epochs`` a pair, ``lr_weights`` a dict
    over all kinds, ``device`` a resolved ``torch.device``.

    What is computed: ``kinds``; ``seeds`` networks of each (seed s starts from the same draw in
    every kind and on every target); ``points`` evenly spaced on ``domain`` (None, the default:
    the targets' own: a named target's, else [0, 1], :func:`compnet_ext.targets.domain_of`;
    another interval needs sign-0 targets, MATH.md section 7; checked for the ``dtype``,
    :func:`compnet_ext.checks.check_domain`); hidden ``width`` (None: the
    compositional encoding's, 4 for sign -1/+1 targets and 9 for sign 0, which every kind then
    gets: :func:`network_width`) and ``depth``; ``epochs`` (stage 1, stage 2): Adam steps,
    weight-only kinds train their sum; ``lr_peaks`` (stage 1) and ``lr_weights`` (a number or
    {kind: rate}); ``warmup_fraction``: linear warm-up of the weights' rate over this fraction of
    the kind's weight steps (a number in [0, 1] or {kind: fraction}; :data:`WARMUP_FRACTION`,
    :func:`compnet_ext.optim.warmup_lr`); ``peak_bounds``, stage 1's clamp of the peaks; the
    generator ``seed``; ``peak_range`` of the uniform starting peaks; ``dtype``; ``device``
    ("auto"/None, "cpu", "cuda[:i]").

    How often: ``draws`` independent repeats of the whole experiment (default 1), draw ``r``
    with master seed ``seed + r``, drawn exactly as a run with that ``seed`` draws: the rows of
    a run are ``draws x seeds``, row ``r * seeds + s`` being seed ``s`` of draw ``r``
    (:mod:`~compnet_ext.experiments.draws`).

    Which part of it: ``seed_block = (start, stop)`` trains only rows ``start .. stop - 1`` of
    the ``draws x seeds`` drawn (default: all), so an experiment splits into work units (targets
    x kinds x depth x seed block) whose results are the rows of the whole run.

    How it runs: ``fused`` (every stage of every kind as launches of the fused stages; False: the
    step-by-step engine, one launch and one Adam step per epoch, the reference); ``threads``
    (CPU intra-op threads while training, None: torch's; see :func:`cpu_threads`);
    ``keep_curves`` / ``keep_layers`` (keep per-step losses / the trained weights);
    ``progress`` (a progress bar on stderr).
    """
    kinds: tuple = KINDS
    seeds: int = 30
    points: int = 500
    width: int = None
    depth: int = 5
    epochs: tuple = (1000, 1000)
    lr_peaks: float = LR_PEAKS
    lr_weights: dict = field(default_factory=lambda: dict(LR_WEIGHTS))
    warmup_fraction: dict = field(default_factory=lambda: dict(WARMUP_FRACTION))
    peak_bounds: tuple = PEAK_CLAMP
    seed: int = 0
    peak_range: tuple = PEAK_RANGE
    dtype: torch.dtype = torch.float32
    device: torch.device = None
    seed_block: tuple = None
    fused: bool = True
    threads: int = None
    keep_curves: bool = True
    keep_layers: bool = False
    progress: bool = False
    domain: tuple = None
    draws: int = 1

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("kinds", check_kinds(self.kinds))
        for name in ("seeds", "points", "depth", "draws"):
            check_setting(name, getattr(self, name))
        if self.width is not None:
            check_setting("width", self.width)
        try:
            epochs = tuple(self.epochs)
        except TypeError:
            raise TypeError(f"`epochs` must be a pair (stage 1, stage 2), got {self.epochs!r}") from None
        if len(epochs) != 2:
            raise ValueError(f"`epochs` must be a pair (stage 1, stage 2), got {self.epochs!r}")
        for e in epochs:
            check_setting("epochs", e)
        set_("epochs", epochs)
        set_("lr_peaks", check_real("lr_peaks", self.lr_peaks, positive=True))
        set_("lr_weights", weight_lrs(self.lr_weights))
        set_("warmup_fraction", warmup_fractions(self.warmup_fraction))
        if self.width not in (None, 4, PAIR_WIDTH) and any(
                k in self.kinds for k in ("no_pretraining",) + STAGE1_KINDS):
            raise ValueError(f"`width` must be 4 for the compositional kinds (the encoding of "
                             f"MATH.md section 5 has 4 neurons per layer; {PAIR_WIDTH} for "
                             f"sign-0 targets), got {self.width}")
        check_setting("seed", self.seed)
        if self.seed + self.draws - 1 > SEED_MAX:
            raise ValueError(f"`draws` = {self.draws} from `seed` = {self.seed} would need master "
                             f"seeds past {SEED_MAX}")
        set_("peak_range", check_bounds("peak_range", self.peak_range))
        if self.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"`dtype` must be torch.float32 or torch.float64, got {self.dtype}")
        set_("peak_bounds", check_peak_bounds(self.peak_bounds, self.dtype))
        if self.domain is not None:
            set_("domain", check_domain(self.domain, self.dtype))
        if self.seed_block is not None:
            block = tuple(self.seed_block)
            if not (len(block) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                            for v in block)
                    and 0 <= block[0] < block[1] <= self.total_seeds):
                raise ValueError(f"`seed_block` must be (start, stop) with 0 <= start < stop <= "
                                 f"draws x seeds = {self.total_seeds}, got {self.seed_block!r}")
            set_("seed_block", block)
        if self.threads is not None:
            check_setting("threads", self.threads)
        set_("device", resolve_device(self.device))

    @property
    def total_seeds(self):
        """The rows of all draws: ``draws x seeds``."""
        return self.draws * self.seeds

    @property
    def rows(self):
        """The rows this configuration trains: ``range(start, stop)`` of its seed block."""
        return range(*(self.seed_block or (0, self.total_seeds)))

    def network_width(self, pair=False):
        """The hidden width of every kind: ``width``, or when None the compositional
        encoding's (4; ``pair``, sign-0 targets: :data:`~compnet_ext.nonconvex.PAIR_WIDTH`).
        ValueError naming `width` when the compositional kinds cannot have the width asked."""
        need = PAIR_WIDTH if pair else 4
        if self.width is None:
            return need
        if self.width != need and any(k in self.kinds for k in ("no_pretraining",) + STAGE1_KINDS):
            what = "sign-0 targets (the pair's encoding)" if pair else "sign -1/+1 targets"
            raise ValueError(f"`width` must be {need} for the compositional kinds on {what}, got "
                             f"{self.width} (leave it None for the encoding's width)")
        return self.width

    def weight_steps(self, kind):
        """Adam steps on the weights: both stages' epochs for the weight-only kinds."""
        return sum(self.epochs) if kind in WEIGHT_ONLY_KINDS else self.epochs[1]

    def warmup_steps(self, kind):
        """Steps of the kind's weights' warm-up: its fraction of :meth:`weight_steps`, rounded."""
        return round(self.warmup_fraction[kind] * self.weight_steps(kind))

    def replace(self, **changes):
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)
