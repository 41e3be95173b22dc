"""Benchmark: batched narrow MLPs, forward + backward (width 4, depth 5, N = 500).

Compares, from the same run: the fused kernel (BatchedMLP.loss_and_grad and autograd through the
fused forward), the plain batched-matmul path (autograd), and torch.func vmap over S
nn.Sequential models (stack_module_state + functional_call). Medians over repeats; JSON to
bench/results/mlp-<device>-<date>.json. ``--quick`` runs a small, fast version.
"""
import argparse
import statistics
import time

import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from compnet_ext.nn import BatchedMLP

from _common import add_device_args, devices, save_json  # noqa: E402 (bench/ is on sys.path when run as a script)


def _time(fn, repeats, sync):
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def run(device, S, N, widths, repeats, dtype):
    g = torch.Generator().manual_seed(0)
    m = BatchedMLP(S, widths, generator=g, dtype=dtype).to(device)
    x = torch.rand(N, dtype=dtype, device=device)
    t = (x**3).expand(S, N).contiguous()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def autograd_step(fused):
        def f():
            for p in m.parameters():
                p.grad = None
            loss = ((m(x, fused=fused) - t) ** 2).mean(dim=1).sum()
            loss.backward()
        return f

    def fused_loss_and_grad():
        m.loss_and_grad(x, t, fused=True)

    seqs = [m.to_sequential(i) for i in range(S)]
    params, buffers = stack_module_state(seqs)
    base = seqs[0].to("meta")

    def loss_one(p, b, tt):
        y = functional_call(base, (p, b), (x[:, None],))[:, 0]
        return ((y - tt) ** 2).mean()

    vgrad = vmap(grad(loss_one), in_dims=(0, 0, 0))

    def vmap_step():
        vgrad(params, buffers, t)

    out = {
        "fused_loss_and_grad": _time(fused_loss_and_grad, repeats, sync),
        "fused_autograd": _time(autograd_step(True), repeats, sync),
        "matmul_autograd": _time(autograd_step(False), repeats, sync),
        "vmap_sequential": _time(vmap_step, repeats, sync),
    }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small S and few repeats")
    add_device_args(ap)
    args = ap.parse_args(argv)
    sizes = [30, 1024] if args.quick else [30, 1024, 16384]
    repeats = args.repeats or (3 if args.quick else 7)
    widths, N = (1, 4, 4, 4, 4, 4, 1), 500
    dtype = getattr(torch, args.dtype)
    for device in devices(args.device):
        rows = []
        for S in sizes:
            r = run(device, S, N, widths, repeats, dtype)
            base = r["matmul_autograd"]
            rows.append({"S": S, "seconds": r,
                         "speedup_vs_matmul": {k: base / v for k, v in r.items()}})
            print(f"[{device}] S={S:6d} " + "  ".join(
                f"{k}={v * 1e3:8.2f}ms (x{base / v:5.1f})" for k, v in r.items()), flush=True)
        if not args.quick:  # a smoke test does not replace the recorded results
            save_json("mlp", device, {"widths": widths, "N": N, "dtype": args.dtype,
                                      "repeats": repeats,
                                      "what": "forward+backward of the per-seed MSE"}, rows,
                      args.out)


if __name__ == "__main__":
    main()
