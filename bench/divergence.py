"""How far two correct builds of stage 1 drift apart, and why (docs/training.md, "Reproducible
across machines and builds").

A second build is emulated on one machine: every starting peak (and free scale) moved by one ulp
(torch.nextafter), the size of the rounding differences a build with FMA or another summation
order makes. Both copies are trained with the fused ``compnet_ext.train_peaks`` (float64, Adam,
lr 0.01) and compared after each epoch count: max |difference| of peaks and of the loss.

``--mechanism`` then measures what the explanation in docs/training.md rests on: how steep the
networks are (max |dy/dx|) with smooth and free scales; the same pair trained step by step
(``loss_and_grad`` + Adam written here) with one thing changed at a time (eps 1e-3, lr 1e-3, the
scales frozen); free scales started from the smooth ones, step by step (steepness, the deepest
scales, the divergence); and in float32 the share of first-epoch steps that a one-ulp change
flips.

    python bench/divergence.py                 # the growth table (~10 s on one core)
    python bench/divergence.py --mechanism     # + the mechanism's measurements (~30 s)
    python bench/divergence.py --paper         # + stage 1 as `compnet reproduce` runs it
"""
import argparse
import math

import torch

import compnet_ext
from compnet_ext.experiments.config import LR_PEAKS, PEAK_CLAMP
from compnet_ext.init import PEAK_RANGE
from compnet_ext.targets import PAPER_TARGETS, select

EPOCHS = (1, 2, 5, 10, 30)
SHAPES = ((37, 16, 500), (2, 40, 100), (37, 5, 500))


def problem(S, D, N, free, seed):
    """tests/conftest.py's make_problem: peaks in (0.05, 0.95), free scales in (-0.1, 0.4) (or
    smooth), points in [0, 1]; target x^3."""
    g = torch.Generator().manual_seed(seed)
    peaks = torch.rand(S, D + 1, generator=g, dtype=torch.float64) * 0.9 + 0.05
    x = torch.rand(N, generator=g, dtype=torch.float64)
    x[0], x[-1] = 0.0, 1.0
    scales = (torch.rand(S, D, generator=g, dtype=torch.float64) - 0.2) * 0.5 if free else None
    return x, x**3, peaks, scales


def ulp_up(t):
    return None if t is None else torch.nextafter(t, torch.full_like(t, math.inf))


def growth(S, D, N, free, seed=37):
    x, y, p, s = problem(S, D, N, free, seed)
    rows = []
    for e in EPOCHS:
        a = compnet_ext.train_peaks(x, y, p, s, epochs=e, lr=0.01)
        b = compnet_ext.train_peaks(x, y, ulp_up(p), ulp_up(s), epochs=e, lr=0.01)
        rows.append(((a[0] - b[0]).abs().max().item(), (a[2] - b[2]).abs().max().item()))
    return rows


def step_by_step(x, y, p, s, epochs, update, freeze_scales=False):
    """``epochs`` steps of loss_and_grad + ``update`` (+ the peaks' clamp); the parameters."""
    params = [p.clone()] + ([s.clone()] if s is not None else [])
    state = [dict(m=torch.zeros_like(q), v=torch.zeros_like(q)) for q in params]
    for t in range(1, epochs + 1):
        _, gp, gs = compnet_ext.loss_and_grad(x, y, params[0], params[1] if s is not None
                                              else None, -1)
        grads = [gp] + ([torch.zeros_like(gs) if freeze_scales else gs] if s is not None else [])
        for q, g, st in zip(params, grads, state):
            update(q, g, st, t)
        params[0].clamp_(1e-4, 1 - 1e-4)
    return params


def adam(lr=0.01, eps=1e-8, b1=0.9, b2=0.999):
    def update(q, g, st, t):
        st["m"].mul_(b1).add_(g, alpha=1 - b1)
        st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
        vhat = st["v"] / (1 - b2**t)
        q.sub_(lr * (st["m"] / (1 - b1**t)) / (vhat.sqrt() + eps))
    return update


def steepness(x, p, s):
    """Per seed, max over the points of |dy/dx|."""
    xs = x.expand(p.shape[0], -1).clone().requires_grad_()
    compnet_ext.forward(xs, p, s, -1).sum().backward()
    return xs.grad.abs().max(1).values


def divergence(x, y, p, s, epochs, update, frozen=False):
    a = step_by_step(x, y, p, s, epochs, update, frozen)
    b = step_by_step(x, y, ulp_up(p), ulp_up(s), epochs, update, frozen)
    return [(u - v).abs().max().item() for u, v in zip(a, b)]


