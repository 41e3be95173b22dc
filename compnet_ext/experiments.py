"""The ``compnet reproduce`` and ``compnet sweep`` subcommands (wired into :mod:`compnet_ext.cli`).

``reproduce`` runs the paper's section 4.1 experiment (MATH.md section 6) and prints its Tables 1-2
with the paper's figures beside ours; ``sweep`` trains the kinds over a range of depths and reports
MSE and the exact number of linear pieces of the trained networks vs depth.
"""
import argparse
import csv
import json
import math
import os
import sys
import time

import torch

from . import report, train
from .breakpoints import CountLimitError
from .nn import MAX_HIDDEN
from .outdir import OutDir, OutDirError, atomic_write
from .targets import TARGETS, get_target

QUICK = {"seeds": 6, "epochs": (300, 300)}
SWEEP_QUICK = {"seeds": 4, "epochs": (100, 100), "depths": "2:6"}


# ---------------------------------------------------------------------------------------------
# option types: each option is checked in one place, its argparse ``type=``; an error is a usage
# error (exit 2) naming the option, before any work


def int_range(lo, hi=None):
    """argparse type: an int in [lo, hi] (hi None: no upper bound)."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(
                f"must be an int in [{lo}, {hi}], got {v}" if hi is not None
                else f"must be an int >= {lo}, got {v}")
        return v
    return parse


# torch.Generator.manual_seed takes an unsigned 64-bit seed (negatives would alias large ones)
seed_type = int_range(0, 2**64 - 1)
# torch.set_num_threads: more threads than CPUs only slows down (and absurd counts crash OpenMP)
threads_type = int_range(1, os.cpu_count() or 1)


def learning_rate(text):
    """argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        v = None
    if v is None or not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v


def parse_epochs(text):
    """'S1,S2' -> (S1, S2) non-negative ints."""
    try:
        e = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        e = ()
    if len(e) != 2 or min(e) < 0:
        raise argparse.ArgumentTypeError(
            f"must be two non-negative ints 'STAGE1,STAGE2', got {text!r}")
    return e


def name_list(known):
    """argparse type: 'a,b' -> tuple of known names, repeats dropped (order kept); 'all' -> all.

    Repeats are dropped rather than rejected: 'x3,x3' can only mean x3, and keeping both would
    train one target but report two.
    """
    def parse(text):
        if text == "all":
            return tuple(known)
        items = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
        bad = [v for v in items if v not in known]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, bad or [text]))}; choose from "
                f"{', '.join(known)} or 'all'")
        return items
    return parse


def parse_depths(text):
    """'2:32' (inclusive), '2:32:2' or '2,4,8' -> sorted tuple of depths in [1, MAX_HIDDEN]."""
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
        raise argparse.ArgumentTypeError(
            f"must be 'LO:HI', 'LO:HI:STEP' or 'D1,D2,...', got {text!r}") from None
    if not depths or depths[0] < 1 or depths[-1] > MAX_HIDDEN:
        raise argparse.ArgumentTypeError(
            f"depths must lie in [1, {MAX_HIDDEN}] (the fused kernels' limit), got {text!r}")
    return depths


def parse_lr_weights(text):
    """'0.001' -> every kind; 'default=3e-3,enforced=1e-4' -> those kinds (others: defaults)."""
    if "=" not in text:
        return train.weight_lrs(learning_rate(text))
    try:
        pairs = dict(item.split("=") for item in text.split(","))
        return train.weight_lrs({k.strip(): float(v) for k, v in pairs.items()})
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"must be one number or 'KIND=LR,...': {e}") from None


def device_type(text):
    """argparse type: 'auto', 'cpu' or 'cuda[:i]' that this machine has."""
    try:
        train.resolve_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


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


def _claim_out(parser, path):
    """``--out`` claimed before any work (a usage error naming it otherwise); see outdir."""
    try:
        od = OutDir(path)
    except OutDirError as e:
        parser.error(str(e))
    if od.removed:
        print(f"compnet: --out {path}: deleted the earlier run's {', '.join(od.removed)}",
              file=sys.stderr)
    return od


def _skip(skipped, key, what, reason):
    """Record in results.json ('skipped') and say once on stderr why ``what`` was left out."""
    skipped[key] = reason
    print(f"compnet: {what} skipped: {reason}", file=sys.stderr)


def _plots(args, skipped, draw):
    """``draw(experiment_plots)`` -> PNG names written; none with --no-plots or without matplotlib
    (an optional dependency: the results are complete without the pictures, so the run goes on)."""
    if args.no_plots:
        return []
    from . import experiment_plots

    reason = experiment_plots.matplotlib_missing()
    if reason:
        _skip(skipped, "plots", "plots", reason)
        return []
    return draw(experiment_plots)


def _write_json(path, doc):
    atomic_write(path, lambda f: json.dump(doc, f, indent=1))


