"""Two-stage training of many seeds of all five kinds (MATH.md section 6), batched: the public
API of :mod:`compnet_ext.experiments` (docs/training.md).

- :func:`compare`: final MSE per seed of every kind on one target; ``sign=0`` with a ``domain``
  fits a non-convex target as a difference of two compositional networks (MATH.md section 7),
  every kind with the same width-9 network, e.g. ``compare(lambda x: x**3 - x, sign=0,
  domain=(-1, 1))``;
- :func:`run`: the engine behind it and the ``compnet`` command, ``{target: {kind: KindResult}}``;
- :func:`run_sparse`: the later version's sparse-data test (10 training, 10 test points);
- :class:`Config`: an experiment's settings (``run(targets, Config(...))`` or keywords);
- :data:`KINDS`, :data:`LR_PEAKS`, :data:`LR_WEIGHTS`, :data:`WARMUP_FRACTION`, :data:`PEAK_CLAMP`,
  :data:`PEAK_RANGE`: the defaults (docs/hyperparameters.md).

The stages themselves are :func:`compnet_ext.experiments.stages.train_peaks` and
:func:`~compnet_ext.experiments.stages.train_mlp` (fused or step by step).
"""
import warnings

from .experiments import stages
from .experiments.config import (KINDS, LR_PEAKS, LR_WEIGHTS, PEAK_CLAMP, STAGE1_KINDS,
                                 WARMUP_FRACTION, WEIGHT_ONLY_KINDS, Config)
from .experiments.engine import KindResult, compare, run
from .experiments.sparse import SparseResult, run as run_sparse, sparse_points
from .init import PEAK_RANGE
from .ops import PEAK_BOUNDS

__all__ = ["compare", "run", "run_sparse", "sparse_points", "SparseResult", "Config",
           "KindResult", "KINDS", "WEIGHT_ONLY_KINDS", "STAGE1_KINDS", "LR_PEAKS", "LR_WEIGHTS",
           "WARMUP_FRACTION", "PEAK_CLAMP", "PEAK_RANGE"]


def _deprecated(old, new):
    warnings.warn(f"compnet_ext.train.{old} is deprecated and will be removed in the next "
                  f"release; use {new}", DeprecationWarning, stacklevel=3)


def train_peaks(x, target, peaks, scales, sign, epochs, lr=LR_PEAKS, *, eps=PEAK_BOUNDS[0],
                progress=None, fused=True):
    """Deprecated: :func:`compnet_ext.experiments.stages.train_peaks` (the layout of
    :func:`compnet_ext.train_peaks`). Returns ``(peaks, scales, losses [epochs, S])``."""
    _deprecated("train_peaks", "compnet_ext.experiments.stages.train_peaks (record_every=1; its "
                "curve is [S, epochs], the transpose of these losses)")
    p, s, _, curve = stages.train_peaks(x, target, peaks, scales, sign, epochs=epochs, lr=lr,
                                        peak_bounds=(eps, 1 - eps), record_every=1, fused=fused,
                                        progress=progress)
    return p, s, curve.t()


def train_weights(mlp, x, target, epochs, lr=LR_WEIGHTS["enforced"], *, opt=None, progress=None):
    """Deprecated: :func:`compnet_ext.experiments.stages.train_mlp` with ``fused=False`` (the
    layout of :func:`compnet_ext.nn.train_mlp`). Returns ``losses [epochs, S]``."""
    _deprecated("train_weights", "compnet_ext.experiments.stages.train_mlp (record_every=1; its "
                "curve is [S, epochs], the transpose of these losses)")
    _, curve = stages.train_mlp(mlp, x, target, epochs=epochs, lr=lr, record_every=1,
                                fused=False, opt=opt, progress=progress)
    return curve.t()


def __getattr__(name):
    if name == "PEAK_EPS":
        _deprecated("PEAK_EPS", "compnet_ext.ops.PEAK_BOUNDS, the one stage-1 clamp")
        return PEAK_BOUNDS[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
