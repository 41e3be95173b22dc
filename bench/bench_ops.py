"""Fused compnet_ext ops vs the pure-PyTorch reference (eager, torch.compile, CUDA graphs).

Times forward, forward+backward (autograd, gradients w.r.t. the peaks), loss_and_grad and one
epoch of stage 1 (the fused train_peaks vs loss_and_grad + torch.optim.Adam per step), prints a
table with medians and speed-ups measured in the same run, the achieved fraction of the device's
floating-point peak, and writes JSON to bench/results/.

    python bench/bench_ops.py                      # the issues' headline configurations
    python bench/bench_ops.py --grid               # S in {30,1024,16384} x D in {5,16,32}, fp32+fp64
    python bench/bench_ops.py --S 30 1024 --D 5 16 --N 500 --dtype float32 float64
    python bench/bench_ops.py --quick              # a few seconds, for a smoke test
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch

import compnet_ext
from compnet_ext import reference

from _common import report_target  # noqa: E402 (bench/ is on sys.path when run as a script)

OPS = ("forward", "forward+backward", "loss_and_grad", "stage1/epoch")


def stage_epochs(S, D, N):
    """Epochs per timed call of stage 1 (reported per epoch): 20, fewer for big problems so that
    the step-by-step reference stays within a few seconds per call."""
    return max(2, min(20, 10**7 // (S * D * N)))

# Floating-point operations per point and layer in the fused kernels (an FMA counts 2), read off
# compnet_math.h: forward = triangle step (compare, 1 - u, multiply, 2 FMAs: 6) + output FMA (2);
# the backward recomputes the forward and adds the reverse step (dT/da: 4, dT/du, lambda FMA +
# multiply: 3, two products: 3, two accumulations: 2 = 12).
FLOPS_PER_POINT_LAYER = {"forward": 8, "forward+backward": 8 + 8 + 12, "loss_and_grad": 8 + 12,
                         "stage1/epoch": 8 + 12}


def timeit(fn, device, repeats, min_time=0.2):
    """Median seconds per call; repeats until `repeats` samples and `min_time` seconds."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    sync()
    samples, start = [], time.perf_counter()
    while len(samples) < repeats or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t)
        if len(samples) >= 10 * repeats:
            break
    return statistics.median(samples)


def stage1_step_by_step(lag, peaks, epochs):
    """The step-by-step stage 1: one loss_and_grad and one torch.optim.Adam step per epoch."""
    p = torch.nn.Parameter(peaks.clone())
    opt = torch.optim.Adam([p], lr=1e-3)

    def run():
        for _ in range(epochs):
            p.grad = lag(p.detach())[1]
            opt.step()
            with torch.no_grad():
                p.clamp_(1e-4, 1 - 1e-4)
    return run