def reproduce(args, od, out=None):
    """Run the experiment of MATH.md section 6 as configured by ``args`` into the claimed
    :class:`OutDir` ``od``; write files; print.

    The training results (results.csv) are written as soon as training ends, before the piece
    counting and plotting that can hit a limit, take long or be interrupted; results.json is
    written last and marks the run complete.
    """
    out = out or sys.stdout
    t0 = time.perf_counter()
    x, res = train.run(_targets(args.targets), kinds=args.kinds, seeds=args.seeds,
                       points=args.points, depth=args.depth, epochs=args.epochs,
                       lr_peaks=args.lr_peaks, lr_weights=args.lr_weights, device=args.device,
                       seed=args.seed, progress=not args.no_progress, threads=args.threads,
                       fused=not args.step_by_step)
    wall = time.perf_counter() - t0
    results = report.summaries(res)
    report.write_csv(od.file("results.csv"), results)
    files, skipped = ["results.csv"], {}
    cfg = _config(args, depth=args.depth, targets=list(args.targets), kinds=list(args.kinds))
    checks = report.qualitative_checks(results)
    try:
        pieces, piece_checks = stage1_pieces(res, args.depth)
    except CountLimitError as e:
        pieces, piece_checks = None, []
        _skip(skipped, "stage1_pieces", "stage-1 piece counts", str(e))
    checks += piece_checks

    def draw(plots):
        ys = {n: get_target(n).fn(x) for n in res}
        plots.plot_best_fits(od.file("best_fits.png"), x, ys, res)
        plots.plot_loss_curves(od.file("loss_curves.png"), res, args.epochs[0])
        return ["best_fits.png", "loss_curves.png"]

    files += _plots(args, skipped, draw) + ["results.json"]
    report.write_json(od.file("results.json"), cfg, results,
                      {"command": "reproduce", "wall_seconds": wall, "stage1_pieces": pieces,
                       "checks": [{"claim": c, "holds": ok} for c, ok in checks],
                       "skipped": skipped, "files": files})
    print(report.markdown_tables(results, args.seeds), file=out)
    for claim, ok in checks:
        print(f"- [{'x' if ok else ' '}] {claim}", file=out)
    print(f"\n{len(args.targets)} target(s) x {len(args.kinds)} kind(s) x {args.seeds} seeds, "
          f"epochs {args.epochs[0]}+{args.epochs[1]}, device {cfg['device']}: {wall:.1f} s. "
          f"Wrote {', '.join(files)} to {args.out}", file=out)
    return 0


def _common(p, seeds, epochs):
    p.add_argument("--targets", type=name_list(tuple(TARGETS)), default="all",
                   help=f"comma-separated targets ({', '.join(TARGETS)}) or 'all'")
    p.add_argument("--kinds", type=name_list(train.KINDS), default="all",
                   help=f"comma-separated kinds ({', '.join(train.KINDS)}) or 'all'")
    p.add_argument("--seeds", type=int_range(1), default=seeds,
                   help=f"networks per kind (default {seeds})")
    p.add_argument("--epochs", type=parse_epochs, default=f"{epochs[0]},{epochs[1]}",
                   help="Adam steps 'STAGE1,STAGE2' (weight-only kinds train the sum)")
    p.add_argument("--points", type=int_range(2), default=500,
                   help="evenly spaced points on [0, 1]")
    p.add_argument("--lr-peaks", type=learning_rate, default=train.LR_PEAKS,
                   help="stage-1 learning rate")
    p.add_argument("--lr-weights", type=parse_lr_weights, default=None,
                   help="weights' learning rate: one number, or 'KIND=LR,...' (default: per kind, "
                        + ", ".join(f"{k}={v:g}" for k, v in train.LR_WEIGHTS.items()) + ")")
    p.add_argument("--seed", type=seed_type, default=0, help="generator seed (0 to 2^64 - 1)")
    p.add_argument("--device", type=device_type, default="auto",
                   help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--threads", type=threads_type, default=None,
                   help="CPU threads while training, at most the CPU count (default: torch's, all "
                        "cores; 1 is faster on a busy shared machine)")
    p.add_argument("--quick", action="store_true", help="small run (overrides --seeds/--epochs)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--step-by-step", action="store_true",
                   help="one launch per epoch (the reference engine) instead of one per stage")


def _finish_common(args, quick):
    """--quick's settings and the per-kind default learning rates (options are checked by their
    argparse types)."""
    if args.quick:
        args.seeds, args.epochs = quick["seeds"], quick["epochs"]
    if args.lr_weights is None:
        args.lr_weights = dict(train.LR_WEIGHTS)


