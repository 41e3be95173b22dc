"""Autograd pieces shared by both op families (:mod:`compnet_ext.ops`, :mod:`compnet_ext.mlp_ops`).

The fused kernels have no derivatives of their own. A first-order backward is a fused backward
launch (registered by each family); a backward that must itself be differentiable
(``create_graph=True``, which runs it with grad mode on) goes through the family's plain-PyTorch
reference instead (:func:`differentiable_vjp`). Ops whose outputs are gradients, losses or
trained parameters raise when differentiated (:func:`register_not_differentiable`), rather than
torch's default of a warning and silently missing terms.

Forward mode (``torch.autograd.forward_ad``, ``torch.func.jvp`` / ``jacfwd``) and the
differentiating ``torch.func`` transforms (``grad``, ``vjp``, ``jacrev``, ``hessian``) cannot go
through the registered autograd: ``torch.library.register_autograd`` has no forward-mode formula
(an op called on tensors with tangents returns an output without one, a silent zero derivative),
and the ``autograd.Function`` it generates has no ``setup_context``, which torch.func requires
(pytorch/pytorch#168393, #179652). So the public wrappers ask :func:`differentiated` first and
then compute differentiable ops by their reference (plain PyTorch, every transform works) and
refuse not-differentiable ones (:func:`register_not_differentiable`'s check). ``vmap`` alone
keeps the fused op (torch's per-sample fallback).
"""
from typing import Sequence

import torch
import torch.autograd.forward_ad as fwAD

_functorch = torch._C._functorch

# Dispatches below the Autograd key: the kernel without the registered autograd's Python layer
# (what torch.library's autograd does itself when no gradient is needed). The wrappers use it
# only where that layer has nothing to do, so results and errors are those of the registered op.
below_autograd = torch._C._AutoDispatchBelowAutograd


def plain_eager():
    """Neither traced by torch.compile nor under a torch.func transform. Only then do the
    wrappers take their fast paths (:data:`below_autograd`, their own ``autograd.Function``);
    otherwise the registered autograd, which those know how to handle, serves the call."""
    return not torch.compiler.is_compiling() and _functorch.peek_interpreter_stack() is None


def _wrappers(t):
    """``t`` and the tensors under its torch.func wrappers, outermost first; the last is plain."""
    yield t
    while _functorch.is_functorch_wrapped_tensor(t):
        t = _functorch.get_unwrapped(t)
        yield t


def _has_derivative(t):
    """A torch.func grad/jvp wrapper anywhere in ``t``'s chain of wrappers (even of a detached
    tensor: torch.func does not tell), or a forward-mode tangent on the tensor under them."""
    *wrappers, plain = _wrappers(t)
    return (any(map(_functorch.is_gradtrackingtensor, wrappers))
            or fwAD._current_level >= 0 and fwAD.unpack_dual(plain).tangent is not None)


def differentiated(*tensors):
    """True when one of ``tensors`` (None allowed) is being differentiated by forward-mode AD or
    a differentiating torch.func transform (module docstring). Ordinary reverse mode
    (``requires_grad``, ``torch.autograd.grad``) is not counted: the registered autograd serves
    it. Costs two global reads when no torch.func transform and no dual level is active.

    While torch.compile traces, only the dual level is seen (dynamo traces that global but not
    the wrapper queries): inside one every tensor counts, so forward mode is right compiled too;
    a compiled grad / jacrev then meets the registered autograd, which raises (pytorch#168393)."""
    if torch.compiler.is_compiling():
        return fwAD._current_level >= 0
    if fwAD._current_level < 0 and _functorch.peek_interpreter_stack() is None:
        return False
    return any(_has_derivative(t) for t in tensors if t is not None)


def unwrapped(t):
    """The plain tensor under torch.func's wrappers (all of its values, e.g. every sample of a
    vmap), for value checks that would otherwise be data-dependent control flow on a wrapper."""
    return None if t is None else list(_wrappers(t))[-1]


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
    do. Returns ``refuse(*tensors)``, which the op's wrapper calls with its tensor arguments:
    it raises the same error at once when one of them is differentiated in forward mode or by a
    torch.func transform (:func:`differentiated`), which the registered backward cannot see."""
    message = (f"compnet_ext::{op} is not differentiable: it returns {returns}, computed by a "
               f"fused kernel that has no derivative. {instead}. To use its results as "
               "constants, call it under torch.no_grad() or on detached tensors (outside "
               "torch.func transforms and forward-mode AD).")

    def setup_context(ctx, inputs, output):
        ctx.shapes = [t.shape if isinstance(t, torch.Tensor) else None for t in inputs]

    def backward(ctx, *grads):
        grads = [g for g in grads if g is not None]
        return tuple(_not_differentiable(grads, shape, message) if need else None
                     for shape, need in zip(ctx.shapes, ctx.needs_input_grad))

    torch.library.register_autograd(f"compnet_ext::{op}", backward, setup_context=setup_context)

    def refuse(*tensors):
        if differentiated(*tensors):
            raise RuntimeError(message)

    return refuse
