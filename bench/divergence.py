"""How far two correct builds of stage 1 drift apart, and why (docs/training.md, "Reproducible
across machines and builds").

A second build is emulated on one machine: every starting peak (and free scale) moved by one ulp
(torch.nextafter), the size of the rounding differences a build with FMA or another summation
order makes. Both copies are trained with the fused ``compnet_ext.train_peaks`` (float64, Adam,
lr 0.01) and compared after each epoch count: max |difference| of peaks and of the loss.

``--mechanism`` then trains the same pair step by step (``loss_and_grad`` + an update written
here) with the update changed one thing at a time: Adam as the library runs it, Adam with a large
eps (its step no longer normalised for small gradients), plain gradient descent, and Adam with
the scales frozen. Whichever removes the growth is the amplifier. It also prints, for Adam at a
chosen epoch, the gradient components whose relative difference between the two copies is
largest, beside |g| / (sqrt(v) + eps).

    python bench/divergence.py                 # the growth table (~10 s on one core)
    python bench/divergence.py --mechanism     # + the controlled runs (~20 s)
"""
import argparse
import math

import torch

import compnet_ext

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
    """``epochs`` steps of loss_and_grad + ``update``; returns the parameters and, per step,
    (grads, Adam's second moment) for inspection."""
    params = [p.clone()] + ([s.clone()] if s is not None else [])
    state = [dict(m=torch.zeros_like(q), v=torch.zeros_like(q)) for q in params]
    seen = []
    for t in range(1, epochs + 1):
        loss, gp, gs = compnet_ext.loss_and_grad(x, y, params[0], params[1] if s is not None
                                                 else None, -1)
        grads = [gp] + ([torch.zeros_like(gs) if freeze_scales else gs] if s is not None else [])
        for q, g, st in zip(params, grads, state):
            update(q, g, st, t)
        params[0].clamp_(1e-4, 1 - 1e-4)
        seen.append((grads, [st["v"].clone() for st in state]))
    return params, seen


def adam(lr=0.01, eps=1e-8, b1=0.9, b2=0.999):
    def update(q, g, st, t):
        st["m"].mul_(b1).add_(g, alpha=1 - b1)
        st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
        vhat = st["v"] / (1 - b2**t)
        q.sub_(lr * (st["m"] / (1 - b1**t)) / (vhat.sqrt() + eps))
    return update


def descent(lr):
    def update(q, g, st, t):
        q.sub_(lr * g)
    return update


def mechanism(S, D, N, seed=37, epochs=30, inspect=3):
    x, y, p, s = problem(S, D, N, True, seed)
    # Plain descent's rate: the size of Adam's first step, lr 0.01, on the median component.
    g0 = torch.cat([t.abs().flatten() for t in compnet_ext.loss_and_grad(x, y, p, s, -1)[1:]])
    lr_gd = 0.01 / g0[g0 > 0].median().item()
    runs = {"Adam (the library's)": (adam(), False),
            "Adam, eps 1e-3": (adam(eps=1e-3), False),
            f"gradient descent, lr {lr_gd:.2g}": (descent(lr_gd), False),
            "Adam, scales frozen": (adam(), True)}
    print(f"\nS={S} D={D} N={N}, free scales, {epochs} epochs: max |difference| of peaks, scales")
    for name, (upd, frozen) in runs.items():
        a, seen_a = step_by_step(x, y, p, s, epochs, upd, frozen)
        b, seen_b = step_by_step(x, y, ulp_up(p), ulp_up(s), epochs, upd, frozen)
        print(f"  {name:34s} {(a[0] - b[0]).abs().max().item():9.2e} "
              f"{(a[1] - b[1]).abs().max().item():9.2e}")
        if name.startswith("Adam (the"):
            adam_seen = seen_a, seen_b
    (ga, va), (gb, _) = adam_seen[0][inspect - 1], adam_seen[1][inspect - 1]
    print(f"Adam, step {inspect}: the 6 gradient components with the largest relative difference")
    print("  param  seed  index  |g|        |dg|/|g|   |g|/(sqrt(v)+eps)")
    cand = []
    for name, g, h, v in zip(("peaks", "scales"), ga, gb, va):
        rel = (g - h).abs() / g.abs().clamp_min(1e-300)
        for idx in rel.flatten().argsort(descending=True)[:6].tolist():
            i, j = divmod(idx, g.shape[1])
            vhat = v[i, j] / (1 - 0.999**inspect)
            cand.append((rel[i, j].item(), name, i, j, g[i, j].abs().item(),
                         (g[i, j].abs() / (vhat.sqrt() + 1e-8)).item()))
    for r, name, i, j, mag, ratio in sorted(cand, reverse=True)[:6]:
        print(f"  {name:6s} {i:5d} {j:5d}  {mag:9.2e}  {r:9.2e}  {ratio:9.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mechanism", action="store_true", help="also the controlled runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("max |difference| of peaks / loss after 1, 2, 5, 10, 30 epochs (fp64, lr 0.01), "
          "starting points one ulp apart")
    for S, D, N in SHAPES:
        for free in (True, False):
            cells = "  ".join(f"{dp:8.1e}/{dl:8.1e}" for dp, dl in growth(S, D, N, free))
            print(f"S={S:3d} D={D:3d} N={N:4d} {'free  ' if free else 'smooth'} {cells}")
    if args.mechanism:
        mechanism(37, 16, 500)


if __name__ == "__main__":
    main()
