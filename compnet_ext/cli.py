"""Command line: ``compnet <subcommand> ...`` (also ``python -m compnet_ext``).

Each subcommand is added by one ``add_<name>_parser(sub)`` function that registers its parser and
sets ``func`` to the function that runs it; add new ones to ``SUBCOMMANDS``.
"""
import argparse
import math
import os
import sys

import torch

from .experiment_plots import matplotlib_missing
from .experiments import add_reproduce_parser, add_sweep_parser, int_range, seed_type
from .nn import MAX_HIDDEN, MAX_WIDTH
from .outdir import atomic_write

TARGETS = {
    "x2": lambda x: x**2,
    "x3": lambda x: x**3,
    "x11": lambda x: x**11,
    "sin": lambda x: torch.sin(math.pi * x / 2),
    "tanh": lambda x: torch.tanh(3 * x),
}


def _build_mlp(args):
    import compnet_ext
    from compnet_ext.nn import BatchedMLP

    g = torch.Generator().manual_seed(args.seed)
    if args.kind == "compositional":
        peaks = 0.5 if args.peaks == "half" else None
        if peaks is None:
            p = 0.25 + 0.5 * torch.rand(1, args.depth + 1, generator=g, dtype=torch.float64)
        else:
            p = torch.full((1, args.depth + 1), 0.5, dtype=torch.float64)
        return BatchedMLP.from_layers(compnet_ext.encode(p, sign=args.sign))
    widths = (1,) + (args.width,) * args.depth + (1,)
    return BatchedMLP(1, widths, generator=g, dtype=torch.float64)


# Agg refuses images over 2^16 pixels a side; the tallest figure (64 layers of neurons, 41.6 in)
# gets there near 1500 dpi, and far below that the image already takes gigabytes.
MAX_DPI = 1000


def image_path(text):
    """argparse type of `plot --out`: a new or existing image file in an existing, writable
    folder, with a format matplotlib writes (no extension: PNG)."""
    if not text.strip() or os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"must name an image file, got {text!r}")
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {folder!r} does not exist or is not writable")
    ext = os.path.splitext(text)[1][1:].lower()
    if ext and not matplotlib_missing():  # without matplotlib, the run says so itself
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        if ext not in formats:
            raise argparse.ArgumentTypeError(
                f"unsupported image format '.{ext}'; use one of {', '.join(sorted(formats))}")
    return text


def _run_plot(args):
    reason = matplotlib_missing()
    if reason:
        print(f"compnet plot: error: {reason}", file=sys.stderr)
        return 1
    from compnet_ext import plots

    mlp = _build_mlp(args)
    if args.what == "neurons":
        fig = plots.plot_neurons(mlp, 0, post_relu=not args.pre_relu,
                                 title=f"{args.kind} network, depth {args.depth}: hidden neurons "
                                       f"({'before' if args.pre_relu else 'after'} ReLU)")
    else:
        fig = plots.plot_fit(mlp, TARGETS[args.target])
    fmt = os.path.splitext(args.out)[1][1:].lower() or "png"
    atomic_write(args.out, lambda f: fig.savefig(f, format=fmt, dpi=args.dpi), binary=True)
    print(f"wrote {args.out}")
    return 0


def add_plot_parser(sub):
    p = sub.add_parser("plot", help="draw a network's neurons or its fit to a target (PNG)")
    p.add_argument("what", choices=["neurons", "fit"], help="what to draw")
    p.add_argument("--kind", choices=["compositional", "default"], default="compositional",
                   help="encoded compositional network, or PyTorch-default initialised MLP")
    p.add_argument("--depth", type=int_range(1, MAX_HIDDEN), default=5,
                   help=f"hidden layers (D), 1 to {MAX_HIDDEN}")
    p.add_argument("--width", type=int_range(1, MAX_WIDTH), default=4,
                   help=f"hidden width, 1 to {MAX_WIDTH} (default kind only)")
    p.add_argument("--sign", type=int, choices=[-1, 1], default=-1)
    p.add_argument("--peaks", choices=["half", "random"], default="random",
                   help="compositional peaks: all 1/2 or random in [0.25, 0.75]")
    p.add_argument("--seed", type=seed_type, default=0, help="random seed (0 to 2^64 - 1)")
    p.add_argument("--target", choices=sorted(TARGETS), default="x3", help="target for `fit`")
    p.add_argument("--pre-relu", action="store_true", help="draw pre-activations")
    p.add_argument("--dpi", type=int_range(1, MAX_DPI), default=120, help=f"1 to {MAX_DPI}")
    p.add_argument("--out", type=image_path, required=True,
                   help="output image path (PNG unless its extension names another format)")
    p.set_defaults(func=_run_plot)
    return p


SUBCOMMANDS = [add_plot_parser, add_reproduce_parser, add_sweep_parser]


def build_parser():
    parser = argparse.ArgumentParser(prog="compnet", description=__doc__.splitlines()[0])
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
        if sys.stderr.isatty():
            sys.stderr.write("\n")  # end the progress bar's line
        where = ("nothing written" if args.command == "plot"
                 else f"results written so far are in {args.out}")
        print(f"{name}: interrupted; {where}", file=sys.stderr)
        return 130
    except OSError as e:  # writing the results failed: disk full, permissions changed, ...
        print(f"{name}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if not _out_of_memory(e):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"{name}: error: out of memory ({first}); try fewer --seeds, --points or depths",
              file=sys.stderr)
        return 1