def add_reproduce_parser(sub):
    p = sub.add_parser("reproduce", help="the paper's Tables 1-2 (section 4.1), with its figures")
    _common(p, 30, (1000, 1000))
    p.add_argument("--depth", type=int_range(1, MAX_HIDDEN), default=5,
                   help=f"hidden layers, 1 to {MAX_HIDDEN} (default 5)")
    p.add_argument("--out", default="./compnet-results",
                   help="output folder (its earlier compnet results are replaced)")

    def run(args):
        _finish_common(args, QUICK)
        with _claim_out(p, args.out) as od:
            return reproduce(args, od)

    p.set_defaults(func=run)
    return p


# ---------------------------------------------------------------------------------------------
# sweep

SWEEP_FIELDS = ("depth", "target", "kind", "min", "median", "mean", "pieces_min",
                "pieces_median", "pieces_max")


def _count_pieces(layers):
    from . import count_pieces

    return count_pieces(layers)


def _write_rows(path, rows):
    def write(f):
        w = csv.DictWriter(f, fieldnames=SWEEP_FIELDS)
        w.writeheader()
        w.writerows(rows)

    atomic_write(path, write)


def sweep(args, od, out=None):
    """Train every kind at every depth into the claimed :class:`OutDir` ``od``; CSV + PNG of MSE
    and linear pieces vs depth.

    Pieces are counted exactly (``compnet_ext.count_pieces``, issue 3's activation walk) on the
    trained float32 weights as they are; rounding of the weights can add a tiny real piece to a
    compositional network (seen: 5 instead of 4 at depth 2 before any training). Beyond
    ``max_pieces`` (2^22 summed over the seeds) the walk raises CountLimitError. sweep.csv is
    rewritten after every depth's training and again after its counting, so an interrupted or
    failing sweep keeps every depth trained so far; results.json is written last.
    """
    out = out or sys.stdout
    rows, not_counted, t0 = [], [], time.perf_counter()
    for i, d in enumerate(args.depths):
        print(f"depth {d} ({i + 1}/{len(args.depths)})", file=sys.stderr)
        _, res = train.run(_targets(args.targets), kinds=args.kinds, seeds=args.seeds,
                           points=args.points, depth=d, epochs=args.epochs, lr_peaks=args.lr_peaks,
                           lr_weights=args.lr_weights, device=args.device, seed=args.seed,
                           keep_curves=False, keep_layers=not args.no_pieces,
                           progress=not args.no_progress, threads=args.threads,
                           fused=not args.step_by_step)
        trained = []
        for t, per_kind in res.items():
            for k, r in per_kind.items():
                s = report.summarize(r.final)
                row = {"depth": d, "target": t, "kind": k, "min": s["min"],
                       "median": s["median"], "mean": s["mean"], "pieces_min": None,
                       "pieces_median": None, "pieces_max": None}
                rows.append(row)
                trained.append((row, r))
        _write_rows(od.file("sweep.csv"), rows)
        if args.no_pieces:
            continue
        for row, r in trained:
            try:
                pc = _count_pieces(r.mlp_layers).double()
            except CountLimitError as e:
                not_counted.append({"depth": d, "target": row["target"], "kind": row["kind"],
                                    "reason": str(e)})
                continue
            row.update(pieces_min=int(pc.min()), pieces_median=float(pc.median()),
                       pieces_max=int(pc.max()))
        _write_rows(od.file("sweep.csv"), rows)
    wall = time.perf_counter() - t0
    files, skipped = ["sweep.csv"], {}
    if not_counted:
        depths = sorted({n["depth"] for n in not_counted})
        _skip(skipped, "pieces", "counting linear pieces",
              f"{len(not_counted)} of {len(rows)} rows not counted (depths "
              f"{', '.join(map(str, depths))}): {not_counted[0]['reason']}")

    def draw(plots):
        plots.plot_sweep(od.file("sweep.png"), rows, args.kinds)
        return ["sweep.png"]

    files += _plots(args, skipped, draw) + ["results.json"]
    cfg = _config(args, depths=list(args.depths), targets=list(args.targets),
                  kinds=list(args.kinds), pieces=not args.no_pieces)
    _write_json(od.file("results.json"),
                {"command": "sweep", "config": cfg, "rows": rows, "wall_seconds": wall,
                 "skipped": skipped, "not_counted": not_counted, "files": files})
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
    p.add_argument("--depths", type=parse_depths, default=None,
                   help=f"'LO:HI' (inclusive), 'LO:HI:STEP' or list, within 1 to {MAX_HIDDEN} "
                        f"(default 2:32; --quick: {SWEEP_QUICK['depths']})")
    p.add_argument("--no-pieces", action="store_true", help="skip counting linear pieces")
    p.add_argument("--out", default="./compnet-sweep",
                   help="output folder (its earlier compnet results are replaced)")

    def run(args):
        _finish_common(args, SWEEP_QUICK)
        if args.depths is None:
            args.depths = parse_depths(SWEEP_QUICK["depths"] if args.quick else "2:32")
        with _claim_out(p, args.out) as od:
            return sweep(args, od)

    p.set_defaults(func=run)
    return p
