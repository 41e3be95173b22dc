"""What a run reports: summaries, the markdown tables printed (the paper's Tables 1-2, the
sweep table), and the files results.json / results.csv / sweep.csv (written atomically)."""
import csv
import json
import math
import sys

import torch

from ..targets import label
from .outdir import atomic_write
from .paper import KIND_LABELS, PAPER
from .plots import matplotlib_missing

# The paper's two tables and the targets each holds.
PAPER_TABLES = (("Table 1", ("x3", "x11")), ("Table 2", ("sin", "tanh3")))


def summarize(per_seed):
    """{"min", "mean", "median", "per_seed"} of a 1-D tensor of final MSEs."""
    f = per_seed.double()
    return {"min": float(f.min()), "mean": float(f.mean()), "median": float(f.median()),
            "per_seed": [float(v) for v in f]}


def summaries(res):
    """{target: {kind: summary}} from run()'s {target: {kind: KindResult}}."""
    return {n: {k: summarize(r.final) for k, r in per_kind.items()} for n, per_kind in res.items()}


def _e(v):
    return "n/a" if v is None else f"{v:.2e}"


def _cells(leaf, stat, paper):
    return _e(leaf[stat]), _e(paper)


def markdown_tables(results, seeds, *, other_title="Other targets", cells=None, caption=""):
    """The paper's Tables 1-2 shape (min and mean MSE per kind) with the paper's figures beside
    ours; targets outside the paper's tables get a table of their own (``other_title``), with
    no 'paper' columns when the paper has none of them. ``cells(leaf, stat, paper_figure)``:
    the (ours, paper) texts of a cell (default: both to three digits); ``caption``: added to
    each table's title line."""
    out = []
    named = [t for _, ts in PAPER_TABLES for t in ts]
    groups = [(title, [t for t in ts if t in results]) for title, ts in PAPER_TABLES]
    groups.append((other_title, [t for t in results if t not in named]))
    for title, ts in groups:
        if not ts:
            continue
        kinds = list(results[ts[0]])
        paper = any(t in PAPER for t in ts)
        head = ["Network"]
        for stat in ("min", "mean"):
            for t in ts:
                head += [f"{stat.capitalize()} {label(t)}"] + (["paper"] if paper else [])
        note = "; 'paper' = the paper's figure." if paper else "."
        out.append(f"**{title}.** Minimum and mean (n = {seeds}) MSE{note}{caption}")
        out.append("")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for k in kinds:
            row = [KIND_LABELS.get(k, k)]
            for stat in ("min", "mean"):
                for t in ts:
                    ours, theirs = (cells or _cells)(results[t][k], stat,
                                                     PAPER.get(t, {}).get(k, {}).get(stat))
                    row += [ours] + ([theirs] if paper else [])
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def qualitative_checks(results):
    """The paper's claims as (description, holds) pairs, for every target that has the kinds."""
    checks = []
    for t, per_kind in results.items():
        if "enforced" not in per_kind:
            continue
        mean_e = per_kind["enforced"]["mean"]
        others = {k: v["mean"] for k, v in per_kind.items() if k != "enforced"}
        if others:
            checks.append((f"{t}: 'enforced' has the lowest mean MSE",
                           all(mean_e < v for v in others.values())))
        for k in ("default", "raai"):
            if k in per_kind:
                shown, ratio = _ratio(per_kind[k]["mean"], mean_e)
                checks.append((f"{t}: '{k}' mean / 'enforced' mean = {shown} >= 100",
                               ratio is not None and ratio >= 100))
    return checks


