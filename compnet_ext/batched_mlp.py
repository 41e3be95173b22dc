"""S independent scalar-input, scalar-output ReLU MLPs with batched weights (:class:`BatchedMLP`)
and their fused stage-2 training (:func:`train_mlp`); public as :mod:`compnet_ext.nn`."""
import math

import torch

from . import mlp_ops
from ._extension import WITH_CUDA
from .checks import (check_choice, check_int, check_layers, check_mlp_points, check_mlp_target,
                     check_tensor, check_widths)
from .reference import matmul_forward


class BatchedMLP(torch.nn.Module):
    """S independent ReLU MLPs ``R -> R`` with layer widths ``widths`` (first and last 1).

    Parameters are ``weights[l]`` of shape ``[S, out, in]`` and ``biases[l]`` of shape
    ``[S, out]`` (real :class:`torch.nn.Parameter`, so any optimiser works). ReLU follows every
    layer but the last.

    Args:
        S: number of independent networks (seeds).
        widths: layer widths, e.g. ``(1, 4, 4, 4, 4, 4, 1)``; hidden widths in [1, MAX_WIDTH],
            at most MAX_HIDDEN hidden layers (:mod:`compnet_ext.nn`: the fused kernels' limits).
        init: ``"default"``: PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
            weights and biases; ``"zeros"``: all zero (to be filled by the caller).
        generator: optional :class:`torch.Generator` for the initialisation.
        dtype, device: of the parameters (default float32, CPU).
    """

    def __init__(self, S, widths=(1, 4, 4, 4, 4, 4, 1), init="default", generator=None, *,
                 dtype=None, device=None):
        super().__init__()
        check_int("S", S, 0, wrong_type=ValueError)
        widths = check_widths(widths)
        check_choice("init", init, ("default", "zeros"))
        dtype = dtype or torch.get_default_dtype()
        self.S, self.widths = S, widths
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            W = torch.zeros(S, fan_out, fan_in, dtype=dtype, device=device)
            b = torch.zeros(S, fan_out, dtype=dtype, device=device)
            if init == "default":
                bound = 1 / math.sqrt(fan_in)
                W.uniform_(-bound, bound, generator=generator)
                b.uniform_(-bound, bound, generator=generator)
            self.weights.append(torch.nn.Parameter(W))
            self.biases.append(torch.nn.Parameter(b))

    @classmethod
    def from_layers(cls, layers):
        """Builds the MLP from ``[(W [S, out, in], b [S, out]), ...]`` (e.g. :func:`compnet_ext.encode`).

        The tensors are copied; dtype and device are kept.
        """
        S, widths = check_layers(layers)
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
            if not isinstance(m, torch.nn.Sequential):
                raise TypeError(f"`models[{i}]` must be a torch.nn.Sequential, got {type(m).__name__}")
            mods = list(m)
            lin = mods[0::2]
            if not all(isinstance(x, torch.nn.Linear) for x in lin) or not all(
                    isinstance(x, torch.nn.ReLU) for x in mods[1::2]) or len(mods) % 2 == 0:
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
        # ParameterList keeps its Parameters in `_parameters` in index order; reading them there
        # skips its per-item __getitem__ (about a microsecond each, on every call). Something
        # else stored in a list (ParameterList takes any object) is not there: index then.
        W, b = self.weights._parameters, self.biases._parameters
        if len(W) == len(self.weights) and len(b) == len(self.biases):
            return list(zip(W.values(), b.values()))
        return list(zip(self.weights, self.biases))

    def to_sequential(self, i):
        """A plain ``nn.Sequential`` of nn.Linear / nn.ReLU computing seed ``i`` (weights copied)."""
        if isinstance(i, bool) or not isinstance(i, int) or not -self.S <= i < self.S:
            raise IndexError(f"`i` must be an int seed index in [0, {self.S}), got {i!r}")
        mods = []
        for l, (W, b) in enumerate(self.layers()):
            lin = torch.nn.Linear(W.shape[2], W.shape[1], dtype=W.dtype, device=W.device)
            with torch.no_grad():
                lin.weight.copy_(W[i])
                lin.bias.copy_(b[i])
            mods.append(lin)
            if l + 1 < len(self.weights):
                mods.append(torch.nn.ReLU())
        return torch.nn.Sequential(*mods)

    def forward(self, x, *, fused=None):
        """Outputs ``[S, N]`` at points ``x`` of shape ``[N]`` (shared) or ``[S, N]``.

        ``fused``: use the fused CPU/CUDA kernel (default when available); ``False`` runs the
        plain batched-matmul path (torch.baddbmm), the reference the tests compare to.
        """
        check_tensor("x", x, self.weights[0], "weights[0]")
        if fused is None:
            fused = _fused_available(x.device)
        if torch.jit.is_tracing():
            # torch.jit.trace makes sizes traced tensors: the Python shape checks would only be
            # frozen into the trace (with TracerWarnings), so the op checks x itself and the
            # widths come from self.widths (ints).
            if fused:
                return torch.ops.compnet_ext.mlp_forward(x, mlp_ops.pack(self.layers()),
                                                         list(self.widths))
            return matmul_forward(x, self.layers())
        check_mlp_points(x, self.S)
        if fused:
            return mlp_ops.mlp_forward(x, self.layers())
        return matmul_forward(x, self.layers())

    def loss_and_grad(self, x, target, *, fused=None):
        """Per-seed MSE ``[S]`` and the gradients of its sum, without touching ``.grad``.

        Returns ``(loss [S], [(dW [S, out, in], db [S, out]), ...])``, detached (constants: for
        a differentiable loss use ``self(x)`` and a torch loss). ``fused`` (default when
        available) runs forward and backward in one kernel launch; ``False`` uses autograd over
        the batched-matmul path.
        """
        check_tensor("x", x, self.weights[0], "weights[0]")
        check_mlp_points(x, self.S)
        if fused is None:
            fused = _fused_available(x.device)
        if fused:
            # detached as on the fused=False path; no_grad also skips the Python autograd
            # bookkeeping that an op with requires-grad inputs costs per call
            with torch.no_grad():
                return mlp_ops.mlp_loss_and_grad(x, target, self.layers())
        check_mlp_target(target, x, self.S, self.weights[0], "weights[0]")
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


def train_mlp(mlp, x, target, *, epochs, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, record_every=0,
              warmup=0):
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
        warmup: steps of linear learning-rate warm-up (:func:`compnet_ext.optim.warmup_lr`).

    Returns:
        ``(loss [S], curve [S, ceil(epochs / k)])``: the loss at the trained parameters and
        ``curve[:, r]``, the loss before step ``r * k`` (constants, without autograd history).
    """
    if not isinstance(mlp, BatchedMLP):
        raise TypeError(f"`mlp` must be a compnet_ext.nn.BatchedMLP, got {type(mlp).__name__}")
    check_tensor("x", x, mlp.weights[0], "weights[0]")
    check_mlp_points(x, mlp.S)
    with torch.no_grad():  # the results are constants (detached, as loss_and_grad's)
        layers, loss, curve = mlp_ops.mlp_train(x, target, mlp.layers(), epochs=epochs, lr=lr,
                                                betas=betas, eps=eps, record_every=record_every,
                                                warmup=warmup)
        for (W, b), (W_new, b_new) in zip(mlp.layers(), layers):
            W.copy_(W_new)
            b.copy_(b_new)
    return loss, curve


def _fused_available(device):
    return device.type == "cpu" or (device.type == "cuda" and WITH_CUDA)
