"""Benchmark: fused training stage 2 (nn.train_mlp, all epochs in one launch) per epoch.

Compares, per Adam epoch on the same BatchedMLP (width 4, depth 5, N = 500): the fused stage
(``train_mlp``) against the step-by-step path (fused ``BatchedMLP.loss_and_grad`` + assigning
``.grad`` + ``torch.optim.Adam.step``), which is the same arithmetic with one launch and one
optimiser step per epoch. Medians over repeats, the two paths timed in alternation; JSON to
bench/results/stages-<device>-<date>.json.
``--quick`` runs a small, fast version.
"""
import argparse
import os
import statistics
import time

import torch

from compnet_ext.nn import BatchedMLP, train_mlp

from _common import add_device_args, devices, save_json  # noqa: E402 (bench/ is on sys.path when run as a script)


def _time_interleaved(fns, repeats, sync):
    """Median seconds of each function, timed in alternation so that the load of a shared machine
    weighs on all of them alike."""
    for fn in fns.values():
        fn()
    sync()
    ts = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            sync()
            ts[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in ts.items()}


def run(device, S, N, widths, epochs, repeats, dtype):
    """Seconds per epoch of each path (median over repeats of an `epochs`-epoch run)."""
    g = torch.Generator().manual_seed(0)
    init = BatchedMLP(S, widths, generator=g, dtype=dtype).to(device)
    x = torch.rand(N, dtype=dtype, device=device)
    t = (x**3).expand(S, N).contiguous()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def fused():
        m = BatchedMLP.from_layers(init.layers())
        train_mlp(m, x, t, epochs=epochs, lr=1e-3)

    def step_by_step():
        m = BatchedMLP.from_layers(init.layers())
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        params = list(m.parameters())
        for _ in range(epochs):
            _, grads = m.loss_and_grad(x, t, fused=True)
            for p, gp in zip(params, [W for W, _ in grads] + [b for _, b in grads]):
                p.grad = gp
            opt.step()

    med = _time_interleaved({"fused_train_mlp": fused, "step_by_step_adam": step_by_step},
                            repeats, sync)
    return {k: v / epochs for k, v in med.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few epochs and repeats")
    add_device_args(ap)
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args(argv)
    sizes = [30, 1024]
    epochs = args.epochs or (10 if args.quick else 50)
    repeats = args.repeats or (3 if args.quick else 7)
    widths, N = (1, 4, 4, 4, 4, 4, 1), 500
    dtype = getattr(torch, args.dtype)
    for device in devices(args.device):
        rows = []
        for S in sizes:
            r = run(device, S, N, widths, epochs, repeats, dtype)
            ratio = r["step_by_step_adam"] / r["fused_train_mlp"]
            rows.append({"S": S, "seconds_per_epoch": r, "fused_speedup": ratio})
            print(f"[{device}] stage 2, S={S:5d}: " + "  ".join(
                f"{k}={v * 1e3:8.3f}ms/epoch" for k, v in r.items()) + f"  (fused x{ratio:.2f})",
                flush=True)
        if not args.quick:  # a smoke test does not replace the recorded results
            save_json("stages", device, {"widths": widths, "N": N, "dtype": args.dtype,
                                         "epochs": epochs, "repeats": repeats,
                                         "load_average": os.getloadavg(),
                                         "what": "stage 2 (BatchedMLP, Adam on all weights): "
                                                 "seconds per epoch"}, rows)


if __name__ == "__main__":
    main()