def _ratio(a, b):
    """``(text, a / b)`` of two mean MSEs; the ratio None where it means nothing (a mean not
    finite, or both 0), inf where only ``b`` is 0 (a perfect fit beats any other)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return "n/a (a mean MSE is not finite)", None
    if b == 0:
        return ("n/a (both 0)", None) if a == 0 else ("inf", math.inf)
    ratio = a / b
    return (f"{ratio:.0f}" if ratio >= 1 else f"{ratio:.2g}"), ratio  # no "0" for 0.3


def config_record(cfg, **extra):
    """The ``config`` of results.json: a :class:`~compnet_ext.experiments.config.Config`'s
    settings that decide the numbers, and ``extra``."""
    rec = {"seeds": cfg.seeds, "points": cfg.points, "width": cfg.network_width(),
           "epochs": list(cfg.epochs), "lr_peaks": cfg.lr_peaks, "lr_weights": cfg.lr_weights,
           "warmup_fraction": cfg.warmup_fraction,
           "warmup_steps": {k: cfg.warmup_steps(k) for k in cfg.lr_weights},
           "peak_bounds": list(cfg.peak_bounds),
           "seed": cfg.seed, "device": str(cfg.device),
           "dtype": str(cfg.dtype).removeprefix("torch."), "peak_range": list(cfg.peak_range),
           "optimizer": "Adam (torch defaults but lr)", "torch": torch.__version__}
    if cfg.draws > 1:  # a single run's record stays as it was
        rec["draws"] = cfg.draws
        rec["master_seeds"] = [cfg.seed + r for r in range(cfg.draws)]
    rec.update(extra)
    return rec


def paper_figures(results):
    """The paper's figures for the targets of ``results`` that it has."""
    return {t: PAPER[t] for t in results if t in PAPER}


def write_json(path, doc):
    atomic_write(path, lambda f: json.dump(doc, f, indent=1))


def write_csv(path, results):
    """One row per (target, kind): our min/median/mean and the paper's min/mean."""
    def write(f):
        w = csv.writer(f)
        w.writerow(["target", "kind", "min", "median", "mean", "paper_min", "paper_mean", "seeds"])
        for t, per_kind in results.items():
            for k, s in per_kind.items():
                p = PAPER.get(t, {}).get(k, {})
                w.writerow([t, k, f"{s['min']:.6e}", f"{s['median']:.6e}", f"{s['mean']:.6e}",
                            p.get("min", ""), p.get("mean", ""), len(s["per_seed"])])

    atomic_write(path, write)


SWEEP_FIELDS = ("depth", "target", "kind", "min", "median", "mean", "pieces_min",
                "pieces_median", "pieces_max")
SWEEP_DRAW_FIELDS = SWEEP_FIELDS + ("min_lo", "min_hi", "median_lo", "median_hi", "mean_lo",
                                    "mean_hi", "draws")
"""A sweep with draws: MSE columns are medians over the draws, ``_lo``/``_hi`` their 90%
intervals; pieces are over every row of every draw."""


def write_sweep_csv(path, rows):
    """sweep.csv: one row per (depth, target, kind), :data:`SWEEP_FIELDS` (with draws:
    :data:`SWEEP_DRAW_FIELDS`)."""
    fields = SWEEP_DRAW_FIELDS if rows and "draws" in rows[0] else SWEEP_FIELDS

    def write(f):
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)

    atomic_write(path, write)


def sweep_table(rows, cell=None):
    """The sweep's markdown table: MSE and median pieces per depth, target and kind;
    ``cell(row, stat)``: an MSE's text (default: three digits)."""
    cell = cell or (lambda r, stat: f"{r[stat]:.2e}")
    out = ["| depth | target | kind | min MSE | median MSE | mean MSE | pieces (median) |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        pcs = "" if r["pieces_median"] is None else f"{r['pieces_median']:g}"
        out.append(f"| {r['depth']} | {r['target']} | {r['kind']} | {cell(r, 'min')} | "
                   f"{cell(r, 'median')} | {cell(r, 'mean')} | {pcs} |")
    return "\n".join(out)


def skip(skipped, key, what, reason):
    """Record in results.json ('skipped') and say once on stderr why ``what`` was left out."""
    skipped[key] = reason
    print(f"compnet: {what} skipped: {reason}", file=sys.stderr)


def draw(skipped, enabled, paint):
    """``paint()`` -> PNG names written; none when not ``enabled`` or without matplotlib (an
    optional dependency: the results are complete without the pictures, so the run goes on)."""
    if not enabled:
        return []
    reason = matplotlib_missing()
    if reason:
        skip(skipped, "plots", "plots", reason)
        return []
    return paint()
