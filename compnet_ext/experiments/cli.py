"""Command line: ``compnet <subcommand> ...`` (also ``python -m compnet_ext``).

Every option is parsed and checked here, by its argparse ``type=`` (an error is a usage error,
exit 2, naming the option, before any work), with the same checks as the Python API
(:func:`compnet_ext.experiments.config.check_setting`). Each subcommand is added by one
``add_<name>_parser(sub)`` function that registers its parser and sets ``func`` to the function
that runs it; add new ones to ``SUBCOMMANDS``. The runs themselves are
:mod:`~compnet_ext.experiments.reproduce`, :mod:`~compnet_ext.experiments.sweep` and
:func:`run_plot`.
"""
import argparse
import os
import sys

import torch

from ..batched_mlp import BatchedMLP
from ..checks import MAX_HIDDEN, MAX_WIDTH, check_bounds, check_int, check_real
from ..init import PEAK_RANGE, mlp_widths, starting_peaks
from ..network import encode
from ..targets import NONCONVEX_TARGETS, PAPER_TARGETS, TARGETS
from . import plots, reproduce, sparse, sparse_reproduce, sweep
from .cells import BLOCK_SEEDS
from .config import (KINDS, LR_PEAKS, LR_WEIGHTS, PEAK_CLAMP, SEED_MAX, WARMUP_FRACTION, Config,
                     check_setting, resolve_device, warmup_fractions, weight_lrs)
from .distributed import NoDevice, OptionsMismatch, RankError, Session, World
from .outdir import NotAFileError, OutDirError, write_target

QUICK = {"seeds": 6, "epochs": (300, 300)}
SWEEP_QUICK = {"seeds": 4, "epochs": (100, 100), "depths": "2:6"}

# ---------------------------------------------------------------------------------------------
# option types


def _usage_error(e, name):
    """A check's error as argparse's: the option names itself, so drop the `name` prefix."""
    msg = str(e)
    prefix = f"`{name}` "
    return argparse.ArgumentTypeError(msg[len(prefix):] if msg.startswith(prefix) else msg)


