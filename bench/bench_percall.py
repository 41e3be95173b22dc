"""Per-call cost of the ops: microseconds per call at a size where the arithmetic is negligible,
beside bare torch calls of the same shape of work (issue 19: forward+backward <= 40 us at
S, D, N = 30, 5, 500 on the GPU, without graphs), for the compositional ops and the paper's
BatchedMLP (S seeds; the MLP's 12 parameter tensors make its floor autograd's cost for 12 leaves).

On the CPU the default size is S = D = N = 1 and the time is this thread's CPU time (a shared
machine's waits for a core do not count), one torch thread. On CUDA it is the wall time of
batches of calls with one sync per batch, at 30/5/500. ``--profile`` prints torch.profiler's
table of one forward+backward (where the host time goes), ``--out`` writes the JSON (named by
the device, the date and the size).

    python bench/bench_percall.py --device cpu
    python bench/bench_percall.py --device cuda --config 30 5 500 --profile --out $OUT
"""
import argparse
import datetime
import time

import torch
from torch.profiler import ProfilerActivity, profile

import compnet_ext
from compnet_ext.nn import BatchedMLP

from _common import save_json  # noqa: E402 (bench/ is on sys.path when run as a script)


def per_call_us(fn, device, calls=500, batches=15):
    """Best over batches of the mean microseconds per call (CPU: thread time; CUDA: wall time,
    one sync per batch)."""
    cuda = device == "cuda"
    clock = time.perf_counter if cuda else time.thread_time
    for _ in range(50):
        fn()
    best = float("inf")
    for _ in range(batches):
        if cuda:
            torch.cuda.synchronize()
        start = clock()
        for _ in range(calls):
            fn()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, (clock() - start) / calls * 1e6)
    return best


def calls(x, peaks, target):
    p = peaks.clone().requires_grad_()

    def fwd_bwd():
        p.grad = None
        compnet_ext.forward(x, p, validate=False).sum().backward()

    def bare_fwd_bwd():  # the same autograd work around one elementwise op
        p.grad = None
        (p * 2).sum().backward()

    mlp = BatchedMLP(peaks.shape[0], dtype=peaks.dtype, device=peaks.device)  # the paper's 4 x 5
    leaves = list(mlp.parameters())

    def mlp_fwd():
        with torch.no_grad():
            return mlp(x)

    def mlp_fwd_bwd():
        for t in leaves:
            t.grad = None
        mlp(x).sum().backward()

    def bare_leaves_bwd():  # autograd's own cost of delivering gradients to the MLP's 12 leaves
        for t in leaves:
            t.grad = None
        torch.autograd.backward([t.sum() for t in leaves])

    return {
        "bare torch op (peaks * 2)": lambda: peaks * 2,
        "bare torch (p * 2).sum().backward()": bare_fwd_bwd,
        "forward, validate=False": lambda: compnet_ext.forward(x, peaks, validate=False),
        "forward, validate=True": lambda: compnet_ext.forward(x, peaks),
        "forward+backward, validate=False": fwd_bwd,
        "loss_and_grad, validate=False":
            lambda: compnet_ext.loss_and_grad(x, target, peaks, validate=False),
        "bare torch: 12 leaves' [t.sum() for t in leaves] backward": bare_leaves_bwd,
        "BatchedMLP (1,4,4,4,4,4,1) forward, no_grad": mlp_fwd,
        "BatchedMLP forward+backward": mlp_fwd_bwd,
        "BatchedMLP.loss_and_grad": lambda: mlp.loss_and_grad(x, target),
    }, fwd_bwd


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--config", nargs=3, type=int, metavar=("S", "D", "N"),
                    help="default 1 1 1 on the CPU, 30 5 500 on CUDA")
    ap.add_argument("--profile", action="store_true", help="torch.profiler table of one fwd+bwd")
    ap.add_argument("--out", default=None, help="write the JSON to this folder")
    args = ap.parse_args(argv)
    S, D, N = args.config or ((30, 5, 500) if args.device == "cuda" else (1, 1, 1))
    if args.device == "cpu":
        torch.set_num_threads(1)
    kw = dict(device=args.device, dtype=getattr(torch, args.dtype))
    x = torch.linspace(0, 1, N, **kw)
    peaks = torch.full((S, D + 1), 0.5, **kw)
    table, fwd_bwd = calls(x, peaks, x**2)
    rows = []
    for what, fn in table.items():
        us = per_call_us(fn, args.device)
        rows.append(dict(what=what, us=us))
        print(f"{us:9.2f} us  {what}")
    if args.profile:
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
        with profile(activities=acts) as prof:
            for _ in range(20):
                fwd_bwd()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    if args.out:
        meta = dict(S=S, D=D, N=N, dtype=args.dtype,
                    date=datetime.datetime.now().isoformat(timespec="seconds"),
                    timing="CPU: thread time, 1 torch thread; CUDA: wall time, sync per batch")
        save_json("percall", args.device, meta, rows, args.out, suffix=f"-{S}x{D}x{N}-{args.dtype}")
    return rows


if __name__ == "__main__":
    main()
