"""Repeated draws (``Config.draws``, ``--draws R``): each figure with its spread over the draws.

A run with ``draws`` = R trains R independent repeats of the whole experiment in the same
launches (draw ``r`` has master seed ``seed + r``; its rows are those of a run with that seed,
:func:`~compnet_ext.experiments.engine.starting_draw`). Here the per-seed summaries of all the
rows are cut into draws (:func:`split`), each draw summarised as a run of its own would be, and
every statistic reported as its median over the draws with a 90% interval (:func:`aggregate`):
the 5% and 95% quantiles of the R values (linear interpolation, so with R = 10 the interval
lies between the two lowest and the two highest draws). A claim is stated with how many draws
it holds in (:func:`checks_over_draws`), a reference figure (the paper's) as inside, above or
below our interval (:func:`placement`). With R = 1 none of this is used: the files are those
of a single run.
"""
import csv
import math

import torch

from .outdir import atomic_write
from .report import summarize

STATS = ("min", "median", "mean")
QUANTILES = (0.05, 0.5, 0.95)
"""The interval's ends and the middle: a 90% interval around the median over the draws."""
MAX_DIGITS = 3


def _is_summary(node):
    return isinstance(node, dict) and "per_seed" in node


def split(node, draws):
    """The summaries of every row (``draws x seeds``, draw after draw) as ``draws`` summaries,
    one per draw: each summary leaf (a dict with ``per_seed``) re-summarised on its draw's
    seeds (the same doubles as a run of that draw alone: the same figures, bit for bit), every
    other list (per-seed values such as ``best_step``) cut likewise, everything else kept."""
    if _is_summary(node):
        return [summarize(torch.tensor(c, dtype=torch.float64))
                for c in _chunks(node["per_seed"], draws)]
    if isinstance(node, dict):
        parts = {k: split(v, draws) for k, v in node.items()}
        return [{k: parts[k][r] for k in node} for r in range(draws)]
    if isinstance(node, list):
        return _chunks(node, draws)
    return [node] * draws


def _chunks(values, draws):
    n = len(values) // draws
    if n * draws != len(values):
        raise ValueError(f"{len(values)} rows cannot be cut into `draws` = {draws} draws")
    return [values[r * n:(r + 1) * n] for r in range(draws)]


def spread(values):
    """``(median, lo, hi)`` of a list of numbers: :data:`QUANTILES`."""
    q = torch.quantile(torch.tensor(values, dtype=torch.float64),
                       torch.tensor(QUANTILES, dtype=torch.float64))
    lo, mid, hi = (float(v) for v in q)
    return mid, lo, hi


def aggregate(per_draw, reference=None):
    """One nested dict from the draws' (same-shaped) summaries: each summary leaf becomes
    ``{"min", "median", "mean"}`` (medians over the draws), ``"interval90"`` ({stat: [lo, hi]}),
    ``"draws"`` ({stat: [one value per draw]}) and ``"per_seed"`` (every row, draw after draw);
    a ``reference`` of the same shape with ``{stat: figure}`` leaves adds ``"reference_vs_ours"``
    ({stat: "inside" | "above" | "below"}) where it has a figure. Other values: the first
    draw's, per-seed lists joined."""
    first = per_draw[0]
    if _is_summary(first):
        out = {"interval90": {}, "draws": {}}
        for s in STATS:
            vals = [d[s] for d in per_draw]
            mid, lo, hi = spread(vals)
            out[s] = mid
            out["interval90"][s] = [lo, hi]
            out["draws"][s] = vals
        out["per_seed"] = [v for d in per_draw for v in d["per_seed"]]
        ref = {s: v for s, v in (reference or {}).items() if s in STATS and v is not None}
        if ref:
            out["reference_vs_ours"] = {s: placement(v, *out["interval90"][s])
                                        for s, v in ref.items()}
        return out
    if isinstance(first, dict):
        return {k: aggregate([d[k] for d in per_draw], (reference or {}).get(k))
                for k in first}
    if isinstance(first, list):
        return [v for d in per_draw for v in d]
    return first


def placement(figure, lo, hi):
    """Where ``figure`` lies against our interval ``[lo, hi]``."""
    return "below" if figure < lo else "above" if figure > hi else "inside"


def digits(mid, lo, hi):
    """Significant digits the interval supports: the median's digits down to the decade of the
    interval's width (an interval narrower than the median's leading digit gets the next digit
    too, so its ends do not print alike), at least 1, at most :data:`MAX_DIGITS`."""
    width = hi - lo
    if width <= 0 or not mid:
        return MAX_DIGITS if width <= 0 else 1
    d = math.floor(math.log10(abs(mid))) - math.floor(math.log10(width)) + 1
    return max(1, min(MAX_DIGITS, d))


