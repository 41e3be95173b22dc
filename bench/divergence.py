"""How far two correct builds of stage 1 drift apart, and why (docs/training.md, "Reproducible
across machines and builds").

Two copies of the same stage-1 runs, compared: max |difference| of the peaks and of the loss,
after 1, 2, 5, 10, 30 epochs on the tests' problems (float64, Adam, lr 0.01; free or smooth
scales), and after the 1,000 epochs of `compnet reproduce`'s stage 1 (depth 5, its starting
range, clamp and rate; float64 and the CLI's float32; not_enforced and enforced, with the loss's
min and mean over the 30 seeds). By default the second copy emulates another build on this one:
every starting peak (and free scale) moved one ulp up (torch.nextafter). Real builds compare
through files: ``--dump FILE`` saves this build's runs, ``--compare A B`` compares two dumps.

``--mechanism`` then measures what the explanation in docs/training.md rests on: how steep the
networks are (max |dy/dx|) with smooth and free scales; the same pair trained step by step
(``loss_and_grad`` + Adam written here) with one thing changed at a time (eps 1e-3, lr 1e-3, the
scales frozen); free scales started from the smooth ones, step by step (steepness, the deepest
scales, the divergence); and in float32 the share of first-epoch steps that a one-ulp change
flips.

    python bench/divergence.py                   # one ulp apart (~6 s on one core)
    python bench/divergence.py --mechanism       # + the mechanism's measurements (~4 s more)
    # the native build against the portable one (COMPNET_NATIVE=0, built in a copy of the repo):
    python bench/divergence.py --dump native.pt
    PYTHONPATH=/path/to/portable-copy python bench/divergence.py --dump portable.pt
    python bench/divergence.py --compare native.pt portable.pt
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


def runs(perturb=False):
    """``{key: train_peaks result}`` of every compared run; ``perturb``: starts one ulp up."""
    move = ulp_up if perturb else (lambda t: t)
    out = {}
    for S, D, N in SHAPES:
        for free in (True, False):
            x, y, p, s = problem(S, D, N, free, 37)
            for e in EPOCHS:
                out[(S, D, N, free, e)] = compnet_ext.train_peaks(x, y, move(p), move(s),
                                                                  epochs=e, lr=0.01)
    g = torch.Generator().manual_seed(5)
    lo, hi = PEAK_RANGE
    for dtype in (torch.float64, torch.float32):
        for name, (fn, sign) in select(PAPER_TARGETS).items():
            p = (torch.rand(30, 6, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(dtype)
            x = torch.linspace(0, 1, 500, dtype=dtype)
            for kind in ("not_enforced", "enforced"):
                s = compnet_ext.smooth_scales(p, sign).clone() if kind == "not_enforced" else None
                out[(str(dtype)[6:], name, kind)] = compnet_ext.train_peaks(
                    x, fn(x), move(p), move(s), sign, epochs=1000, lr=LR_PEAKS,
                    peak_bounds=PEAK_CLAMP)
    return out


def compare(a, b):
    diff = lambda k, i: (a[k][i] - b[k][i]).abs().max().item()
    print("max |difference| of peaks / loss after " + ", ".join(map(str, EPOCHS)) + " epochs "
          "(float64, lr 0.01)")
    for S, D, N in SHAPES:
        for free in (True, False):
            cells = "  ".join(f"{diff(k, 0):8.1e}/{diff(k, 2):8.1e}"
                              for k in ((S, D, N, free, e) for e in EPOCHS))
            print(f"S={S:3d} D={D:3d} N={N:4d} {'free  ' if free else 'smooth'} {cells}")
    print("\nStage 1 as `compnet reproduce` runs it (S=30, D=5, N=500, 1000 epochs): max |d peaks|;"
          " loss min a / b; loss mean a / b")
    for k in (k for k in a if isinstance(k[0], str)):
        la, lb = a[k][2], b[k][2]
        print(f"  {k[0]:7s} {k[1]:5s} {k[2]:12s} {diff(k, 0):8.1e}  {la.min():.4e} / "
              f"{lb.min():.4e}  {la.mean():.4e} / {lb.mean():.4e}")


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mechanism", action="store_true", help="also the mechanism's measurements")
    ap.add_argument("--dump", metavar="FILE", help="save this build's runs (no comparison)")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two --dump files")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.dump:
        torch.save(runs(), args.dump)
    elif args.compare:
        compare(*(torch.load(f) for f in args.compare))
    else:
        print("Starting points one ulp apart:")
        compare(runs(), runs(perturb=True))
    if args.mechanism:
        mechanism()


if __name__ == "__main__":
    main()
