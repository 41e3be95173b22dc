"""compnet_ext: fused CPU/CUDA kernels for compositional ReLU networks.

Milkert, Hyde & Laine, "Compelling ReLU Networks to Exhibit Exponentially Many Linear Regions at
Initialization and During Training" (arXiv 2311.18022, ICML 2025). See MATH.md for the contract.
"""
from . import reference
from ._extension import WITH_CUDA
from . import nn
from .breakpoints import CountLimitError, breakpoints, count_pieces
from .network import encode
from .ops import forward, loss_and_grad, smooth_scales, train_peaks

__version__ = "0.1.0"
__all__ = ["forward", "loss_and_grad", "smooth_scales", "train_peaks", "encode", "nn",
           "breakpoints", "count_pieces", "CountLimitError", "reference", "WITH_CUDA"]
