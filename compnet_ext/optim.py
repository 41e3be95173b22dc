"""Adam on raw tensors whose first dimension is the seed, with a step counter per seed.

``torch.optim.Adam``'s formula (no weight decay, no amsgrad), computed exactly as the fused
training stages compute it (``cn::AdamStep`` in csrc/common/adam.h): the same single IEEE
operations in the same order, and the step-dependent scalars rounded once from float64. So the
step-by-step engine built on it gives bitwise the fused engine's result on any CPU.
``torch.optim.Adam`` itself agrees to rounding: its kernels fuse the lerp and addcmul on some
CPUs, and torch's CPU ``sqrt`` is not correctly rounded (a ``sqrt`` here is).

A linear warm-up (``warmup``) scales the rate of step t < warmup by t / warmup, as
``cn::scheduled_lr`` does (:func:`warmup_lr`).

The per-seed step count lets networks that started at different times share one batched
optimiser (:meth:`BatchedAdam.cat`): stage-2 networks join weight-only networks mid-run.
"""
import math

import numpy as np
import torch

from .checks import check_warmup


def ipow(b, t):
    """``b ** t`` by squaring, as ``cn::ipow`` (libm's and CUDA's ``pow`` may differ by an ulp)."""
    r = 1.0
    while t > 0:
        if t & 1:
            r *= b
        t >>= 1
        b *= b
    return r


def warmup_lr(lr, warmup, t):
    """The learning rate of Adam step ``t`` (1-based) under a linear warm-up of ``warmup`` steps:
    ``lr * (t / warmup)`` for ``t < warmup``, else ``lr`` -- the expression of
    ``cn::scheduled_lr``, one float64 division and multiplication, so the bits agree."""
    return lr * (float(t) / float(warmup)) if t < warmup else lr  # double(t) / double(W) in C++


def _sqrt(v):
    # torch's CPU sqrt is not correctly rounded (measured: 1 in 80 float64 values differ);
    # NumPy's and CUDA's are.
    if v.device.type == "cpu":
        return torch.from_numpy(np.sqrt(v.numpy()))
    return torch.sqrt(v)


class BatchedAdam:
    """Adam over tensors ``[S, ...]``; ``step(grads)`` updates them in place.

    ``lr``: a float, or a tensor ``[S]`` of per-seed learning rates (kinds with different rates
    share one batch). ``warmup``: steps of linear warm-up (:func:`warmup_lr`), an int or an
    int tensor ``[S]`` per seed; counted on each seed's own step count.

    ``capturable``: as ``torch.optim.Adam``'s, a :meth:`step` that never reads a value on the
    host, so that a training loop (``loss_and_grad`` + ``step``) can be captured in a CUDA graph
    and replayed (each replay takes the next step). The bias corrections are then computed on the
    device with ``torch.pow`` instead of :func:`ipow` on the host, so the result agrees with the
    default (and the fused stages) to rounding, not bitwise.
    """

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, warmup=0, *, capturable=False):
        self.params = list(params)
        S = self.params[0].shape[0]
        if isinstance(lr, torch.Tensor):
            if lr.shape != (S,) or not bool((lr > 0).all()):
                raise ValueError(f"`lr` tensor must be [S] = [{S}] positive, got {list(lr.shape)}")
            lr = lr.to(self.params[0].device, torch.float64)
        elif not lr > 0:
            raise ValueError(f"`lr` must be > 0, got {lr}")
        if isinstance(warmup, torch.Tensor):
            if (warmup.shape != (S,) or warmup.dtype.is_floating_point
                    or not bool((warmup >= 0).all())):
                raise ValueError(f"`warmup` tensor must be [S] = [{S}] non-negative integers, "
                                 f"got {warmup.dtype} {list(warmup.shape)}")
            warmup = warmup.to(self.params[0].device, torch.int64)
        else:
            warmup = torch.full((S,), check_warmup(warmup),
                                dtype=torch.int64, device=self.params[0].device)
        self.lr, self.betas, self.eps, self.warmup = lr, betas, eps, warmup
        self.capturable = capturable
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros(S, dtype=torch.int64, device=self.params[0].device)

    def _scalars(self):
        """Per-seed ``neg_step`` and ``sqrt(1 - beta2^t)`` ``[S]``, in the parameters' dtype."""
        b1, b2 = self.betas
        S, dev, dtype = self.t.shape[0], self.t.device, self.params[0].dtype
        if self.capturable:  # on the device, no host reads (class docstring)
            t = self.t.double()
            c1 = 1.0 - torch.pow(b1, t)
            c2s = _sqrt(1.0 - torch.pow(b2, t))
        else:
            c1 = torch.empty(S, dtype=torch.float64, device=dev)  # 1 - beta1^t
            c2s = torch.empty(S, dtype=torch.float64, device=dev)  # sqrt(1 - beta2^t)
            for t in self.t.unique().tolist():  # a few distinct step counts
                rows = self.t == t
                c1[rows] = 1.0 - ipow(b1, t)
                c2s[rows] = math.sqrt(1.0 - ipow(b2, t))
        lr = self.lr if isinstance(self.lr, torch.Tensor) else torch.full_like(c1, self.lr)
        # warmup_lr per seed: lr * (t / warmup) during the warm-up (IEEE float64 ops, as in C++);
        # lr itself after it (where() picks it: no multiplication by 1 needed, none done in C++).
        warming = self.t < self.warmup
        if self.capturable or bool(warming.any()):  # the check only saves work
            lr = torch.where(warming, lr * (self.t.double() / self.warmup.double()), lr)
        neg_step = -(lr / c1)  # float64, as -(lr / (1 - beta1^t)) in C++
        return neg_step.to(dtype), c2s.to(dtype)

    @torch.no_grad()
    def step(self, grads):
        b1, b2 = self.betas
        self.t += 1
        neg_step, c2s = self._scalars()
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            shape = (-1,) + (1,) * (p.dim() - 1)
            m.add_((g - m).mul_(1.0 - b1))              # m + (1 - b1) * (g - m)
            v.mul_(b2).add_(g.mul(1.0 - b2).mul_(g))    # v * b2 + ((1 - b2) * g) * g
            denom = _sqrt(v).div_(c2s.view(shape)).add_(self.eps)
            p.add_(m.mul(neg_step.view(shape)).div_(denom))

    @staticmethod
    def cat(optimisers, params):
        """One optimiser over ``params`` = the optimisers' parameters concatenated along dim 0."""
        first = optimisers[0]
        lrs = [o.lr if isinstance(o.lr, torch.Tensor)
               else torch.full(o.t.shape, o.lr, dtype=torch.float64, device=o.t.device)
               for o in optimisers]
        out = BatchedAdam(params, torch.cat(lrs), first.betas, first.eps,
                          torch.cat([o.warmup for o in optimisers]),
                          capturable=first.capturable)
        out.m = [torch.cat(ms) for ms in zip(*(o.m for o in optimisers))]
        out.v = [torch.cat(vs) for vs in zip(*(o.v for o in optimisers))]
        out.t = torch.cat([o.t for o in optimisers])
        return out
