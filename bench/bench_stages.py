"""Benchmark: fused training stage 2 (nn.train_mlp, all epochs in one launch) per epoch.

Compares, per Adam epoch on the same BatchedMLP (width 4, depth 5, N = 500): the fused stage
(``train_mlp``) against the step-by-step path (fused ``BatchedMLP.loss_and_grad`` + assigning
``.grad`` + ``torch.optim.Adam.step``), which is the same arithmetic with one launch and one
optimiser step per epoch. Medians over repeats, the two paths timed in alternation; JSON to
bench/results/stages-<device>-<date>.json.
``--quick`` runs a small, fast version.

``--stage1`` instead times the fused stage 1 alone (``compnet_ext.train_peaks``, smooth scales,
sign -1, target x^3) at ``--S`` seeds x depth ``--D`` x ``--N`` points for ``--epochs`` epochs:
one warm-up call of 2 epochs, then ``--repeats`` timed calls of the whole run (docs/gpu.md's
target: S = 1e5, D = 32, N = 500, 1000 epochs under 10 s on an H100). With ``--quick`` it runs
S = 64, D = 8, N = 128, 10 epochs on the CPU in a second.
"""
import argparse
import os
import statistics
import time

import torch

from compnet_ext.nn import BatchedMLP, train_mlp

from _common import add_device_args, devices, random_peaks, report_target, save_json  # noqa: E402 (bench/ is on sys.path when run as a script)


def _dtype_suffix(dtype):
    """float64 results go to their own file, beside the float32 ones of the same day."""
    return "" if dtype == "float32" else f"-{dtype}"


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


def run_stage1(device, S, D, N, epochs, repeats, dtype):
    """Seconds of one fused stage-1 run (median over repeats), after a 2-epoch warm-up."""
    import compnet_ext
    g = torch.Generator().manual_seed(0)
    peaks = random_peaks(S, D, g, device, dtype)
    x = torch.linspace(0, 1, N, dtype=dtype, device=device)
    target = x**3
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def call(n):
        return lambda: compnet_ext.train_peaks(x, target, peaks, sign=-1, epochs=n, lr=1e-3)
    call(2)()  # warm-up: module load, allocations
    sync()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        call(epochs)()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main_stage1(args):
    S = args.S or (64 if args.quick else 100_000)
    D = args.D or (8 if args.quick else 32)
    N = args.N or (128 if args.quick else 500)
    epochs = args.epochs or (10 if args.quick else 1000)
    repeats = args.repeats or (1 if args.quick else 3)
    dtype = getattr(torch, args.dtype)
    for device in devices(args.device):
        t = run_stage1(device, S, D, N, epochs, repeats, dtype)
        rate = S * D * N * epochs / t
        print(f"[{device}] stage 1 fused, S={S} D={D} N={N} epochs={epochs} {args.dtype}: "
              f"{t:.3f} s ({t / epochs * 1e3:.3f} ms/epoch, {rate:.3g} point-layer-epochs/s)",
              flush=True)
        targets = []
        if device == "cuda" and (S, D, N, epochs, args.dtype) == (100_000, 32, 500, 1000, "float32"):
            targets.append(report_target("issue 10: stage 1, 1e5 seeds x D=32 x 1000 epochs, s",
                                         t, 10.0))
            targets.append(report_target("issue 19: stage 1, 1e5 seeds x D=32 x 1000 epochs, s",
                                         t, 1.5))
        if not args.quick:
            save_json("stage1", device, {"S": S, "D": D, "N": N, "epochs": epochs,
                                         "dtype": args.dtype, "repeats": repeats,
                                         "targets": targets,
                                         "what": "fused train_peaks, whole run: seconds"},
                      [{"seconds": t, "point_layer_epochs_per_s": rate}], args.out,
                      suffix=_dtype_suffix(args.dtype))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few epochs and repeats")
    add_device_args(ap)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--stage1", action="store_true",
                    help="time the fused stage 1 (train_peaks) instead; sizes from --S --D --N")
    ap.add_argument("--S", type=int, default=None, help="--stage1: seeds (default 100000)")
    ap.add_argument("--D", type=int, default=None, help="--stage1: depth (default 32)")
    ap.add_argument("--N", type=int, default=None, help="--stage1: points (default 500)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="stage 2: seeds per row (default 30 1024, and 10000 on CUDA)")
    args = ap.parse_args(argv)
    if args.stage1:
        return main_stage1(args)
    epochs = args.epochs or (10 if args.quick else 50)
    repeats = args.repeats or (3 if args.quick else 7)
    widths, N = (1, 4, 4, 4, 4, 4, 1), 500
    dtype = getattr(torch, args.dtype)
    for device in devices(args.device):
        rows = []
        for S in args.sizes or ([30, 1024] + ([10_000] if device == "cuda" else [])):
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
                                                 "seconds per epoch"}, rows, args.out,
                      suffix=_dtype_suffix(args.dtype))


if __name__ == "__main__":
    main()
