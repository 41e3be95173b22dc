"""Fused compnet_ext ops against their honest peers, side by side, in one run.

Peers of our ops (``fused``, called with ``validate=False``): the pure-PyTorch reference eager
(``eager``), compiled (``compiled``: torch.compile default mode; ``autotune``:
``mode="max-autotune-no-cudagraphs"``), and replayed from a CUDA graph (``graphed``); our ops
replayed from a CUDA graph too (``fused_graphed``). Ops: forward, forward+backward (autograd,
gradients w.r.t. the peaks), loss_and_grad, and one epoch of stage 1 (the fused train_peaks
against loss_and_grad + torch.optim.Adam per step). Each time is the median over batches of
calls of the mean time per call, the device synchronised only at each batch's end (what a
training loop pays per call). Speed-ups are ``peer / fused``, measured in the same run; the
JSON goes to ``--out`` (default bench/results/), one file per device, named by the device and
the date (bench/_common.py).

The compiled peers compile in a child process capped at ``--compile-cap`` seconds per
configuration and mode (compile time reported apart, in ``compile_s``); a configuration that
does not compile in time gets no compiled time and a note, and the bench goes on. CUDA graphs
need a GPU: on the CPU their rows carry a note instead.

    python bench/bench_ops.py                  # headline sizes (S, D, N) = (4096, 16, 512),
                                               #   (30, 5, 500), (16384, 32, 500); fp32 + fp64
    python bench/bench_ops.py --compile        # + torch.compile peers (default, max-autotune)
    python bench/bench_ops.py --config 30 5 500 --dtype float32 --out $OUT
    python bench/bench_ops.py --grid           # S in {30,1024,16384} x D in {5,16,32}, N = 500
    python bench/bench_ops.py --quick          # a small size, few repeats: a smoke test

Options: ``--device cpu|cuda|all``, ``--dtype``, ``--config S D N`` (repeatable; or ``--S``,
``--D``, ``--N`` lists for a grid), ``--repeats``, ``--threads`` (CPU; with 1 the CPU is timed in
thread CPU time, robust on a shared machine), ``--compile`` / ``--no-compile`` (default: no
compile), ``--compile-cap`` seconds, ``--out`` folder, ``--tag`` file-name suffix.
"""
import argparse
import datetime
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

import torch

import compnet_ext
from compnet_ext import reference

from _common import report_target, save_json  # noqa: E402 (bench/ is on sys.path)

OPS = ("forward", "forward+backward", "loss_and_grad", "stage1/epoch")
HEADLINE = ((4096, 16, 512), (30, 5, 500), (16384, 32, 500))
COMPILE_MODES = {"compiled": "default", "autotune": "max-autotune-no-cudagraphs"}
PEERS = ("eager", *COMPILE_MODES, "graphed", "fused_graphed")

# Floating-point operations per point and layer in the fused kernels (an FMA counts 2), read off
# compnet_math.h: forward = triangle step (compare, 1 - u, multiply, 2 FMAs: 6) + output FMA (2);
# the backward recomputes the forward and adds the reverse step (dT/da: 4, dT/du, lambda FMA +
# multiply: 3, two products: 3, two accumulations: 2 = 12).
FLOPS_PER_POINT_LAYER = {"forward": 8, "forward+backward": 8 + 8 + 12, "loss_and_grad": 8 + 12,
                         "stage1/epoch": 8 + 12}


