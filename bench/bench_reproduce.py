"""Wall time of the paper's full experiment (`compnet reproduce` defaults: 4 targets x 5 kinds x
30 seeds, 500 points, 4 x 5 networks, 1000 + 1000 Adam steps = 600 runs x 2000 epochs), with the
fused engine (one launch per stage and kind) vs the step-by-step engine (one launch and one Adam
step per epoch), measured in the same process. Writes JSON to bench/results/.

    python bench/bench_reproduce.py [--threads 1] [--device auto] [--repeats 1]

With ``--draws R`` (issue 20) it times the fused engine on one draw and on R draws (``draws=R``:
R x 30 seeds per launch) instead, in the same process, and reports the cost of R draws against
R single runs; ``--nonconvex`` does so for `compnet reproduce --nonconvex`'s training (the three
sign-0 targets, each on its domain).

Each engine first runs one epoch per stage untimed (on CUDA each kernel is loaded at its first
launch). ``--profile`` runs the fused engine once more under torch.profiler and splits its wall time into
the device's kernel time (on CUDA; per kernel, with launch counts) and the rest: whether the
experiment's time is kernel arithmetic, per-epoch latency or host work (issue 19: <= 0.25 s).
"""
import argparse
import datetime
import json
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from compnet_ext import train
from compnet_ext.experiments.config import resolve_device
from compnet_ext.targets import NONCONVEX_TARGETS, PAPER_TARGETS, get_target, select

from _common import report_target  # noqa: E402 (bench/ is on sys.path when run as a script)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--epochs", default="1000,1000")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--draws", type=int, default=None,
                    help="time one draw vs this many draws (fused engine) instead")
    ap.add_argument("--nonconvex", action="store_true",
                    help="with --draws: the non-convex targets (one run per target)")
    ap.add_argument("--profile", action="store_true",
                    help="split one more fused run into kernel time and the rest (torch.profiler)")
    args = ap.parse_args(argv)
    epochs = tuple(int(e) for e in args.epochs.split(","))
    names = NONCONVEX_TARGETS if args.nonconvex else PAPER_TARGETS
    # a run per target where each has its own domain (sign 0), one run for the paper's targets
    runs_of = ([(select([t]), get_target(t).domain) for t in names] if args.nonconvex
               else [(select(names), (0.0, 1.0))])
    dev = resolve_device(args.device)

    def experiment(ep=epochs, **settings):
        for targets, domain in runs_of:
            train.run(targets, epochs=ep, device=args.device, threads=args.threads,
                      keep_curves=False, domain=domain, **settings)

    if args.draws is None:
        runs = (("fused", dict(fused=True)), ("step_by_step", dict(fused=False)))
    else:
        runs = (("draws_1", dict(draws=1)), (f"draws_{args.draws}", dict(draws=args.draws)))
    times = {name: [] for name, _ in runs}
    for _, settings in runs:  # first calls (CUDA loads each kernel at its first launch) untimed
        experiment((1, 1), **settings)
    for _ in range(args.repeats):
        for name, settings in runs:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            experiment(**settings)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
            print(f"{name}: {times[name][-1]:.2f} s", flush=True)
    best = {k: min(v) for k, v in times.items()}
    (a, ta), (b, tb) = best.items()
    ratio = tb / ta
    print(f"| run | wall s |\n|---|---|\n| {a} | {ta:.2f} |\n| {b} | {tb:.2f} |\n"
          f"{b} / {a}: {ratio:.2f}x")
    device = (torch.cuda.get_device_name().replace(" ", "-") if dev.type == "cuda"
              else f"cpu-{os.cpu_count()}core")
    targets = []
    if dev.type == "cuda" and epochs == (1000, 1000) and args.draws is None:
        targets.append(report_target("issue 10: full reproduce, fused training, s",
                                     best["fused"], 1.0))
        targets.append(report_target("issue 19: full reproduce, fused training, s",
                                     best["fused"], 0.25))
    os.makedirs(args.out, exist_ok=True)
    what = ("reproduce" if args.draws is None else
            f"reproduce{'-nonconvex' if args.nonconvex else ''}-draws{args.draws}")
    path = os.path.join(args.out, f"{what}-{device}-{datetime.date.today().isoformat()}.json")
    record = dict(command="python bench/bench_reproduce.py " + " ".join(
                      sys.argv[1:] if argv is None else argv),
                  device=device, threads=args.threads, epochs=epochs, seconds=times,
                  targets=targets, torch=torch.__version__)
    if args.profile:
        record["profile"] = profile_run(lambda: experiment(**dict(runs)[a]), dev)
    if args.draws is None:
        record["speedup"] = ratio
    else:  # R draws in one batch against R single runs
        record.update(draws=args.draws, cost_ratio=ratio,
                      cost_vs_separate_runs=tb / (args.draws * ta),
                      load_average=os.getloadavg())
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
    print(f"wrote {path}")


def profile_run(fn, dev, top=12):
    """One run of fn under torch.profiler: its wall time, the device's kernel time (CUDA) and the
    ops or kernels that took the most self time, printed and returned for the JSON."""
    cuda = dev.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    rows = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    # on CUDA the rows with device time are the kernels and copies, whose sum is the device's
    # busy time; each row's count is its launches
    busy = sum(e.self_device_time_total for e in rows) / 1e6 if cuda else None
    table = [dict(name=e.key, calls=e.count, self_s=getattr(e, key) / 1e6) for e in rows[:top]]
    print(f"profiled run: {wall:.3f} s wall" +
          (f", {busy:.3f} s of kernels ({busy / wall:.0%}), "
           f"{sum(e.count for e in rows if e.self_device_time_total > 0)} device events"
           if cuda else ""))
    print(f"| {'device' if cuda else 'CPU'} self s | calls | op or kernel |\n|---|---|---|")
    for r in table:
        print(f"| {r['self_s']:.4f} | {r['calls']} | {r['name'][:100]} |")
    return dict(wall_s=wall, kernel_s=busy, top=table, sorted_by=key)


if __name__ == "__main__":
    main()
