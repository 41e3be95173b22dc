"""The ``compnet reproduce`` and ``compnet sweep`` subcommands (wired into :mod:`compnet_ext.cli`).

``reproduce`` runs the paper's section 4.1 experiment (MATH.md section 6) and prints its Tables 1-2
with the paper's figures beside ours; ``sweep`` trains the kinds over a range of depths and reports
MSE and the exact number of linear pieces of the trained networks vs depth.
"""
import csv
import os
import sys
import time

import torch

from . import report, train
from .targets import TARGETS, get_target

QUICK = {"seeds": 6, "epochs": (300, 300)}
SWEEP_QUICK = {"seeds": 4, "epochs": (100, 100), "depths": "2:6"}


# ---------------------------------------------------------------------------------------------
# argument parsing helpers (errors name the option)


def parse_epochs(text):
    """'S1,S2' -> (S1, S2) non-negative ints."""
    try:
        e = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"--epochs must be 'STAGE1,STAGE2' (two ints), got {text!r}") from None
    if len(e) != 2 or min(e) < 0:
        raise ValueError(f"--epochs must be two non-negative ints 'STAGE1,STAGE2', got {text!r}")
    return e


def parse_list(text, known, option):
    """'a,b' -> validated tuple; 'all' -> every known name."""
    if text in (None, "all"):
        return tuple(known)
    items = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in items if v not in known]
    if bad or not items:
        raise ValueError(f"{option}: unknown {bad or text!r}; choose from {', '.join(known)}")
    return items


