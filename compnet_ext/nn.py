"""Modules of compnet_ext (the public namespace; the code lives in the modules named below).

- :class:`BatchedMLP`: S independent scalar ReLU MLPs with batched weights, fused kernels
  (:mod:`compnet_ext.batched_mlp`); :func:`train_mlp` trains one in place (stage 2, fused).
- :func:`matmul_forward`: the plain batched-matmul forward of such layers, the reference the
  fused path is tested against (:mod:`compnet_ext.reference`).
- :data:`MAX_WIDTH`, :data:`MAX_HIDDEN`: the fused MLP kernels' limits, read from the compiled
  extension.

This module is ``compnet_ext.nn``, not ``torch.nn``; it does not import torch.nn.
"""
from .batched_mlp import BatchedMLP, train_mlp
from .checks import MAX_HIDDEN, MAX_WIDTH
from .reference import matmul_forward

__all__ = ["BatchedMLP", "train_mlp", "matmul_forward", "MAX_WIDTH", "MAX_HIDDEN"]
