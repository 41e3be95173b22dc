"""The batched-MLP ops: functional wrappers, fake kernels and autograd around
``torch.ops.compnet_ext.mlp_{forward, backward, loss_and_grad, train}`` (each wrapper carries
its op's name). :class:`compnet_ext.nn.BatchedMLP` and :func:`compnet_ext.nn.train_mlp` are
the module-level face of these.

The C++ ops take the parameters packed per seed into one row ``params [S, P]`` (for each layer,
W [out, in] row-major then b [out]); the wrappers here pack a list of ``(W, b)`` and unpack the
gradients, so that autograd reaches the caller's tensors.
"""
import torch

from ._extension import mlp_forward_autograd as _mlp_forward_autograd
from .checks import (check_adam, check_layers, check_mlp_points, check_mlp_target, check_tensor,
                     check_warmup)
from .chunks import run_in_chunks
from .op_autograd import (below_autograd, differentiable_vjp, differentiated, plain_eager,
                          register_not_differentiable)
from .reference import matmul_forward

_ops = torch.ops.compnet_ext
_forward_op = _ops.mlp_forward.default
_loss_and_grad_op = _ops.mlp_loss_and_grad.default


def pack(layers):
    """``[(W, b), ...]`` -> ``params [S, P]`` (differentiable)."""
    return pack_tensors(_tensors(layers))


def pack_tensors(tensors):
    """``[W0, b0, W1, b1, ...]`` -> ``params [S, P]`` (differentiable)."""
    return torch.cat([t.flatten(1) for t in tensors], dim=1)


def unpack(params, widths):
    """``params [S, P]`` -> ``[(W [S, out, in], b [S, out]), ...]`` (views)."""
    S, sizes = params.shape[0], []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        sizes += [fan_out * fan_in, fan_out]
    parts = params.split(sizes, dim=1)  # one call for all views: this runs on every loss_and_grad
    return [(parts[2 * l].reshape(S, fan_out, fan_in), parts[2 * l + 1])
            for l, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:]))]


@torch.library.register_fake("compnet_ext::mlp_forward")
def _forward_fake(x, params, widths):
    return params.new_empty(params.shape[0], x.shape[-1])


@torch.library.register_fake("compnet_ext::mlp_backward")
def _backward_fake(grad_y, x, params, widths, need_x):
    gx = x.new_empty(x.shape) if need_x else x.new_empty(0)
    return gx, params.new_empty(params.shape)


@torch.library.register_fake("compnet_ext::mlp_loss_and_grad")
def _loss_and_grad_fake(x, target, params, widths):
    return params.new_empty(params.shape[0]), params.new_empty(params.shape)


@torch.library.register_fake("compnet_ext::mlp_train")
def _train_fake(x, target, params, widths, epochs, lr, beta1, beta2, eps, record_every,
                state=None, step=0, warmup=0):
    records = -(-epochs // record_every) if record_every > 0 else 0
    S, P = params.shape
    return (params.new_empty(params.shape), params.new_empty(S), params.new_empty(S, records),
            params.new_empty(S, 2, P))


def _setup_context(ctx, inputs, output):
    x, params, widths = inputs
    ctx.save_for_backward(x, params)
    ctx.widths = widths


def _backward(ctx, grad_y):
    x, params = ctx.saved_tensors
    need_x, need_params = ctx.needs_input_grad[:2]
    if torch.is_grad_enabled():  # create_graph=True: through the batched-matmul reference
        f = lambda x, params: matmul_forward(x, unpack(params, ctx.widths))
        return (*differentiable_vjp(f, (x, params), (need_x, need_params), grad_y), None)
    gx, gp = _ops.mlp_backward(grad_y, x, params, ctx.widths, need_x)
    return (gx if need_x else None), (gp if need_params else None), None


torch.library.register_autograd("compnet_ext::mlp_forward", _backward,
                                setup_context=_setup_context)


def _reference_vjp(grad_y, x, tensors, need_x, need):
    """The backward of :func:`mlp_forward` with create_graph=True (grad mode on), for the C++ node
    (csrc/mlp/autograd.cpp): through the batched-matmul reference in the caller's tensors, so
    that it is itself differentiable. ``[gx, dW0, db0, ...]``, None where not needed."""
    f = lambda x, *ts: matmul_forward(x, list(zip(ts[0::2], ts[1::2])))
    return list(differentiable_vjp(f, (x, *tensors), (need_x, *need), grad_y))


register_not_differentiable("mlp_backward", "gradients", "For higher-order gradients "
                             "differentiate BatchedMLP.forward (or mlp_forward) with "
                             "create_graph=True")
_refuse_loss_and_grad = register_not_differentiable(
    "mlp_loss_and_grad", "a loss and its gradients", "For a differentiable loss use "
    "BatchedMLP.forward (or mlp_forward) and a torch loss, e.g. ((mlp(x) - target) ** 2).mean(1)")
_refuse_train = register_not_differentiable(
    "mlp_train", "trained parameters", "To differentiate through training, unroll it with "
    "BatchedMLP.forward and an update in torch ops")


def _tensors(layers):
    return [t for layer in layers for t in layer]


def _needs_grad(x, tensors):
    """Whether autograd records a call on ``x`` and ``tensors``."""
    return torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in tensors))


