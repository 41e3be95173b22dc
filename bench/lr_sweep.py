"""The first learning-rate and starting-peak sweep (superseded by bench/tune_defaults.py, issue 11;
kept to reproduce bench/results/lr_sweep.csv: it runs on seed 0 with constant rates and the old
peak clamp [1e-3, 1 - 1e-3], as it did then).

    PYTHONPATH=. python3 bench/lr_sweep.py --seeds 10 > bench/results/lr_sweep.csv

All four paper targets, full 1000 + 1000 epochs, 500 points, 4 x 5 networks. Part 1 varies the
stage-2 (weights) learning rate for all kinds; part 2 varies the stage-1 (peaks) learning rate
and the starting-peak range for the two pretrained kinds.
"""
import argparse
import sys
import time

from compnet_ext import train
from compnet_ext.targets import PAPER_TARGETS, select


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", default="1000,1000")
    ap.add_argument("--only", help="run one part (for 'weights': only the 3e-5 row, added later)")
    args = ap.parse_args()
    epochs = tuple(int(e) for e in args.epochs.split(","))
    targets = select(PAPER_TARGETS)
    if not args.only:
        print("part,lr_peaks,lr_weights,peak_low,peak_high,target,kind,min,median,mean,seconds")
    # Parts 2-3 ran with one weights' rate of 1e-3 for every kind (before the per-kind defaults).
    runs = [("weights", 1e-2, lr, (0.25, 0.75), train.KINDS) for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)]
    runs += [("weights", 1e-2, 3e-5, (0.25, 0.75), ("no_pretraining",) + train.STAGE1_KINDS)]
    runs += [("peaks", lr, 1e-3, (0.25, 0.75), train.STAGE1_KINDS) for lr in (1e-3, 3e-3, 3e-2)]
    runs += [("peak_range", 1e-2, 1e-3, pr, train.STAGE1_KINDS) for pr in ((0.1, 0.9), (0.4, 0.6))]
    if args.only:
        runs = [r for r in runs if r[0] == args.only and (args.only != "weights" or r[2] == 3e-5)]
    for part, lrp, lrw, pr, kinds in runs:
        t0 = time.perf_counter()
        _, res = train.run(targets, kinds=kinds, seeds=args.seeds, epochs=epochs, lr_peaks=lrp,
                           lr_weights=lrw, peak_range=pr, keep_curves=False, seed=0,
                           warmup_fraction=0, peak_bounds=(1e-3, 1 - 1e-3))
        dt = time.perf_counter() - t0
        for n, per_kind in res.items():
            for k, r in per_kind.items():
                f = r.final
                print(f"{part},{lrp:g},{lrw:g},{pr[0]},{pr[1]},{n},{k},{f.min():.3e},"
                      f"{f.median():.3e},{f.mean():.3e},{dt:.1f}", flush=True)
        print(f"{part} lr_peaks={lrp} lr_weights={lrw} range={pr}: {dt:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
