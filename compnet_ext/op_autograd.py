"""Autograd pieces shared by both op families (:mod:`compnet_ext.ops`, :mod:`compnet_ext.mlp_ops`).

The fused kernels have no derivatives of their own. A first-order backward is a fused backward
launch (registered by each family); a backward that must itself be differentiable
(``create_graph=True``, which runs it with grad mode on) goes through the family's plain-PyTorch
reference instead (:func:`differentiable_vjp`). Ops whose outputs are gradients, losses or
trained parameters raise when differentiated (:func:`register_not_differentiable`), rather than
torch's default of a warning and silently missing terms.
"""
from typing import Sequence

import torch


def differentiable_vjp(f, inputs, need, grad_y):
    """Gradients of ``sum(grad_y * f(*inputs))`` w.r.t. the inputs flagged in ``need`` (None for
    the others), as autograd graphs: higher derivatives go through them."""
    wanted = [t for t, n in zip(inputs, need) if n]
    grads = iter(torch.autograd.grad(f(*inputs), wanted, grad_y, create_graph=True))
    return [next(grads) if n else None for n in need]


@torch.library.custom_op("compnet_ext::_not_differentiable", mutates_args=())
def _not_differentiable(grads: list[torch.Tensor], shape: Sequence[int], message: str
                        ) -> torch.Tensor:
    """Raises ``message``: the gradient of an op that has none. An op rather than a plain
    ``raise`` in the backward because torch.compile traces the backward ahead of time: the error
    must come when a backward runs, not when a function whose outputs require grad is compiled.
    It takes the incoming gradients so that the compiled graph cannot move it into the forward."""
    raise RuntimeError(message)


@_not_differentiable.register_fake
def _(grads, shape, message):
    return grads[0].new_empty(shape)


def register_not_differentiable(op, returns, instead):
    """Autograd for ``compnet_ext::op``, whose outputs (``returns``) come from a fused kernel
    without a derivative: differentiating through them raises, with ``instead`` saying what to
    do."""
    message = (f"compnet_ext::{op} is not differentiable: it returns {returns}, computed by a "
               f"fused kernel that has no derivative. {instead}. To use its results as "
               "constants, call it under torch.no_grad() or on detached tensors.")

    def setup_context(ctx, inputs, output):
        ctx.shapes = [t.shape if isinstance(t, torch.Tensor) else None for t in inputs]

    def backward(ctx, *grads):
        grads = [g for g in grads if g is not None]
        return tuple(_not_differentiable(grads, shape, message) if need else None
                     for shape, need in zip(ctx.shapes, ctx.needs_input_grad))

    torch.library.register_autograd(f"compnet_ext::{op}", backward, setup_context=setup_context)
