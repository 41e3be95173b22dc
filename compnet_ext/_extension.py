"""Loads the compiled extension and checks that it matches the installed torch.

The bottom of the package: everything that talks to ``_C`` directly (its build flags and the
fused MLP kernels' limits) is read here, once."""
import torch

try:
    from . import _C  # registers torch.ops.compnet_ext.*
except ImportError as e:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        "compnet_ext: the compiled extension compnet_ext._C could not be loaded "
        f"({e}). Build it against the installed torch with "
        "`pip install --no-build-isolation .` (or `-e .`) from the source tree."
    ) from e

if _C.torch_version != torch.__version__:  # pragma: no cover
    raise ImportError(
        f"compnet_ext: the compiled extension was built against torch {_C.torch_version} but "
        f"torch {torch.__version__} is installed; rebuild with "
        "`pip install --no-build-isolation --force-reinstall --no-deps .`"
    )

WITH_CUDA = bool(_C.with_cuda)
"""Whether the installed build has the CUDA kernels."""
MLP_MAX_WIDTH = int(_C.mlp_max_width)
"""Widest hidden layer the fused MLP kernels take (C++ ``kMaxWidth``)."""
MLP_MAX_HIDDEN = int(_C.mlp_max_hidden)
"""Most hidden layers the fused MLP kernels take (C++ ``kMaxHidden``)."""
forward_autograd = _C.forward_autograd
"""``compnet_ext::forward`` with its autograd node in C++ (csrc/compnet/autograd.cpp): the eager
path of :func:`compnet_ext.forward` when a graph is recorded."""
mlp_forward_autograd = _C.mlp_forward_autograd
"""``compnet_ext::mlp_forward`` of ``[W0, b0, ...]`` with its autograd node in C++
(csrc/mlp/autograd.cpp): the eager path of :func:`compnet_ext.mlp_forward` when a graph is
recorded."""
