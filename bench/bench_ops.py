"""Fused compnet_ext ops vs the pure-PyTorch reference (eager and torch.compile).

Times forward, forward+backward (autograd, gradients w.r.t. the peaks) and loss_and_grad, prints
a table with medians and speed-ups measured in the same run, and writes JSON to bench/results/.

    python bench/bench_ops.py                      # the issue's headline configurations
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

OPS = ("forward", "forward+backward", "loss_and_grad")


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


def make_calls(impl, x, peaks, target, sign=-1):
    """The three ops for one implementation: fused, reference eager, reference compiled."""
    if impl == "fused":
        fwd = lambda p: compnet_ext.forward(x, p, sign=sign, validate=False)
        lag = lambda: compnet_ext.loss_and_grad(x, target, peaks, sign=sign, validate=False)
    else:
        fwd = lambda p: reference.forward(x, p, None, sign)
        lag = lambda: reference.loss_and_grad(x, target, peaks, None, sign)
        if impl == "compiled":
            fwd = torch.compile(fwd)
            lag = torch.compile(lag)
    p = peaks.clone().requires_grad_()

    def fwd_bwd():
        p.grad = None
        fwd(p).sum().backward()

    def fwd_only():
        with torch.no_grad():
            fwd(peaks)

    return {"forward": fwd_only, "forward+backward": fwd_bwd, "loss_and_grad": lag}


def run(args):
    rows = []
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    impls = ["fused", "eager"] + ([] if args.no_compile else ["compiled"])
    for device in devices:
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
                            calls = make_calls(impl, x, peaks, target)
                            for op in OPS:
                                times[(impl, op)] = timeit(calls[op], device, args.repeats)
                        for op in OPS:
                            row = dict(device=device, dtype=dtype_name, S=S, D=D, N=N, op=op)
                            for impl in impls:
                                row[f"{impl}_ms"] = times[(impl, op)] * 1e3
                            row["speedup_vs_eager"] = times[("eager", op)] / times[("fused", op)]
                            if "compiled" in impls:
                                row["speedup_vs_compiled"] = (
                                    times[("compiled", op)] / times[("fused", op)])
                            rows.append(row)
                            print(format_row(row), flush=True)
    return rows


HEADER = "| device | dtype | S | D | N | op | fused ms | eager ms | compiled ms | vs eager | vs compiled |"


def format_row(r):
    comp = f"{r['compiled_ms']:.3f}" if "compiled_ms" in r else "-"
    vs_comp = f"{r['speedup_vs_compiled']:.1f}x" if "speedup_vs_compiled" in r else "-"
    return (f"| {r['device']} | {r['dtype']} | {r['S']} | {r['D']} | {r['N']} | {r['op']} | "
            f"{r['fused_ms']:.3f} | {r['eager_ms']:.3f} | {comp} | "
            f"{r['speedup_vs_eager']:.1f}x | {vs_comp} |")


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
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args(argv)
    if args.quick:
        args.S, args.D, args.N, args.repeats, args.no_compile = [32], [8], [128], 3, True
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
    meta = dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        command="python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        torch=torch.__version__, threads=torch.get_num_threads(),
        devices=sorted({device_name(r["device"]) for r in rows}),
    )
    if not args.quick:
        os.makedirs(args.out, exist_ok=True)
        stamp = datetime.date.today().isoformat()
        path = os.path.join(args.out, f"ops-{'+'.join(meta['devices'])}-{stamp}.json")
        with open(path, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
        print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