def _check(x, layers, target=None):
    S, widths = check_layers(layers)
    check_tensor("x", x, layers[0][0], "layers[0][0]")
    check_mlp_points(x, S)
    if target is not None:
        check_mlp_target(target, x, S, layers[0][0], "layers[0][0]")
    return S, list(widths)


def mlp_forward(x, layers):
    """Fused forward of S batched ReLU MLPs: ``x [N] or [S, N]`` -> ``y [S, N]``.

    ``layers`` is a list of ``(W [S, out, in], b [S, out])`` (float32/float64, one device), as
    :meth:`compnet_ext.nn.BatchedMLP.layers` or :func:`compnet_ext.encode` return. Differentiable
    w.r.t. x and every W, b: first order by one fused pass that recomputes the activations per
    point; higher orders (``create_graph=True``) by the backward of the batched-matmul path
    (:func:`compnet_ext.reference.matmul_forward`), which is then used in its place. Forward
    mode and the differentiating torch.func transforms run that path itself
    (:func:`compnet_ext.forward` says which).
    """
    _, widths = _check(x, layers)
    tensors = _tensors(layers)
    if differentiated(x, *tensors):
        return matmul_forward(x, layers)
    if not plain_eager():
        return _forward_op(x, pack_tensors(tensors), widths)  # the registered autograd
    if _needs_grad(x, tensors):
        return _mlp_forward_autograd(x, widths, tensors)
    with below_autograd():
        return _forward_op(x, pack_tensors(tensors), widths)


def mlp_loss_and_grad(x, target, layers):
    """Per-seed MSE and all parameter gradients, forward and backward in one pass.

    Args:
        x: ``[N]`` or ``[S, N]`` points.
        target: ``[N]`` or ``[S, N]`` values to fit.
        layers: list of ``(W [S, out, in], b [S, out])``.

    Returns:
        ``(loss [S], grads)``: ``loss[s]`` is the mean of ``(y[s] - target)^2`` over the N points
        (0 when N = 0) and ``grads`` the list of ``(dW, db)`` of ``loss.sum()``, shaped like
        ``layers``. Not differentiable itself: a backward through them raises.
    """
    _, widths = _check(x, layers, target)
    tensors = _tensors(layers)
    _refuse_loss_and_grad(x, target, *tensors)
    if not plain_eager() or _needs_grad(x, (target, *tensors)):
        loss, gp = _loss_and_grad_op(x, target, pack_tensors(tensors), widths)  # raises on backward
    else:
        with below_autograd():
            loss, gp = _loss_and_grad_op(x, target, pack_tensors(tensors), widths)
    return loss, unpack(gp, widths)


def mlp_train(x, target, layers, *, epochs, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, record_every=0,
              warmup=0):
    """Stage 2 of the paper's method, fused: ``epochs`` Adam steps on all weights and biases.

    Every seed is trained independently (a CUDA warp or a CPU task owns a seed and keeps its
    parameters and gradient to itself). Each step is exactly :func:`mlp_loss_and_grad` followed
    by the Adam update of :class:`compnet_ext.optim.BatchedAdam` (``torch.optim.Adam``'s
    formula, no weight decay, fresh state) of all W and b. The epochs run as launches of about
    0.25 s each (:mod:`compnet_ext.chunks`: Ctrl-C is noticed promptly; same result).

    Args:
        x: ``[N]`` or ``[S, N]`` points.
        target: ``[N]`` or ``[S, N]`` values to fit.
        layers: list of ``(W [S, out, in], b [S, out])`` (not modified).
        epochs: number of Adam steps (>= 0).
        lr, betas, eps: Adam's hyper-parameters.
        record_every: record the loss before every k-th step (0: no curve).
        warmup: steps of linear learning-rate warm-up: step t < warmup (1-based) takes
            ``lr * t / warmup`` (:func:`compnet_ext.optim.warmup_lr`); 0 (default): none.

    Returns:
        ``(layers, loss [S], curve [S, ceil(epochs / k)])``: the trained ``(W, b)`` (new tensors,
        shaped like ``layers``), the loss at the trained parameters, and ``curve[:, r]``, the loss
        before step ``r * k``. Not differentiable: a backward through them raises.
    """
    _, widths = _check(x, layers, target)
    _refuse_train(x, target, *_tensors(layers))
    lr, beta1, beta2, eps = check_adam(epochs, lr, betas, eps, record_every)
    warmup = check_warmup(warmup)

    def launch(params, state, n, step):
        params, loss, curve, state = _ops.mlp_train(x, target, params, widths, n, lr, beta1,
                                                    beta2, eps, record_every, state, step, warmup)
        return params, loss, curve, state

    params = pack(layers)
    params, loss, curve, _ = run_in_chunks(launch, params, epochs, record_every,
                                           params.numel() * x.shape[-1], params.device)
    return unpack(params, widths), loss, curve
