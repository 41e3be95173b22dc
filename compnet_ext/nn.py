"""S independent scalar-input, scalar-output ReLU MLPs with batched weights."""
import math

import torch
from torch import nn

from .ops import _check_tensor

MAX_WIDTH = 16
"""Widest hidden layer supported by the fused kernels."""
MAX_HIDDEN = 64
"""Most hidden layers supported by the fused kernels."""


def _check_widths(widths):
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


def _check_like(name, t, ref, ref_name):
    """A float tensor with the dtype and device of ``ref`` (if given)."""
    _check_tensor(name, t)
    if ref is not None and t.dtype != ref.dtype:
        raise TypeError(f"`{name}` has dtype {t.dtype} but `{ref_name}` has {ref.dtype}")
    if ref is not None and t.device != ref.device:
        raise ValueError(f"`{name}` is on {t.device} but `{ref_name}` is on {ref.device}")


def _check_layers(layers):
    """Validates a list of (W [S, out, in], b [S, out]); returns (S, widths)."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError("`layers` must be a non-empty list of (W [S, out, in], b [S, out]) pairs")
    ref = None
    widths = [1]
    for i, pair in enumerate(layers):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"`layers[{i}]` must be a pair (W, b)")
        W, b = pair
        _check_like(f"layers[{i}][0]", W, ref, "layers[0][0]")
        ref = W if ref is None else ref
        _check_like(f"layers[{i}][1]", b, ref, "layers[0][0]")
        S = ref.shape[0]
        if W.dim() != 3 or W.shape[0] != S or W.shape[2] != widths[-1]:
            raise ValueError(f"`layers[{i}][0]` must be [S, out, in] = [{S}, out, {widths[-1]}], "
                             f"got {list(W.shape)}")
        if tuple(b.shape) != (S, W.shape[1]):
            raise ValueError(f"`layers[{i}][1]` must be [S, out] = [{S}, {W.shape[1]}], "
                             f"got {list(b.shape)}")
        widths.append(W.shape[1])
    return ref.shape[0], _check_widths(widths)


class BatchedMLP(nn.Module):
    """S independent ReLU MLPs ``R -> R`` with layer widths ``widths`` (first and last 1).

    Parameters are ``weights[l]`` of shape ``[S, out, in]`` and ``biases[l]`` of shape
    ``[S, out]`` (real :class:`torch.nn.Parameter`, so any optimiser works). ReLU follows every
    layer but the last.

    Args:
        S: number of independent networks (seeds).
        widths: layer widths, e.g. ``(1, 4, 4, 4, 4, 4, 1)``; hidden widths in [1, 16], at most
            64 hidden layers.
        init: ``"default"``: PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
            weights and biases; ``"zeros"``: all zero (to be filled by the caller).
        generator: optional :class:`torch.Generator` for the initialisation.
        dtype, device: of the parameters (default float32, CPU).
    """

    def __init__(self, S, widths=(1, 4, 4, 4, 4, 4, 1), init="default", generator=None, *,
                 dtype=None, device=None):
        super().__init__()
        if isinstance(S, bool) or not isinstance(S, int) or S < 0:
            raise ValueError(f"`S` must be a non-negative int, got {S!r}")
        widths = _check_widths(widths)
        if init not in ("default", "zeros"):
            raise ValueError(f"`init` must be 'default' or 'zeros', got {init!r}")
        dtype = dtype or torch.get_default_dtype()
        self.S, self.widths = S, widths
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            W = torch.zeros(S, fan_out, fan_in, dtype=dtype, device=device)
            b = torch.zeros(S, fan_out, dtype=dtype, device=device)
            if init == "default":
                bound = 1 / math.sqrt(fan_in)
                W.uniform_(-bound, bound, generator=generator)
                b.uniform_(-bound, bound, generator=generator)
            self.weights.append(nn.Parameter(W))
            self.biases.append(nn.Parameter(b))

    @classmethod
    def from_layers(cls, layers):
        """Builds the MLP from ``[(W [S, out, in], b [S, out]), ...]`` (e.g. :func:`compnet_ext.encode`).

        The tensors are copied; dtype and device are kept.
        """
        S, widths = _check_layers(layers)
        W0 = layers[0][0]
        mlp = cls(S, widths, init="zeros", dtype=W0.dtype, device=W0.device)
        with torch.no_grad():
            for l, (W, b) in enumerate(layers):
                mlp.weights[l].copy_(W)
                mlp.biases[l].copy_(b)
        return mlp

    @classmethod
    def from_sequentials(cls, models):
        """Builds the MLP from a list of S ``nn.Sequential`` of nn.Linear / nn.ReLU (same shapes)."""
        if not isinstance(models, (list, tuple)) or not models:
            raise TypeError("`models` must be a non-empty list of torch.nn.Sequential")
        per_seed = []
        for i, m in enumerate(models):
            if not isinstance(m, nn.Sequential):
                raise TypeError(f"`models[{i}]` must be a torch.nn.Sequential, got {type(m).__name__}")
            mods = list(m)
            lin = mods[0::2]
            if not all(isinstance(x, nn.Linear) for x in lin) or not all(
                    isinstance(x, nn.ReLU) for x in mods[1::2]) or len(mods) % 2 == 0:
                raise ValueError(f"`models[{i}]` must alternate nn.Linear and nn.ReLU, starting and "
                                 "ending with nn.Linear")
            if any(x.bias is None for x in lin):
                raise ValueError(f"`models[{i}]` has an nn.Linear without bias")
            per_seed.append([(x.weight.detach(), x.bias.detach()) for x in lin])
        if len({len(p) for p in per_seed}) != 1:
            raise ValueError("`models` must all have the same number of layers")
        layers = []
        for l in range(len(per_seed[0])):
            shapes = {tuple(p[l][0].shape) for p in per_seed}
            if len(shapes) != 1:
                raise ValueError(f"`models` disagree on the shape of layer {l}: {sorted(shapes)}")
            layers.append((torch.stack([p[l][0] for p in per_seed]),
                           torch.stack([p[l][1] for p in per_seed])))
        return cls.from_layers(layers)

    def layers(self):
        """The list of ``(W [S, out, in], b [S, out])`` (the Parameters themselves, not copies)."""
        return list(zip(self.weights, self.biases))

    def to_sequential(self, i):
        """A plain ``nn.Sequential`` of nn.Linear / nn.ReLU computing seed ``i`` (weights copied)."""
        if isinstance(i, bool) or not isinstance(i, int) or not -self.S <= i < self.S:
            raise IndexError(f"`i` must be an int seed index in [0, {self.S}), got {i!r}")
        mods = []
        for l, (W, b) in enumerate(self.layers()):
            lin = nn.Linear(W.shape[2], W.shape[1], dtype=W.dtype, device=W.device)
            with torch.no_grad():
                lin.weight.copy_(W[i])
                lin.bias.copy_(b[i])
            mods.append(lin)
            if l + 1 < len(self.weights):
                mods.append(nn.ReLU())
        return nn.Sequential(*mods)

    def forward(self, x, *, fused=None):
        """Outputs ``[S, N]`` at points ``x`` of shape ``[N]`` (shared) or ``[S, N]``.

        ``fused``: use the fused CPU/CUDA kernel (default when available); ``False`` runs the
        plain batched-matmul path (torch.baddbmm), the reference the tests compare to.
        """
        _check_like("x", x, self.weights[0], "weights[0]")
        if fused is None:
            fused = _fused_available(x.device)
        from .mlp_ops import mlp_forward, pack
        if torch.jit.is_tracing():
            # torch.jit.trace makes sizes traced tensors: the Python shape checks would only be
            # frozen into the trace (with TracerWarnings), so the op checks x itself and the
            # widths come from self.widths (ints).
            if fused:
                return torch.ops.compnet_ext.mlp_forward(x, pack(self.layers()), list(self.widths))
            return matmul_forward(x, self.layers())
        _check_points_mlp(x, self.S)
        if fused:
            return mlp_forward(x, self.layers())
        return matmul_forward(x, self.layers())

    def loss_and_grad(self, x, target, *, fused=None):
        """Per-seed MSE ``[S]`` and the gradients of its sum, without touching ``.grad``.

        Returns ``(loss [S], [(dW [S, out, in], db [S, out]), ...])``, detached (constants: for
        a differentiable loss use ``self(x)`` and a torch loss). ``fused`` (default when
        available) runs forward and backward in one kernel launch; ``False`` uses autograd over
        the batched-matmul path.
        """
        _check_like("x", x, self.weights[0], "weights[0]")
        _check_points_mlp(x, self.S)
        if fused is None:
            fused = _fused_available(x.device)
        if fused:
            from .mlp_ops import mlp_loss_and_grad
            # detached as on the fused=False path; no_grad also skips the ~0.1 ms of Python
            # autograd bookkeeping that an op with requires-grad inputs costs per call
            with torch.no_grad():
                return mlp_loss_and_grad(x, target, self.layers())
        _check_target_mlp(target, x, self.S, self.weights[0], "weights[0]")
        params = [t.detach().requires_grad_(True) for t in self.parameters()]
        layers = list(zip(params[: len(self.weights)], params[len(self.weights):]))
        with torch.enable_grad():
            y = matmul_forward(x, layers)
            loss = ((y - target) ** 2).mean(dim=1) if x.shape[-1] else y.new_zeros(self.S)
            grads = torch.autograd.grad(loss.sum(), params, allow_unused=True)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]
        return loss.detach(), list(zip(grads[: len(self.weights)], grads[len(self.weights):]))

    def extra_repr(self):
        return f"S={self.S}, widths={self.widths}"


def train_mlp(mlp, x, target, *, epochs, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, record_every=0):
    """Trains ``mlp`` (a :class:`BatchedMLP`) in place: ``epochs`` fused Adam steps.

    Stage 2 of the paper's method: all weights and biases of the S networks train freely on the
    per-seed MSE. Each step equals :meth:`BatchedMLP.loss_and_grad` (fused) followed by the
    update of :class:`compnet_ext.optim.BatchedAdam` (``torch.optim.Adam``'s formula, fresh
    optimiser state), bitwise; ``.grad`` is not touched. The epochs run as launches of about
    0.25 s each, so Ctrl-C raises KeyboardInterrupt promptly (:mod:`compnet_ext.chunks`).

    Args:
        mlp: the networks; their parameters are overwritten (under ``torch.no_grad``).
        x: ``[N]`` or ``[S, N]`` points.
        target: ``[N]`` or ``[S, N]`` values to fit.
        epochs: number of Adam steps (>= 0).
        lr, betas, eps: Adam's hyper-parameters.
        record_every: record the loss before every k-th step (0: no curve).

    Returns:
        ``(loss [S], curve [S, ceil(epochs / k)])``: the loss at the trained parameters and
        ``curve[:, r]``, the loss before step ``r * k``.
    """
    from .mlp_ops import mlp_train

    if not isinstance(mlp, BatchedMLP):
        raise TypeError(f"`mlp` must be a compnet_ext.nn.BatchedMLP, got {type(mlp).__name__}")
    _check_like("x", x, mlp.weights[0], "weights[0]")
    _check_points_mlp(x, mlp.S)
    layers, loss, curve = mlp_train(x, target, mlp.layers(), epochs=epochs, lr=lr, betas=betas,
                                    eps=eps, record_every=record_every)
    with torch.no_grad():
        for (W, b), (W_new, b_new) in zip(mlp.layers(), layers):
            W.copy_(W_new)
            b.copy_(b_new)
    return loss, curve


def _check_points_mlp(x, S):
    if not ((x.dim() == 1) or (x.dim() == 2 and x.shape[0] == S)):
        raise ValueError(f"`x` has shape {list(x.shape)}, expected [N] or [S, N] with S = {S}")


def _check_target_mlp(target, x, S, ref, ref_name):
    """``target`` is ``[N]`` or ``[S, N]`` like ``x``, with the dtype and device of ``ref``."""
    _check_like("target", target, ref, ref_name)
    if not (target.dim() in (1, 2) and target.shape[-1] == x.shape[-1]
            and (target.dim() == 1 or target.shape[0] == S)):
        raise ValueError(f"`target` has shape {list(target.shape)}, expected [N] or [S, N] "
                         f"with S = {S}, N = {x.shape[-1]}")


def _fused_available(device):
    from ._extension import WITH_CUDA

    return device.type == "cpu" or (device.type == "cuda" and WITH_CUDA)


def matmul_forward(x, layers):
    """Plain batched-matmul forward of ``layers`` at ``x [N] or [S, N]`` -> ``[S, N]``."""
    S = layers[0][0].shape[0]
    h = x.expand(S, -1).unsqueeze(-1)  # [S, N, 1] (-1, not x.shape[-1]: jit.trace keeps any rank)
    last = len(layers) - 1
    for l, (W, b) in enumerate(layers):
        h = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))  # [S, N, out]
        if l < last:
            h = torch.relu(h)
    return h.squeeze(-1)