def stage_epochs(S, D, N):
    """Epochs per timed call of stage 1 (reported per epoch): 20, fewer for big problems so that
    the step-by-step reference stays within a few seconds per call."""
    return max(2, min(20, 10**7 // (S * D * N)))


def clock_for(device):
    """Wall time; on the CPU with one torch thread, this thread's CPU time (the work itself,
    without a shared machine's waits for a core: every op then runs on the calling thread)."""
    single = device == "cpu" and torch.get_num_threads() == 1
    return time.thread_time if single else time.perf_counter


def timeit(fn, device, repeats, min_time=0.2, clock=None):
    """Median over batches of the mean seconds per call; a batch is about 2 ms of calls (at
    least one), the device synchronised at its end; repeats until ``repeats`` batches and
    ``min_time`` seconds (at most 10 x ``repeats`` batches). Clock: :func:`clock_for` unless
    given."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    clock = clock or clock_for(device)
    fn()
    sync()
    t = clock()
    fn()
    sync()
    per_batch = max(1, min(1000, int(2e-3 / max(clock() - t, 1e-7))))
    samples, start = [], clock()
    while len(samples) < repeats or clock() - start < min_time:
        t = clock()
        for _ in range(per_batch):
            fn()
        sync()
        samples.append((clock() - t) / per_batch)
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
    """``fn`` (static inputs) captured in a CUDA graph: its replay, without launch overhead."""
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
    """The timed calls of one implementation (None: not offered for that op)."""
    if impl in ("fused", "fused_graphed"):
        fwd = lambda p: compnet_ext.forward(x, p, sign=sign, validate=False)
        lag = lambda p: compnet_ext.loss_and_grad(x, target, p, sign=sign, validate=False)
        stage = lambda: compnet_ext.train_peaks(x, target, peaks, sign=sign, epochs=epochs,
                                                lr=1e-3, validate=False)
    else:
        fwd = lambda p: reference.forward(x, p, None, sign)
        lag = lambda p: reference.loss_and_grad(x, target, p, None, sign)
        if impl in COMPILE_MODES:
            fwd = torch.compile(fwd, mode=COMPILE_MODES[impl])
            lag = torch.compile(lag, mode=COMPILE_MODES[impl])
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
    if impl in ("graphed", "fused_graphed"):  # a graphed training loop: tests/test_graphs.py
        calls = {op: (cuda_graphed(f) if op != "stage1/epoch" else None) for op, f in calls.items()}
    return calls


def problem(device, dtype, S, D, N):
    g = torch.Generator().manual_seed(0)
    peaks = (torch.rand(S, D + 1, generator=g) * 0.6 + 0.2).to(device, dtype)
    x = torch.linspace(0, 1, N).to(device, dtype)
    return x, peaks, x**3


def time_impl(impl, device, dtype, S, D, N, repeats):
    """``({op: seconds per call}, {op: seconds the first call took beyond a timed one})`` for
    one implementation (for a compiled peer, the second is its compile time)."""
    epochs = stage_epochs(S, D, N)
    x, peaks, target = problem(device, dtype, S, D, N)
    calls = make_calls(impl, x, peaks, target, epochs)
    times, extra = {}, {}
    for op, fn in calls.items():
        if fn is None:
            continue
        start = time.perf_counter()  # wall time: compiling runs compiler processes too
        fn()  # the compiled peers compile here
        if device == "cuda":
            torch.cuda.synchronize()
        first = time.perf_counter() - start
        per_call = timeit(fn, device, repeats)
        extra[op] = first - per_call
        times[op] = per_call / (epochs if op == "stage1/epoch" else 1)
    return times, extra


def time_compiled(impl, device, dtype, S, D, N, repeats, cap):
    """A compiled peer, in a child process capped at ``cap`` seconds: ``(times, compile_s,
    note)``; times empty and a note when it failed or ran out of time."""
    cmd = [sys.executable, __file__, "--child", impl, device, dtype, str(S), str(D), str(N),
           str(repeats), str(torch.get_num_threads())]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired:
        return {}, {}, f"{impl}: did not compile and run within the {cap:g} s cap"
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not lines:
        err = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {}, {}, f"{impl}: failed ({err[:200]})"
    result = json.loads(lines[-1])
    return result["times"], result["compile_s"], None


def run(device, dtype_name, configs, impls, repeats, compile_cap, peak):
    rows = []
    dtype = getattr(torch, dtype_name)
    for S, D, N in configs:
        times, compile_s, notes = {}, {}, []
        for impl in impls:
            if impl in ("graphed", "fused_graphed") and device != "cuda":
                notes.append(f"{impl}: CUDA graphs need a GPU")
                continue
            try:
                if impl in COMPILE_MODES:
                    t, compile_s[impl], note = time_compiled(impl, device, dtype_name, S, D,
                                                             N, repeats, compile_cap)
                    if note:
                        notes.append(note)
                else:
                    t, _ = time_impl(impl, device, dtype, S, D, N, repeats)
            except Exception as e:  # a peer that cannot run here: say why, keep going
                notes.append(f"{impl}: unavailable ({type(e).__name__}: {str(e)[:200]})")
                continue
            times.update({(impl, op): v for op, v in t.items()})
        for op in OPS:
            row = dict(device=device, dtype=dtype_name, S=S, D=D, N=N, op=op)
            for impl in impls:
                if (impl, op) in times:
                    row[f"{impl}_ms"] = times[(impl, op)] * 1e3
            fused = times[("fused", op)]
            for impl in impls[1:]:
                if (impl, op) in times:
                    row[f"speedup_vs_{impl}"] = times[(impl, op)] / fused
                if op in compile_s.get(impl, {}):
                    row[f"{impl}_compile_s"] = compile_s[impl][op]
            flops = FLOPS_PER_POINT_LAYER[op] * S * N * D
            row["gflops"] = flops / fused / 1e9
            row["peak_fraction"] = flops / fused / peak if peak else None
            if notes:
                row["notes"] = notes
            rows.append(row)
            print(format_row(row), flush=True)
        for note in notes:
            print(f"# {device} {dtype_name} {S}/{D}/{N}: {note}")
    return rows


HEADER = ("| device | dtype | S | D | N | op | fused ms | eager ms | compiled ms | autotune ms "
          "| graphed ms | fused graphed ms | vs eager | vs compiled | vs autotune | vs graphed "
          "| GFLOP/s | of peak |")


def format_row(r):
    ms = lambda k: f"{r[k]:.4g}" if k in r else "-"
    vs = lambda k: f"{r[k]:.1f}x" if k in r else "-"
    frac = f"{100 * r['peak_fraction']:.1f}%" if r.get("peak_fraction") else "-"
    return (f"| {r['device']} | {r['dtype']} | {r['S']} | {r['D']} | {r['N']} | {r['op']} | "
            + " | ".join(ms(f"{i}_ms") for i in ("fused", *PEERS)) + " | "
            + " | ".join(vs(f"speedup_vs_{i}") for i in ("eager", *COMPILE_MODES, "graphed"))
            + f" | {r['gflops']:.1f} | {frac} |")


def device_peak_flops(device, n=2048):
    """Achievable fp32 FLOP/s of the device, measured as a large matmul (2 n^3 flops).

    A matmul runs the FMA units at close to their peak, so this is the floor the fused kernels
    are compared against (on the CPU it uses all of torch's threads, like the kernels)."""
    a = torch.randn(n, n, device=device)
    t = timeit(lambda: a @ a, device, repeats=5, clock=time.perf_counter)  # BLAS has own threads
    print(f"# {device} peak (fp32 matmul {n}x{n}): {2 * n**3 / t / 1e9:.1f} GFLOP/s")
    return 2 * n**3 / t


def targets(rows):
    """Issue 19's goals, where the run measured them (CUDA, fp32)."""
    out = []
    for r in rows:
        if r["device"] != "cuda" or r["dtype"] != "float32":
            continue
        key = (r["S"], r["D"], r["N"], r["op"])
        if key == (4096, 16, 512, "forward+backward") and "speedup_vs_eager" in r:
            out.append(report_target("issue 19: forward+backward vs eager, 4096/16/512",
                                     r["speedup_vs_eager"], 100.0, better="higher"))
        if key == (4096, 16, 512, "loss_and_grad"):
            out.append(report_target("issue 19: loss_and_grad us, 4096/16/512",
                                     r["fused_ms"] * 1e3, 45.0))
        if key == (30, 5, 500, "forward+backward"):
            out.append(report_target("issue 19: forward+backward us, 30/5/500 (per-call cost)",
                                     r["fused_ms"] * 1e3, 40.0))
    return out


def child(argv):
    """One compiled peer in this (child) process: prints ``{"times", "compile_s"}`` as JSON."""
    impl, device, dtype, S, D, N, repeats, threads = argv
    torch.set_num_threads(int(threads))
    times, compile_s = time_impl(impl, device, getattr(torch, dtype), int(S), int(D), int(N),
                                 int(repeats))
    print(json.dumps({"times": times, "compile_s": compile_s}))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    ap.add_argument("--dtype", nargs="+", default=["float32", "float64"],
                    choices=["float32", "float64"])
    ap.add_argument("--config", nargs=3, type=int, action="append", metavar=("S", "D", "N"),
                    help="a size to time (repeatable; default: the headline sizes)")
    ap.add_argument("--S", nargs="+", type=int, help="seeds of a grid (with --D, --N)")
    ap.add_argument("--D", nargs="+", type=int, default=[16])
    ap.add_argument("--N", nargs="+", type=int, default=[512])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads on the CPU (1: timed in thread CPU time, see timeit)")
    ap.add_argument("--compile", action="store_true",
                    help="add the torch.compile peers (default and max-autotune-no-cudagraphs)")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="no torch.compile peers (the default)")
    ap.add_argument("--compile-cap", type=float, default=300.0,
                    help="seconds per configuration and mode for a compiled peer (default 300)")
    ap.add_argument("--quick", action="store_true", help="one small size, few repeats")
    ap.add_argument("--grid", action="store_true",
                    help="S in {30, 1024, 16384} (or --S), D in {5, 16, 32}, N = 500")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name")
    ap.add_argument("--out", default=None, help="folder of the JSON (default bench/results)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        configs, args.repeats = [(32, 8, 128)], 3
    elif args.grid:
        configs = list(itertools.product(args.S or [30, 1024, 16384], [5, 16, 32], [500]))
    elif args.S:
        configs = list(itertools.product(args.S, args.D, args.N))
    else:
        configs = [tuple(c) for c in args.config] if args.config else list(HEADLINE)
    impls = ["fused", "eager", *(COMPILE_MODES if args.compile else ()), "graphed",
             "fused_graphed"]
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(HEADER)
    print("|---" * (HEADER.count("|") - 1) + "|")
    all_rows = []
    for device in devices:
        peak = device_peak_flops(device)
        rows = [r for dtype in args.dtype
                for r in run(device, dtype, configs, impls, args.repeats, args.compile_cap, peak)]
        all_rows += rows
        meta = dict(targets=targets(rows),
                    date=datetime.datetime.now().isoformat(timespec="seconds"),
                    command="python " + " ".join([os.path.relpath(__file__)] + argv),
                    timing="median over batches of the mean time per call; sync per batch; "
                           + ("thread CPU time" if clock_for(device) is time.thread_time
                              else "wall time"),
                    fused_called_with="validate=False")
        if not args.quick:
            save_json("ops", device, meta, rows, args.out, suffix=args.tag)
    return all_rows


if __name__ == "__main__":
    main()
