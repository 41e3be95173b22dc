"""Stage 1 of the paper's method on the fused op: fit x^3 by training only the triangle peaks.

30 seeds of a depth-5 compositional network (smooth scales derived from the peaks, so the output
stays differentiable in the infinite-depth limit) are trained together with Adam; every step is
one fused forward+backward launch over all seeds (compnet_ext.loss_and_grad).

    python examples/fit_cubic.py [--seeds 30] [--depth 5] [--epochs 1000] [--lr 0.01]
"""
import argparse
import time

import torch

import compnet_ext


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=0.01)
    args = ap.parse_args()

    gen = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 1, 500)
    target = x**3
    peaks = torch.rand(args.seeds, args.depth + 1, generator=gen) * 0.6 + 0.2
    compnet_ext.loss_and_grad(x, target, peaks)  # validates the inputs once
    start_loss = compnet_ext.loss_and_grad(x, target, peaks)[0]
    peaks = torch.nn.Parameter(peaks)
    opt = torch.optim.Adam([peaks], lr=args.lr)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        loss, peaks.grad, _ = compnet_ext.loss_and_grad(x, target, peaks.detach(), validate=False)
        opt.step()
        with torch.no_grad():  # keep the peaks inside the open interval (0, 1)
            peaks.clamp_(1e-4, 1 - 1e-4)
    loss = compnet_ext.loss_and_grad(x, target, peaks.detach())[0]
    dt = time.perf_counter() - t0
    print(f"fit x^3, {args.seeds} seeds, depth {args.depth}, {args.epochs} Adam steps "
          f"(lr {args.lr}) in {dt:.2f} s")
    print(f"MSE before: min {start_loss.min():.3e}  mean {start_loss.mean():.3e}")
    print(f"MSE after:  min {loss.min():.3e}  mean {loss.mean():.3e}")


if __name__ == "__main__":
    main()
