import pytest
import torch

import compnet_ext
from compnet_ext.experiments.plots import matplotlib_missing

cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and compnet_ext.WITH_CUDA),
    reason="needs a GPU and compnet_ext built with CUDA",
)


def plot_files(*names):
    """The figures a run writes: ``names`` with matplotlib, none without it (the run then says
    the plots were skipped: tests/test_cli_outputs.py)."""
    return list(names) if matplotlib_missing() is None else []


def make_problem(S, D, N, dtype=torch.float64, free=False, shared_x=True, seed=0, device="cpu"):
    """Random peaks in (0.05, 0.95), points in [0, 1] (endpoints included), optional free scales."""
    g = torch.Generator().manual_seed(seed)
    peaks = torch.rand(S, D + 1, generator=g, dtype=torch.float64) * 0.9 + 0.05
    x = torch.rand(N if shared_x else (S, N), generator=g, dtype=torch.float64)
    if N >= 2:
        x.view(-1, N)[:, 0], x.view(-1, N)[:, -1] = 0.0, 1.0
    scales = (torch.rand(S, D, generator=g, dtype=torch.float64) - 0.2) * 0.5 if free else None
    cast = lambda t: None if t is None else t.to(device=device, dtype=dtype)
    return cast(x), cast(peaks), cast(scales)


class _TorchAdam:
    """torch.optim.Adam behind BatchedAdam's interface, ``step(grads)``."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8):
        self.params = params
        self.opt = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)

    def step(self, grads):
        for p, g in zip(self.params, grads):
            p.grad = g
        self.opt.step()


def make_adam(kind, params, lr, betas=(0.9, 0.999), eps=1e-8):
    """"ours": compnet_ext.optim.BatchedAdam (the fused stages' arithmetic); "torch"."""
    from compnet_ext.optim import BatchedAdam

    return (BatchedAdam if kind == "ours" else _TorchAdam)(list(params), lr, betas, eps)