def parse_depths(text):
    """'2:32' (inclusive), '2:32:2' or '2,4,8' -> sorted tuple of depths >= 1."""
    try:
        if ":" in text:
            parts = [int(v) for v in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            lo, hi, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1
            if step < 1 or hi < lo:
                raise ValueError
            depths = tuple(range(lo, hi + 1, step))
        else:
            depths = tuple(sorted({int(v) for v in text.split(",")}))
    except ValueError:
        raise ValueError(f"--depths must be 'LO:HI', 'LO:HI:STEP' or 'D1,D2,...', got {text!r}") from None
    if not depths or depths[0] < 1:
        raise ValueError(f"--depths: depth must be >= 1, got {text!r}")
    return depths


def parse_lr_weights(text):
    """None -> per-kind defaults; '0.001' -> every kind; 'default=3e-3,enforced=1e-4' -> those kinds."""
    if text is None:
        return dict(train.LR_WEIGHTS)
    try:
        if "=" not in text:
            return train.weight_lrs(float(text))
        pairs = dict(item.split("=") for item in text.split(","))
        return train.weight_lrs({k.strip(): float(v) for k, v in pairs.items()})
    except ValueError as e:
        raise ValueError(f"--lr-weights must be a positive number or 'KIND=LR,...': {e}") from None


def _targets(names):
    return {n: (get_target(n).fn, get_target(n).sign) for n in names}


def _config(args, **extra):
    cfg = {"seeds": args.seeds, "points": args.points, "width": 4, "epochs": list(args.epochs),
           "lr_peaks": args.lr_peaks, "lr_weights": args.lr_weights, "seed": args.seed,
           "device": str(train.resolve_device(args.device)), "dtype": "float32",
           "peak_range": list(train.PEAK_RANGE), "optimizer": "Adam (torch defaults but lr)",
           "torch": torch.__version__}
    cfg.update(extra)
    return cfg


# ---------------------------------------------------------------------------------------------
# reproduce


def stage1_pieces(res, depth):
    """Exact linear pieces of every network right after stage 1 (the paper: 2^D, always).

    Counted twice with issue 3's exact counters, in float64: the closed form on (peaks, scales)
    and the activation walk of the encoded ReLU network. Returns
    ``{target: {kind: {"closed_form": [...], "encoded_walk": [...]}}}`` and check lines.
    """
    from . import count_pieces, encode
    from .breakpoints import MAX_PIECES, CountLimitError

    out, checks = {}, []
    for t, per_kind in res.items():
        sign = get_target(t).sign
        for k, r in per_kind.items():
            if r.peaks is None:
                continue
            p = r.peaks.double()
            s = None if r.scales is None else r.scales.double()
            closed = count_pieces(peaks=p, scales=s, sign=sign).tolist()  # CountLimitError: D > 62
            if sum(closed) > MAX_PIECES:  # the walk would give up there, after minutes: now
                raise CountLimitError(
                    f"the encoded networks have {sum(closed)} pieces (closed form), more than "
                    f"the activation walk's max_pieces = {MAX_PIECES}")
            walk = count_pieces(encode(p, s, sign=sign)).tolist()
            out.setdefault(t, {})[k] = {"closed_form": closed, "encoded_walk": walk}
            n_ok = sum(c == 2**depth for c in closed)
            w_ok = sum(c == 2**depth for c in walk)
            checks.append((f"{t}: '{k}' after stage 1 has 2^{depth} = {2**depth} pieces "
                           f"(closed form {n_ok}/{len(closed)}, encoded-network walk "
                           f"{w_ok}/{len(walk)})", n_ok == len(closed)))
    return out, checks


def reproduce(args, out=None):
    """Run the experiment of MATH.md section 6 as configured by ``args``; write files; print."""
    out = out or sys.stdout
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    x, res = train.run(_targets(args.targets), kinds=args.kinds, seeds=args.seeds,
                       points=args.points, depth=args.depth, epochs=args.epochs,
                       lr_peaks=args.lr_peaks, lr_weights=args.lr_weights, device=args.device,
                       seed=args.seed, progress=not args.no_progress, threads=args.threads,
                       fused=not args.step_by_step)
    wall = time.perf_counter() - t0
    results = report.summaries(res)
    cfg = _config(args, depth=args.depth, targets=list(args.targets), kinds=list(args.kinds))
    checks = report.qualitative_checks(results)
    pieces, piece_checks = stage1_pieces(res, args.depth)
    checks += piece_checks
    report.write_json(os.path.join(args.out, "results.json"), cfg, results,
                      {"wall_seconds": wall, "stage1_pieces": pieces,
                       "checks": [{"claim": c, "holds": ok} for c, ok in checks]})
    report.write_csv(os.path.join(args.out, "results.csv"), results)
    files = ["results.json", "results.csv"]
    if not args.no_plots:
        from . import experiment_plots as plots

        ys = {n: get_target(n).fn(x) for n in res}
        plots.plot_best_fits(os.path.join(args.out, "best_fits.png"), x, ys, res)
        plots.plot_loss_curves(os.path.join(args.out, "loss_curves.png"), res, args.epochs[0])
        files += ["best_fits.png", "loss_curves.png"]
    print(report.markdown_tables(results, args.seeds), file=out)
    for claim, ok in checks:
        print(f"- [{'x' if ok else ' '}] {claim}", file=out)
    print(f"\n{len(args.targets)} target(s) x {len(args.kinds)} kind(s) x {args.seeds} seeds, "
          f"epochs {args.epochs[0]}+{args.epochs[1]}, device {cfg['device']}: {wall:.1f} s. "
          f"Wrote {', '.join(files)} to {args.out}", file=out)
    return 0


def _common(p, seeds, epochs):
    p.add_argument("--targets", default="all",
                   help=f"comma-separated targets ({', '.join(TARGETS)}) or 'all'")
    p.add_argument("--kinds", default="all",
                   help=f"comma-separated kinds ({', '.join(train.KINDS)}) or 'all'")
    p.add_argument("--seeds", type=int, default=seeds, help=f"networks per kind (default {seeds})")
    p.add_argument("--epochs", default=f"{epochs[0]},{epochs[1]}",
                   help="Adam steps 'STAGE1,STAGE2' (weight-only kinds train the sum)")
    p.add_argument("--points", type=int, default=500, help="evenly spaced points on [0, 1]")
    p.add_argument("--lr-peaks", type=float, default=train.LR_PEAKS, help="stage-1 learning rate")
    p.add_argument("--lr-weights", default=None,
                   help="weights' learning rate: one number, or 'KIND=LR,...' (default: per kind, "
                        + ", ".join(f"{k}={v:g}" for k, v in train.LR_WEIGHTS.items()) + ")")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads while training (default: torch's, all cores; 1 is faster "
                        "on a busy shared machine)")
    p.add_argument("--quick", action="store_true", help="small run (overrides --seeds/--epochs)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--step-by-step", action="store_true",
                   help="one launch per epoch (the reference engine) instead of one per stage")


def _finish_common(args, quick):
    """Parse and validate the shared options in place (ValueError names the option)."""
    args.targets = parse_list(args.targets, tuple(TARGETS), "--targets")
    args.kinds = parse_list(args.kinds, train.KINDS, "--kinds")
    args.epochs = parse_epochs(args.epochs)
    if args.quick:
        args.seeds, args.epochs = quick["seeds"], quick["epochs"]
    for opt, v, lo in (("--seeds", args.seeds, 1), ("--points", args.points, 2),
                       ("--threads", 1 if args.threads is None else args.threads, 1)):
        if v < lo:
            raise ValueError(f"{opt} must be >= {lo}, got {v}")
    if not args.lr_peaks > 0:
        raise ValueError(f"--lr-peaks must be > 0, got {args.lr_peaks}")
    args.lr_weights = parse_lr_weights(args.lr_weights)
    train.resolve_device(args.device)


def add_reproduce_parser(sub):
    p = sub.add_parser("reproduce", help="the paper's Tables 1-2 (section 4.1), with its figures")
    _common(p, 30, (1000, 1000))
    p.add_argument("--depth", type=int, default=5, help="hidden layers (default 5)")
    p.add_argument("--out", default="./compnet-results", help="output folder")

    def run(args):
        try:
            _finish_common(args, QUICK)
            if args.depth < 1:
                raise ValueError(f"--depth must be >= 1, got {args.depth}")
        except ValueError as e:  # a usage error (exit 2) naming the option, before any work
            p.error(str(e))
        return reproduce(args)

    p.set_defaults(func=run)
    return p


# ---------------------------------------------------------------------------------------------
# sweep


def _count_pieces(layers):
    from . import count_pieces

    return count_pieces(layers)


def sweep(args, out=None):
    """Train every kind at every depth; CSV + PNG of MSE and linear pieces vs depth.

    Pieces are counted exactly (``compnet_ext.count_pieces``, issue 3's activation walk) on the
    trained float32 weights as they are; rounding of the weights can add a tiny real piece to a
    compositional network (seen: 5 instead of 4 at depth 2 before any training). Beyond
    ``max_pieces`` (2^22 summed over the seeds) the walk raises CountLimitError.
    """
    out = out or sys.stdout
    os.makedirs(args.out, exist_ok=True)
    rows, t0 = [], time.perf_counter()
    for i, d in enumerate(args.depths):
        print(f"depth {d} ({i + 1}/{len(args.depths)})", file=sys.stderr)
        _, res = train.run(_targets(args.targets), kinds=args.kinds, seeds=args.seeds,
                           points=args.points, depth=d, epochs=args.epochs, lr_peaks=args.lr_peaks,
                           lr_weights=args.lr_weights, device=args.device, seed=args.seed,
                           keep_curves=False, keep_layers=not args.no_pieces,
                           progress=not args.no_progress, threads=args.threads,
                           fused=not args.step_by_step)
        for t, per_kind in res.items():
            for k, r in per_kind.items():
                s = report.summarize(r.final)
                row = {"depth": d, "target": t, "kind": k, "min": s["min"],
                       "median": s["median"], "mean": s["mean"], "pieces_min": None,
                       "pieces_median": None, "pieces_max": None}
                if not args.no_pieces:
                    pc = _count_pieces(r.mlp_layers).double()
                    row.update(pieces_min=int(pc.min()), pieces_median=float(pc.median()),
                               pieces_max=int(pc.max()))
                rows.append(row)
    wall = time.perf_counter() - t0
    path = os.path.join(args.out, "sweep.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    files = ["sweep.csv"]
    if not args.no_plots:
        from . import experiment_plots as plots

        plots.plot_sweep(os.path.join(args.out, "sweep.png"), rows, args.kinds)
        files.append("sweep.png")
    print("| depth | target | kind | min MSE | median MSE | mean MSE | pieces (median) |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    for r in rows:
        pcs = "" if r["pieces_median"] is None else f"{r['pieces_median']:g}"
        print(f"| {r['depth']} | {r['target']} | {r['kind']} | {r['min']:.2e} | "
              f"{r['median']:.2e} | {r['mean']:.2e} | {pcs} |", file=out)
    print(f"\n{len(args.depths)} depth(s), {args.seeds} seeds, epochs {args.epochs[0]}+"
          f"{args.epochs[1]}: {wall:.1f} s. Wrote {', '.join(files)} to {args.out}", file=out)
    return 0


def add_sweep_parser(sub):
    p = sub.add_parser("sweep", help="MSE and linear pieces vs depth per kind (CSV + PNG)")
    _common(p, 30, (1000, 1000))
    p.set_defaults(targets="x3")
    p.add_argument("--depths", default="2:32", help="'LO:HI' (inclusive), 'LO:HI:STEP' or list")
    p.add_argument("--no-pieces", action="store_true", help="skip counting linear pieces")
    p.add_argument("--out", default="./compnet-sweep", help="output folder")

    def run(args):
        try:
            quick_depths = args.quick and args.depths == "2:32"
            _finish_common(args, SWEEP_QUICK)
            args.depths = parse_depths(SWEEP_QUICK["depths"] if quick_depths else args.depths)
            if args.depths[-1] > 64:
                raise ValueError(f"--depths: at most 64 hidden layers (BatchedMLP), got {args.depths[-1]}")
        except ValueError as e:  # a usage error (exit 2) naming the option, before any work
            p.error(str(e))
        return sweep(args)

    p.set_defaults(func=run)
    return p
