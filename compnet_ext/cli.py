"""Command line: ``compnet <subcommand> ...`` (also ``python -m compnet_ext``).

Each subcommand is added by one ``add_<name>_parser(sub)`` function that registers its parser and
sets ``func`` to the function that runs it; add new ones to ``SUBCOMMANDS``.
"""
import argparse
import math

import torch

from .experiments import add_reproduce_parser, add_sweep_parser

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


def _run_plot(args):
    from compnet_ext import plots

    mlp = _build_mlp(args)
    if args.what == "neurons":
        fig = plots.plot_neurons(mlp, 0, post_relu=not args.pre_relu,
                                 title=f"{args.kind} network, depth {args.depth}: hidden neurons "
                                       f"({'before' if args.pre_relu else 'after'} ReLU)")
    else:
        fig = plots.plot_fit(mlp, TARGETS[args.target])
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")
    return 0


def add_plot_parser(sub):
    p = sub.add_parser("plot", help="draw a network's neurons or its fit to a target (PNG)")
    p.add_argument("what", choices=["neurons", "fit"], help="what to draw")
    p.add_argument("--kind", choices=["compositional", "default"], default="compositional",
                   help="encoded compositional network, or PyTorch-default initialised MLP")
    p.add_argument("--depth", type=int, default=5, help="hidden layers (D)")
    p.add_argument("--width", type=int, default=4, help="hidden width (default kind only)")
    p.add_argument("--sign", type=int, choices=[-1, 1], default=-1)
    p.add_argument("--peaks", choices=["half", "random"], default="random",
                   help="compositional peaks: all 1/2 or random in [0.25, 0.75]")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--target", choices=sorted(TARGETS), default="x3", help="target for `fit`")
    p.add_argument("--pre-relu", action="store_true", help="draw pre-activations")
    p.add_argument("--dpi", type=int, default=120)
    p.add_argument("--out", required=True, help="output PNG path")
    p.set_defaults(func=_run_plot)
    return p


SUBCOMMANDS = [add_plot_parser, add_reproduce_parser, add_sweep_parser]


def build_parser():
    parser = argparse.ArgumentParser(prog="compnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv=None):
    """Entry point of the ``compnet`` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if getattr(args, "depth", 1) < 1:
        build_parser().error("--depth must be >= 1")
    return args.func(args)
