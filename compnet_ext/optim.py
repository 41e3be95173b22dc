"""Adam on raw tensors whose first dimension is the seed, with a step counter per seed.

Same update as ``torch.optim.Adam`` (no weight decay, no amsgrad; tests check equality), but the
per-seed step count lets networks that started at different times share one batched optimiser
(:meth:`BatchedAdam.cat`): stage-2 networks join weight-only networks mid-run.
"""
import torch


class BatchedAdam:
    """Adam over tensors ``[S, ...]``; ``step(grads)`` updates them in place.

    ``lr``: a float, or a tensor ``[S]`` of per-seed learning rates (kinds with different rates
    share one batch).
    """

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8):
        self.params = list(params)
        S = self.params[0].shape[0]
        if isinstance(lr, torch.Tensor):
            if lr.shape != (S,) or not bool((lr > 0).all()):
                raise ValueError(f"`lr` tensor must be [S] = [{S}] positive, got {list(lr.shape)}")
            lr = lr.to(self.params[0].device, self.params[0].dtype)
        elif not lr > 0:
            raise ValueError(f"`lr` must be > 0, got {lr}")
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros(S, dtype=torch.float64, device=self.params[0].device)

    @torch.no_grad()
    def step(self, grads):
        b1, b2 = self.betas
        self.t += 1
        # Bias corrections in float64: 0.999**t is rounded badly in float32 at large t.
        c1 = (1 - b1**self.t).to(self.params[0].dtype)
        c2s = (1 - b2**self.t).sqrt().to(self.params[0].dtype)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            shape = (-1,) + (1,) * (p.dim() - 1)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / c2s.view(shape)).add_(self.eps)
            if isinstance(self.lr, torch.Tensor):
                p.addcdiv_(m * (self.lr / c1).view(shape), denom, value=-1)
            else:
                p.addcdiv_(m / c1.view(shape), denom, value=-self.lr)

    @staticmethod
    def cat(optimisers, params):
        """One optimiser over ``params`` = the optimisers' parameters concatenated along dim 0."""
        first = optimisers[0]
        lrs = [o.lr if isinstance(o.lr, torch.Tensor) else torch.full_like(o.t, o.lr)
               for o in optimisers]
        out = BatchedAdam(params, torch.cat([l.to(o.t) for l, o in zip(lrs, optimisers)]),
                          first.betas, first.eps)
        out.m = [torch.cat(ms) for ms in zip(*(o.m for o in optimisers))]
        out.v = [torch.cat(vs) for vs in zip(*(o.v for o in optimisers))]
        out.t = torch.cat([o.t for o in optimisers])
        return out
