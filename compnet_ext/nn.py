"""Modules of compnet_ext (the public namespace; the code lives in the modules named below).

- :class:`CompositionalActivation`: a learned per-feature activation ``[..., F] -> [..., F]``,
  each feature its own compositional function, in two stages (peaks, then ReLU weights);
  :func:`clamp_peaks_` keeps every such layer of a model valid after an optimiser step
  (:mod:`compnet_ext.activation`).
- :class:`BatchedMLP`: S independent scalar ReLU MLPs with batched weights, fused kernels
  (:mod:`compnet_ext.batched_mlp`); :func:`train_mlp` trains one in place (stage 2, fused).
- :func:`matmul_forward`: the plain batched-matmul forward of such layers, the reference the
  fused path is tested against (:mod:`compnet_ext.reference`).
- :data:`MAX_WIDTH`, :data:`MAX_HIDDEN`: the fused MLP kernels' limits, read from the compiled
  extension.

This module is ``compnet_ext.nn``, not ``torch.nn``; its classes are ``torch.nn.Module``
subclasses, usable in any torch model.
"""
from .activation import CompositionalActivation, clamp_peaks_
from .batched_mlp import BatchedMLP, train_mlp
from .checks import MAX_HIDDEN, MAX_WIDTH
from .reference import matmul_forward

__all__ = ["CompositionalActivation", "clamp_peaks_", "BatchedMLP", "train_mlp",
           "matmul_forward", "MAX_WIDTH", "MAX_HIDDEN"]