def cuda_graphed(fn):
    """Replays `fn` (static inputs) from a CUDA graph: the reference without launch overhead."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def make_calls(impl, x, peaks, target, epochs, sign=-1):
    """The ops for one implementation: fused, reference eager / compiled / CUDA-graphed."""
    if impl == "fused":
        fwd = lambda p: compnet_ext.forward(x, p, sign=sign, validate=False)
        lag = lambda p: compnet_ext.loss_and_grad(x, target, p, sign=sign, validate=False)
        stage = lambda: compnet_ext.train_peaks(x, target, peaks, sign=sign, epochs=epochs,
                                                lr=1e-3, validate=False)
    else:
        fwd = lambda p: reference.forward(x, p, None, sign)
        lag = lambda p: reference.loss_and_grad(x, target, p, None, sign)
        if impl == "compiled":
            fwd, lag = torch.compile(fwd), torch.compile(lag)
        stage = stage1_step_by_step(lag, peaks, epochs)
    p = peaks.clone().requires_grad_()

    def fwd_bwd():
        p.grad = None
        fwd(p).sum().backward()

    def fwd_only():
        with torch.no_grad():
            fwd(peaks)

    calls = {"forward": fwd_only, "forward+backward": fwd_bwd,
             "loss_and_grad": lambda: lag(peaks), "stage1/epoch": stage}
    if impl == "graphed":
        calls = {op: (cuda_graphed(f) if op != "stage1/epoch" else None) for op, f in calls.items()}
    return calls


def run(args):
    rows = []
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    for device in devices:
        impls = ["fused", "eager"] + ([] if args.no_compile else ["compiled"])
        impls += ["graphed"] if device == "cuda" else []
        peak = device_peak_flops(device)
        for dtype_name in args.dtype:
            dtype = getattr(torch, dtype_name)
            for S in args.S:
                for D in args.D:
                    for N in args.N:
                        g = torch.Generator().manual_seed(0)
                        peaks = (torch.rand(S, D + 1, generator=g) * 0.6 + 0.2).to(device, dtype)
                        x = torch.linspace(0, 1, N).to(device, dtype)
                        target = x**3
                        times = {}
                        for impl in impls:
                            try:
                                calls = make_calls(impl, x, peaks, target, stage_epochs(S, D, N))
                            except Exception as e:  # e.g. a reference that cannot be graphed
                                print(f"# {impl}: unavailable ({type(e).__name__}: {e})")
                                continue
                            for op in OPS:
                                if calls[op] is not None:
                                    t = timeit(calls[op], device, args.repeats)
                                    per = stage_epochs(S, D, N) if op == "stage1/epoch" else 1
                                    times[(impl, op)] = t / per
                        for op in OPS:
                            row = dict(device=device, dtype=dtype_name, S=S, D=D, N=N, op=op)
                            for impl in impls:
                                if (impl, op) in times:
                                    row[f"{impl}_ms"] = times[(impl, op)] * 1e3
                            fused = times[("fused", op)]
                            for impl in impls[1:]:
                                if (impl, op) in times:
                                    row[f"speedup_vs_{impl}"] = times[(impl, op)] / fused
                            flops = FLOPS_PER_POINT_LAYER[op] * S * N * D
                            row["gflops"] = flops / fused / 1e9
                            row["peak_fraction"] = flops / fused / peak if peak else None
                            rows.append(row)
                            print(format_row(row), flush=True)
    return rows


HEADER = ("| device | dtype | S | D | N | op | fused ms | eager ms | compiled ms | graphed ms "
          "| vs eager | vs compiled | vs graphed | GFLOP/s | of peak |")


def format_row(r):
    ms = lambda k: f"{r[k]:.4g}" if k in r else "-"
    vs = lambda k: f"{r[k]:.1f}x" if k in r else "-"
    frac = f"{100 * r['peak_fraction']:.1f}%" if r.get("peak_fraction") else "-"
    return (f"| {r['device']} | {r['dtype']} | {r['S']} | {r['D']} | {r['N']} | {r['op']} | "
            f"{ms('fused_ms')} | {ms('eager_ms')} | {ms('compiled_ms')} | {ms('graphed_ms')} | "
            f"{vs('speedup_vs_eager')} | {vs('speedup_vs_compiled')} | {vs('speedup_vs_graphed')} | "
            f"{r['gflops']:.1f} | {frac} |")


_PEAKS = {}


def device_peak_flops(device, n=2048):
    """Achievable fp32 FLOP/s of the device, measured as a large matmul (2 n^3 flops).

    A matmul runs the FMA units at close to their peak, so this is the floor the fused kernels
    are compared against (on the CPU it uses all of torch's threads, like the kernels)."""
    if device not in _PEAKS:
        a = torch.randn(n, n, device=device)
        t = timeit(lambda: a @ a, device, repeats=5)
        _PEAKS[device] = 2 * n**3 / t
        print(f"# {device} peak (fp32 matmul {n}x{n}): {_PEAKS[device] / 1e9:.1f} GFLOP/s")
    return _PEAKS[device]


def device_name(device):
    if device == "cuda":
        return torch.cuda.get_device_name().replace(" ", "-")
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    ap.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])
    ap.add_argument("--S", nargs="+", type=int, default=None, help="seeds (default 256 CPU)")
    ap.add_argument("--D", nargs="+", type=int, default=[16])
    ap.add_argument("--N", nargs="+", type=int, default=[512])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile(reference)")
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    ap.add_argument("--grid", action="store_true",
                    help="S in {30, 1024, 16384}, D in {5, 16, 32}, N = 500, fp32 and fp64 "
                         "(--S overrides the seeds)")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args(argv)
    if args.quick:
        args.S, args.D, args.N, args.repeats, args.no_compile = [32], [8], [128], 3, True
    if args.grid:
        args.S = args.S or [30, 1024, 16384]
        args.D, args.N, args.dtype = [5, 16, 32], [500], ["float32", "float64"]
    print(HEADER)
    print("|---" * (HEADER.count("|") - 1) + "|")
    rows = []
    if args.S is None:  # the headline sizes: CPU S=256, GPU S=4096
        if args.device in ("cpu", "all"):
            rows += run(argparse.Namespace(**{**vars(args), "device": "cpu", "S": [256]}))
        if args.device in ("cuda", "all") and torch.cuda.is_available():
            rows += run(argparse.Namespace(**{**vars(args), "device": "cuda", "S": [4096]}))
    else:
        rows = run(args)
    targets = [report_target("issue 10: fused forward+backward vs eager at S=4096, D=16, N=512",
                             r["speedup_vs_eager"], 100.0, better="higher")
               for r in rows if r["device"] == "cuda" and (r["S"], r["D"], r["N"], r["op"]) ==
               (4096, 16, 512, "forward+backward") and r["dtype"] == "float32"
               and "speedup_vs_eager" in r]
    meta = dict(
        targets=targets,
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        command="python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        torch=torch.__version__, threads=torch.get_num_threads(),
        devices=sorted({device_name(r["device"]) for r in rows}),
    )
    if not args.quick:
        os.makedirs(args.out, exist_ok=True)
        stamp = datetime.date.today().isoformat()
        path = os.path.join(args.out, f"ops-{'+'.join(meta['devices'])}-{stamp}{args.tag}.json")
        with open(path, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
        print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