def mechanism(S=37, D=16, N=500, seed=37):
    x, y, p, s = problem(S, D, N, True, seed)
    smooth = compnet_ext.smooth_scales(p, -1)
    print(f"\nS={S} D={D} N={N}. Median over seeds of max |dy/dx|: smooth scales "
          f"{steepness(x, p, smooth).median():.3g}, the random free scales "
          f"{steepness(x, p, s).median():.3g}")
    print("Random free start, 30 epochs, one ulp apart: max |difference| of peaks, scales")
    for name, upd, frozen in (("Adam (the library's: lr 1e-2, eps 1e-8)", adam(), False),
                              ("Adam, eps 1e-3", adam(eps=1e-3), False),
                              ("Adam, lr 1e-3", adam(lr=1e-3), False),
                              ("Adam, scales frozen (peaks only)", adam(), True)):
        dp, ds = divergence(x, y, p, s, 30, upd, frozen)
        print(f"  {name:42s} {dp:9.2e} {ds:9.2e}")
    print("Free scales started smooth (Adam): median max |dy/dx|, median |s_i| of the deepest "
          "4 layers, max |difference| of peaks one ulp apart")
    for k in (0, 1, 2, 5, 10):
        q = step_by_step(x, y, p, smooth, k, adam())
        print(f"  after {k:2d} steps: {steepness(x, *q).median():9.3g}  "
              f"{q[1][:, -4:].abs().median():9.2e}  {divergence(x, y, p, smooth, k, adam())[0]:9.2e}")
    x32, y32, p32, s32 = (t.float() for t in (x, y, p, s))
    a = compnet_ext.train_peaks(x32, y32, p32, s32, epochs=1, lr=0.01)
    b = compnet_ext.train_peaks(x32, y32, ulp_up(p32), ulp_up(s32), epochs=1, lr=0.01)
    g = compnet_ext.loss_and_grad(x32, y32, p32, s32, -1)[1]
    moved = (a[0] - b[0]).abs() > 1e-5
    print(f"float32, random free start, one epoch, one ulp apart: {moved.float().mean():.1%} of the "
          f"peaks differ by > 1e-5 (max {(a[0] - b[0]).abs().max():.3g}); their first gradients "
          f"|g| range {g[moved].abs().min():.2g} to {g[moved].abs().max():.2g}")


def paper_setting(S=30, D=5, N=500, epochs=1000, seed=5):
    """Stage 1 as `compnet reproduce` runs it (depth 5, starting peaks in PEAK_RANGE, the
    PEAK_CLAMP clamp, lr LR_PEAKS, N points evenly spaced; not_enforced: free scales starting at
    the smooth ones; enforced: smooth), float32 (the CLI's) and float64, two copies one ulp
    apart: max |difference| of the peaks, and the stage-1 loss's min and mean over the seeds."""
    print(f"\nStage 1 in the paper's setting (S={S}, D={D}, N={N}, {epochs} epochs), one ulp "
          "apart: max |d peaks|; loss min a / b; loss mean a / b")
    g = torch.Generator().manual_seed(seed)
    lo, hi = PEAK_RANGE
    for dtype in (torch.float64, torch.float32):
        for name, (fn, sign) in select(PAPER_TARGETS).items():
            p = (torch.rand(S, D + 1, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(dtype)
            x = torch.linspace(0, 1, N, dtype=dtype)
            for kind in ("not_enforced", "enforced"):
                s = compnet_ext.smooth_scales(p, sign).clone() if kind == "not_enforced" else None
                run = lambda p, s: compnet_ext.train_peaks(x, fn(x), p, s, sign, epochs=epochs,
                                                           lr=LR_PEAKS, peak_bounds=PEAK_CLAMP)
                a, b = run(p, s), run(ulp_up(p), ulp_up(s))
                print(f"  {str(dtype)[6:]:7s} {name:5s} {kind:12s} {(a[0] - b[0]).abs().max():8.1e}"
                      f"  {a[2].min():.4e} / {b[2].min():.4e}  {a[2].mean():.4e} / {b[2].mean():.4e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mechanism", action="store_true", help="also the mechanism's measurements")
    ap.add_argument("--paper", action="store_true",
                    help="also stage 1 in `compnet reproduce`'s setting (~1 min)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("max |difference| of peaks / loss after 1, 2, 5, 10, 30 epochs (fp64, lr 0.01), "
          "starting points one ulp apart")
    for S, D, N in SHAPES:
        for free in (True, False):
            cells = "  ".join(f"{dp:8.1e}/{dl:8.1e}" for dp, dl in growth(S, D, N, free))
            print(f"S={S:3d} D={D:3d} N={N:4d} {'free  ' if free else 'smooth'} {cells}")
    if args.mechanism:
        mechanism()
    if args.paper:
        paper_setting()


if __name__ == "__main__":
    main()