def int_type(name, check):
    """argparse type: an int that ``check(name, value)`` accepts."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None
        try:
            return check(name, v)
        except (TypeError, ValueError) as e:
            raise _usage_error(e, name) from None
    return parse


def setting(name):
    """argparse type: an int setting of an experiment (:func:`check_setting`)."""
    return int_type(name, check_setting)


def learning_rate(text):
    """argparse type: a finite number > 0."""
    try:
        return check_real("lr", float(text), positive=True)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}") from None


def parse_epochs(text):
    """'S1,S2' -> (S1, S2) non-negative ints."""
    try:
        e = tuple(check_setting("epochs", int(v)) for v in str(text).split(","))
    except ValueError:
        e = ()
    if len(e) != 2:
        raise argparse.ArgumentTypeError(
            f"must be two non-negative ints 'STAGE1,STAGE2', got {text!r}")
    return e


def name_list(known, every=None):
    """argparse type: 'a,b' -> tuple of known names, repeats dropped (order kept); 'all' ->
    ``every`` (default: all known).

    Repeats are dropped rather than rejected: 'x3,x3' can only mean x3, and keeping both would
    train one target but report two.
    """
    def parse(text):
        if text == "all":
            return tuple(every or known)
        items = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
        bad = [v for v in items if v not in known]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, bad or [text]))}; choose from "
                f"{', '.join(known)} or 'all'")
        return items
    return parse


def parse_depths(text):
    """'2:32' (inclusive), '2:32:2' or '2,4,8' -> sorted tuple of depths, each a valid depth."""
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
    try:
        for d in depths or (0,):
            check_setting("depth", d)
    except ValueError:
        raise argparse.ArgumentTypeError(f"depths must lie in [1, {MAX_HIDDEN}] (the fused "
                                         f"kernels' limit), got {text!r}") from None
    return depths


def parse_lr_weights(text):
    """'0.001' -> every kind; 'default=3e-3,enforced=1e-4' -> those kinds (others: defaults)."""
    if "=" not in text:
        return weight_lrs(learning_rate(text))
    try:
        pairs = dict(item.split("=") for item in text.split(","))
        return weight_lrs({k.strip(): float(v) for k, v in pairs.items()})
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"must be one number or 'KIND=LR,...': {e}") from None


def parse_warmup_fraction(text):
    """'0.1' -> every kind; 'enforced=0.1,raai=0' -> those kinds (others: defaults)."""
    try:
        if "=" not in text:
            return warmup_fractions(float(text))
        pairs = dict(item.split("=") for item in text.split(","))
        return warmup_fractions({k.strip(): float(v) for k, v in pairs.items()})
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"must be one number in [0, 1] or 'KIND=FRACTION,...': {e}") from None


def parse_peak_bounds(text):
    """'LO,HI' -> (LO, HI) with 0 < LO <= HI < 1."""
    try:
        return check_bounds("peak_bounds", tuple(float(v) for v in text.split(",")))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"must be 'LO,HI' with 0 < LO <= HI < 1: {e}") from None


def device_type(text):
    """argparse type: 'auto', 'cpu' or 'cuda[:i]' that this machine has."""
    try:
        resolve_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def image_path(text):
    """argparse type of `plot --out`: a new or existing image file in an existing, writable
    folder, with a format matplotlib writes (no extension: PNG)."""
    if not text.strip() or os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"must name an image file, got {text!r}")
    try:
        write_target(text)  # a device, FIFO or socket is refused before any work
    except OutDirError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {folder!r} does not exist or is not writable")
    ext = os.path.splitext(text)[1][1:].lower()
    if ext and not plots.matplotlib_missing():  # without matplotlib, the run says so itself
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        if ext not in formats:
            raise argparse.ArgumentTypeError(
                f"unsupported image format '.{ext}'; use one of {', '.join(sorted(formats))}")
    return text


# `plot --target tanh` drew tanh(3x) unnormalised; the one registry has tanh3 = tanh(3x)/tanh(3).
DEPRECATED_TARGETS = {"tanh": "tanh3"}


def plot_target(text):
    """argparse type of `plot --target`: a registered target (a deprecated name still works)."""
    if text in DEPRECATED_TARGETS:
        new = DEPRECATED_TARGETS[text]
        print(f"compnet plot: --target {text} is deprecated and will be removed; it now draws "
              f"{new} ({TARGETS[new].label})", file=sys.stderr)
        return new
    drawable = sorted(n for n, t in TARGETS.items() if t.sign != 0)  # on [0, 1], one sign
    if text not in drawable:
        hint = (" (non-convex targets: `compnet reproduce --nonconvex` draws their fits)"
                if text in TARGETS else "")
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from "
                                         f"{', '.join(map(repr, drawable))}){hint}")
    return text


# ---------------------------------------------------------------------------------------------
# reproduce and sweep


def _common(p, seeds, epochs):
    p.add_argument("--targets", type=name_list(PAPER_TARGETS), default="all",
                   help=f"comma-separated targets ({', '.join(PAPER_TARGETS)}) or 'all'")
    p.add_argument("--kinds", type=name_list(KINDS), default="all",
                   help=f"comma-separated kinds ({', '.join(KINDS)}) or 'all'")
    p.add_argument("--seeds", type=setting("seeds"), default=seeds,
                   help=f"networks per kind (default {seeds})")
    p.add_argument("--epochs", type=parse_epochs, default=f"{epochs[0]},{epochs[1]}",
                   help="Adam steps 'STAGE1,STAGE2' (weight-only kinds train the sum)")
    p.add_argument("--points", type=setting("points"), default=500,
                   help="evenly spaced points on [0, 1]")
    p.add_argument("--lr-peaks", type=learning_rate, default=LR_PEAKS,
                   help="stage-1 learning rate")
    p.add_argument("--lr-weights", type=parse_lr_weights, default=None,
                   help="weights' learning rate: one number, or 'KIND=LR,...' (default: per kind, "
                        + ", ".join(f"{k}={v:g}" for k, v in LR_WEIGHTS.items()) + ")")
    p.add_argument("--warmup-fraction", type=parse_warmup_fraction, default=None,
                   help="linear warm-up of the weights' rate over this fraction of each kind's "
                        "weight steps: one number in [0, 1], or 'KIND=FRACTION,...' (default: "
                        + ", ".join(f"{k}={v:g}" for k, v in WARMUP_FRACTION.items()) + ")")
    p.add_argument("--peak-bounds", type=parse_peak_bounds, default=None,
                   help=f"stage 1's clamp of the peaks 'LO,HI' (default {PEAK_CLAMP}; "
                        "reproduce --sparse: the library's (0.001, 0.999))")
    p.add_argument("--seed", type=setting("seed"), default=0, help="generator seed (0 to 2^64 - 1)")
    p.add_argument("--draws", type=setting("draws"), default=1,
                   help="repeat the whole experiment over this many independent draws (master "
                        "seeds seed .. seed + draws - 1, trained together) and report every "
                        "figure as its median over the draws with a 90%% interval (default 1: "
                        "one run, reported as it is)")
    p.add_argument("--device", type=device_type, default="auto",
                   help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--threads", type=setting("threads"), default=None,
                   help="CPU threads while training, at most the CPU count (default: torch's, all "
                        "cores; 1 is faster on a busy shared machine)")
    p.add_argument("--quick", action="store_true", help="small run (overrides --seeds/--epochs)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--step-by-step", action="store_true",
                   help="one launch per epoch (the reference engine) instead of one per stage")


def _config(p, args, quick, **extra):
    """The run's Config from the parsed options (--quick's settings applied)."""
    if args.quick:
        args.seeds, args.epochs = quick["seeds"], quick["epochs"]
    if args.seed + args.draws - 1 > SEED_MAX:
        p.error(f"--draws {args.draws} from --seed {args.seed} needs master seeds past "
                f"2^64 - 1")
    return Config(kinds=args.kinds, seeds=args.seeds, points=args.points, epochs=args.epochs,
                  lr_peaks=args.lr_peaks, lr_weights=args.lr_weights or dict(LR_WEIGHTS),
                  warmup_fraction=args.warmup_fraction or dict(WARMUP_FRACTION),
                  peak_bounds=args.peak_bounds or PEAK_CLAMP,
                  seed=args.seed, device=args.device, threads=args.threads,
                  fused=not args.step_by_step, progress=not args.no_progress, draws=args.draws,
                  **extra)


def _scaling(p):
    """The options of a run split into work cells (docs/training.md, "Resuming")."""
    p.add_argument("--resume", action="store_true",
                   help="reuse the finished work cells that --out's cells/ holds (from a run "
                        "with the same options that stopped); recompute the rest")
    p.add_argument("--keep-cells", action="store_true",
                   help="keep cells/ (every work cell's result) after the run completes")
    p.add_argument("--block-seeds", type=int_type("block-seeds", lambda n, v: check_int(n, v, 1)),
                   default=BLOCK_SEEDS,
                   help=f"most seeds in one work cell (default {BLOCK_SEEDS}); a cell is the unit "
                        "that torchrun ranks share and --resume reuses")


def _world(parser):
    """This process's :class:`~.distributed.World`; a usage error when torchrun's variables
    are not valid."""
    try:
        return World.from_env()
    except ValueError as e:
        parser.error(str(e))


class _Parser(argparse.ArgumentParser):
    """Under torchrun every rank parses the same options: only rank 0 says a usage error (the
    others exit 2 quietly), so it is said once."""

    def error(self, message):
        if not _rank_zero():
            raise SystemExit(2)
        super().error(message)


def _rank_zero():
    """Whether this process speaks: not a rank other than 0. Read from ``RANK`` itself, as the
    error may be that the variables are not valid (then every process says so)."""
    rank = os.environ.get("RANK", "0").strip()
    return not (rank.isdigit() and int(rank) != 0)


def _session(parser, args, cfg):
    """The run's ranks with ``--out`` claimed (rank 0) before any work: a usage error naming the
    option otherwise (said once, by rank 0); see distributed."""
    world = _world(parser)
    options = {k: v for k, v in vars(args).items() if k != "func"}
    try:
        s = Session(world, args.out, resume=args.resume, options=options, device=cfg.device)
    except NoDevice as e:  # said by the rank without a GPU, whichever it is (rank 0 has one)
        argparse.ArgumentParser.error(parser, str(e))  # not _Parser's: that one says rank 0's only
    except (OutDirError, OptionsMismatch) as e:
        if world.rank != 0:
            raise SystemExit(2) from None
        parser.error(str(e))
    if s.od.removed:
        print(f"compnet: --out {args.out}: deleted the earlier run's {', '.join(s.od.removed)}",
              file=sys.stderr)
    return s


def add_reproduce_parser(sub):
    p = sub.add_parser("reproduce", help="the paper's Tables 1-2 (section 4.1), with its figures")
    _common(p, 30, (1000, 1000))
    p.add_argument("--depth", type=setting("depth"), default=5,
                   help=f"hidden layers, 1 to {MAX_HIDDEN} (the fused kernels' limit; default 5)")
    p.add_argument("--out", default=None,
                   help="output folder (its earlier compnet results are replaced; default "
                        "./compnet-results, with --sparse ./compnet-sparse)")
    p.add_argument("--sparse", action="store_true",
                   help="the later version's sparse-data test instead: train on 10 points "
                        "(i/9, ends included), test MSE on 10 others ((2j+1)/20), Adam lr 1e-3 "
                        "for peaks and weights unless --lr-peaks/--lr-weights say otherwise, "
                        "1 CPU thread unless --threads; --points does not apply "
                        "(docs/reproduce.md, 'Sparse data')")
    p.add_argument("--nonconvex", nargs="?", const="all", default=None,
                   type=name_list(NONCONVEX_TARGETS), metavar="TARGETS",
                   help="the non-convex targets instead (difference of two compositional "
                        "networks, each target on its domain; "
                        f"{', '.join(NONCONVEX_TARGETS)} or 'all', the default)")
    # None: not given (the sparse test has its own defaults for points and lr_peaks;
    # --targets conflicts with --nonconvex)
    p.set_defaults(points=None, lr_peaks=None, targets=None)

    _scaling(p)

    def run(args):
        if args.nonconvex and args.sparse:
            p.error("--sparse runs the paper's convex targets; it cannot be combined with "
                    "--nonconvex")
        if args.nonconvex or args.sparse:
            which = "--sparse" if args.sparse else "--nonconvex"
            if _world(p).size > 1:
                p.error(f"{which} runs in one process; torchrun splits the convex reproduction "
                        "and sweep only")
            if args.resume or args.keep_cells or args.block_seeds != BLOCK_SEEDS:
                p.error(f"--resume, --keep-cells and --block-seeds do not apply to {which} "
                        "(it is not split into work cells)")
        if args.sparse:
            return run_sparse(p, args)
        if args.nonconvex and args.targets is not None:
            p.error("--targets picks convex targets; with --nonconvex name the non-convex "
                    "targets as its value, e.g. --nonconvex cubic,bump")
        args.points = Config.points if args.points is None else args.points
        args.lr_peaks = args.lr_peaks or LR_PEAKS
        args.out = "./compnet-results" if args.out is None else args.out
        cfg = _config(p, args, QUICK, depth=args.depth)
        with _session(p, args, cfg) as s:
            if args.nonconvex:
                return reproduce.run_nonconvex(args.nonconvex, cfg, s.od,
                                               draw_plots=not args.no_plots)
            return reproduce.run(args.targets or PAPER_TARGETS, cfg, s.od,
                                 draw_plots=not args.no_plots, session=s,
                                 block_seeds=args.block_seeds, keep_cells=args.keep_cells)

    p.set_defaults(func=run)
    return p


def run_sparse(p, args):
    """``compnet reproduce --sparse`` (:mod:`~compnet_ext.experiments.sparse_reproduce`)."""
    if args.points is not None:
        p.error("--points does not apply to --sparse (10 training and 10 test points, fixed)")
    args.points = sparse.TRAIN_POINTS
    args.lr_peaks = args.lr_peaks or sparse.SPARSE_LR
    args.lr_weights = args.lr_weights or weight_lrs(sparse.SPARSE_LR)
    args.threads = args.threads or sparse.SPARSE_SETTINGS["threads"]
    args.warmup_fraction = (args.warmup_fraction
                            or warmup_fractions(sparse.SPARSE_SETTINGS["warmup_fraction"]))
    args.peak_bounds = args.peak_bounds or sparse.SPARSE_SETTINGS["peak_bounds"]
    args.out = "./compnet-sparse" if args.out is None else args.out
    cfg = _config(p, args, QUICK, depth=args.depth)
    with _session(p, args, cfg) as s:
        return sparse_reproduce.run(args.targets or PAPER_TARGETS, cfg, s.od,
                                    draw_plots=not args.no_plots)


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

    _scaling(p)

    def run(args):
        cfg = _config(p, args, SWEEP_QUICK)
        if args.depths is None:
            args.depths = parse_depths(SWEEP_QUICK["depths"] if args.quick else "2:32")
        with _session(p, args, cfg) as s:
            return sweep.run(args.targets, cfg, args.depths, s.od, pieces=not args.no_pieces,
                             draw_plots=not args.no_plots, session=s,
                             block_seeds=args.block_seeds, keep_cells=args.keep_cells)

    p.set_defaults(func=run)
    return p


# ---------------------------------------------------------------------------------------------
# plot

# Agg refuses images over 2^16 pixels a side; the tallest figure (the most hidden layers the
# fused kernels take, 64: 41.6 in) gets there near 1500 dpi, and far below that the image
# already takes gigabytes.
MAX_DPI = 1000


def _build_mlp(args):
    g = torch.Generator().manual_seed(args.seed)
    if args.kind == "compositional":
        if args.peaks == "half":
            p = torch.full((1, args.depth + 1), 0.5, dtype=torch.float64)
        else:
            p = starting_peaks(1, args.depth, g, torch.float64)
        return BatchedMLP.from_layers(encode(p, sign=args.sign))
    return BatchedMLP(1, mlp_widths(args.width, args.depth), generator=g, dtype=torch.float64)


def run_plot(args):
    reason = plots.matplotlib_missing()
    if reason:
        print(f"compnet plot: error: {reason}", file=sys.stderr)
        return 1
    mlp = _build_mlp(args)
    if args.what == "neurons":
        fig = plots.plot_neurons(mlp, 0, post_relu=not args.pre_relu,
                                 title=f"{args.kind} network, depth {args.depth}: hidden neurons "
                                       f"({'before' if args.pre_relu else 'after'} ReLU)")
    else:
        fig = plots.plot_fit(mlp, TARGETS[args.target].fn)
    fmt = os.path.splitext(args.out)[1][1:].lower() or "png"
    plots.save(fig, args.out, format=fmt, dpi=args.dpi)
    print(f"wrote {args.out}")
    return 0


def add_plot_parser(sub):
    p = sub.add_parser("plot", help="draw a network's neurons or its fit to a target (PNG)")
    p.add_argument("what", choices=["neurons", "fit"], help="what to draw")
    p.add_argument("--kind", choices=["compositional", "default"], default="compositional",
                   help="encoded compositional network, or PyTorch-default initialised MLP")
    p.add_argument("--depth", type=setting("depth"), default=5,
                   help=f"hidden layers (D), 1 to {MAX_HIDDEN}")
    p.add_argument("--width", type=setting("width"), default=4,
                   help=f"hidden width, 1 to {MAX_WIDTH} (default kind only)")
    p.add_argument("--sign", type=int, choices=[-1, 1], default=-1)
    p.add_argument("--peaks", choices=["half", "random"], default="random",
                   help="compositional peaks: all 1/2 or random in "
                        f"[{PEAK_RANGE[0]}, {PEAK_RANGE[1]}]")
    p.add_argument("--seed", type=setting("seed"), default=0, help="random seed (0 to 2^64 - 1)")
    p.add_argument("--target", type=plot_target, default="x3",
                   help=f"target for `fit` ({', '.join(sorted(TARGETS))})")
    p.add_argument("--pre-relu", action="store_true", help="draw pre-activations")
    p.add_argument("--dpi", type=int_type("dpi", lambda name, v: check_int(name, v, 1, MAX_DPI)),
                   default=120, help=f"1 to {MAX_DPI}")
    p.add_argument("--out", type=image_path, required=True,
                   help="output image path (PNG unless its extension names another format)")
    p.set_defaults(func=run_plot)
    return p


SUBCOMMANDS = [add_plot_parser, add_reproduce_parser, add_sweep_parser]


def build_parser():
    parser = _Parser(prog="compnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _out_of_memory(e):
    # The CPU allocator's failure is a plain RuntimeError; only its message tells it apart.
    return (isinstance(e, (MemoryError, torch.cuda.OutOfMemoryError))
            or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e)))


def main(argv=None):
    """Entry point of the ``compnet`` script; returns the exit status.

    0: done; 1: an expected runtime condition (a write failed, out of memory, matplotlib missing
    for `plot`), one line on stderr; 2: usage error (argparse, before any work); 130: interrupted
    (Ctrl-C), files written so far are kept. Unexpected errors (bugs) keep their traceback.
    """
    args = build_parser().parse_args(argv)
    name = f"compnet {args.command}"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if not _rank_zero():  # under torchrun Ctrl-C reaches every rank: rank 0 says it
            return 130
        if sys.stderr.isatty():
            sys.stderr.write("\n")  # end the progress bar's line
        where = ("nothing written" if args.command == "plot"
                 else f"results written so far are in {args.out}")
        print(f"{name}: interrupted; {where}", file=sys.stderr)
        return 130
    except NotAFileError as e:  # a file to write is a device, FIFO, ...: nothing replaced
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # writing the results failed: disk full, permissions changed, ...
        print(f"{name}: error: {e}", file=sys.stderr)
        return 1
    except RankError as e:  # under torchrun: another rank failed; its own error is its log's
        print(f"{name}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if not _out_of_memory(e):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"{name}: error: out of memory ({first}); try fewer --seeds, --points or depths",
              file=sys.stderr)
        return 1