def fmt(mid, lo, hi):
    """``median [lo, hi]`` with the digits the interval supports."""
    d = digits(mid, lo, hi) - 1
    return f"{mid:.{d}e} [{lo:.{d}e}, {hi:.{d}e}]"


def cell(leaf, stat):
    """A table cell: :func:`fmt` of ``leaf``'s ``stat``."""
    return fmt(leaf[stat], *leaf["interval90"][stat])


def reference_cell(figure, leaf, stat):
    """The reference figure and where it lies against ours, e.g. ``7.86e-08 (below)``."""
    if figure is None:
        return "n/a"
    return f"{figure:.2e} ({placement(figure, *leaf['interval90'][stat])})"


def checks_over_draws(check, per_draw, aggregated):
    """``check`` (results -> [(claim, holds)]) counted over the draws: ``[(claim, holds in
    every draw, draws it holds in)]``. The claim is worded from the medians over the draws
    (``check(aggregated)``); the draws' lists must match it one to one."""
    lists = [check(d) for d in per_draw]
    named = check(aggregated)
    if any(len(c) != len(named) for c in lists):
        raise ValueError("the draws' checks do not match one to one")
    out = []
    for i, (claim, _) in enumerate(named):
        n = sum(bool(c[i][1]) for c in lists)
        out.append((f"{claim} (medians over the draws): holds in {n} of {len(per_draw)} draws",
                    n == len(per_draw), n))
    return out


def check_records(checks):
    """results.json's ``checks`` from ``[(claim, holds, draws it holds in or None)]``: the
    count only where there are draws (a single run's records stay as they were)."""
    return [{"claim": c, "holds": ok, **({} if n is None else {"holds_in": n})}
            for c, ok, n in checks]


def print_checks(checks, out):
    for claim, ok, _ in checks:
        print(f"- [{'x' if ok else ' '}] {claim}", file=out)


def csv_columns(prefix=""):
    """The CSV columns of one aggregated statistic set: ``min, min_lo, min_hi, median, ...``."""
    return [f"{prefix}{s}{e}" for s in STATS for e in ("", "_lo", "_hi")]


def csv_values(leaf):
    """The values of :func:`csv_columns` for an aggregated leaf."""
    return [f"{v:.6e}" for s in STATS for v in (leaf[s], *leaf["interval90"][s])]


def write_csv(path, results, reference, draws):
    """results.csv of a run with draws: per (target, kind) the medians over the draws and their
    90% intervals, the reference figures and where they lie, the seeds per draw and the draws."""
    def write(f):
        w = csv.writer(f)
        w.writerow(["target", "kind"] + csv_columns() + ["paper_min", "paper_min_vs_ours",
                                                         "paper_mean", "paper_mean_vs_ours",
                                                         "seeds", "draws"])
        for t, per_kind in results.items():
            for k, leaf in per_kind.items():
                ref = reference.get(t, {}).get(k, {})
                vs = leaf.get("reference_vs_ours", {})
                w.writerow([t, k] + csv_values(leaf) + [
                    ref.get("min", ""), vs.get("min", ""), ref.get("mean", ""),
                    vs.get("mean", ""), len(leaf["per_seed"]) // draws, draws])

    atomic_write(path, write)


def table_cells(leaf, stat, figure):
    """:func:`report.markdown_tables`'s ``cells`` for aggregated results."""
    return cell(leaf, stat), reference_cell(figure, leaf, stat)


def caption(draws):
    """What a table of aggregated results shows, for its title line."""
    return (f" Over {draws} draws (master seeds seed .. seed + {draws - 1}): median [90% "
            f"interval] of each statistic, to the digits the interval supports; a reference "
            f"figure is marked inside, above or below our interval.")


def sweep_columns(leaf):
    """A sweep row's MSE columns from an aggregated leaf: medians over the draws and their
    90% intervals (``min``, ``min_lo``, ``min_hi``, ...)."""
    out = {}
    for s in STATS:
        out[s] = leaf[s]
        out[f"{s}_lo"], out[f"{s}_hi"] = leaf["interval90"][s]
    return out


def sweep_cell(row, stat):
    """:func:`report.sweep_table`'s ``cell`` for rows with draws."""
    return fmt(row[stat], row[f"{stat}_lo"], row[f"{stat}_hi"])
