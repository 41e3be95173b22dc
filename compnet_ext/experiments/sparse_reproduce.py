"""``compnet reproduce --sparse``: the later version's sparse-data test (:mod:`.sparse`) into an
output folder -- results.csv, best_fits.png (best seed per kind, training and test points
marked), loss_curves.png (test and training MSE during the weight training), and results.json
last -- and its table on stdout beside the later version's figures (docs/reproduce.md)."""
import csv
import sys
import time

import torch

from ..mlp_ops import mlp_forward
from ..targets import get_target, label, select
from . import draws as drawn, plots, report, sparse
from .outdir import atomic_write
from .paper import KIND_LABELS

NOTE = ("'later version' = the minimum test MSE reported for the paper's later version (n = 30), "
        "known to us second hand and approximate; its point layout is unknown, so compare orders "
        "of magnitude, not digits.")


def _stats(t):
    t = t.double()
    return {"min": float(t.min()), "median": float(t.median()), "mean": float(t.mean()),
            "per_seed": [float(v) for v in t]}


def summaries(res):
    """{target: {kind: {"test", "train", "best_test": stats, "best_step": [...]}}}."""
    return {n: {k: {"test": _stats(r.test), "train": _stats(r.train),
                    "best_test": _stats(r.best_test), "best_step": [int(s) for s in r.best_step]}
                for k, r in per_kind.items()} for n, per_kind in res.items()}


def _e(v):
    return "n/a" if v is None else f"{v:.2e}"


def _cell(leaf, stat):
    return _e(leaf[stat])


def _later_cell(figure, leaf, stat):
    return _e(figure)


def table(results, seeds, test_every, *, draws=1):
    """The table of :func:`summaries` (``draws`` = 1) or of their aggregate over the draws."""
    cell, later = (_cell, _later_cell) if draws == 1 else (drawn.cell, drawn.reference_cell)
    head = ["Target", "Network", "Min test", "later version", "Mean test", "Median test",
            "Min train", "Mean train", "Min test, best step", "Mean test, best step"]
    caption = "" if draws == 1 else drawn.caption(draws)
    out = [f"**Sparse-data test.** Test MSE on {sparse.TEST_POINTS} held-out points after training "
           f"on {sparse.TRAIN_POINTS}; minimum, mean and median over n = {seeds} seeds of the "
           f"final networks; 'best step': each seed's lowest test MSE during weight training "
           f"(checked every {test_every} step(s)), an oracle early stop that peeks at the test "
           f"set. {NOTE}{caption}", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, per_kind in results.items():
        for k, s in per_kind.items():
            row = [label(n), KIND_LABELS.get(k, k), cell(s["test"], "min"),
                   later(sparse.LATER_VERSION.get(n, {}).get(k), s["test"], "min"),
                   cell(s["test"], "mean"), cell(s["test"], "median"), cell(s["train"], "min"),
                   cell(s["train"], "mean"), cell(s["best_test"], "min"),
                   cell(s["best_test"], "mean")]
            out.append("| " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


def later_reference(results):
    """The later version's figures in the shape of :func:`summaries` (test minimum only)."""
    return {n: {k: {"test": {"min": v}} for k, v in sparse.LATER_VERSION[n].items()}
            for n in results if n in sparse.LATER_VERSION}


def checks(results):
    """The later version's claim, per target: the method's test MSE is below default's."""
    out = []
    for n, per_kind in results.items():
        if "enforced" in per_kind and "default" in per_kind:
            e, d = per_kind["enforced"]["test"], per_kind["default"]["test"]
            for stat in ("min", "mean"):
                out.append((f"{n}: 'enforced' {stat} test MSE below 'default' "
                            f"(default / enforced = {d[stat] / e[stat]:.3g})", e[stat] < d[stat]))
    return out


def write_csv(path, results):
    """One row per (target, kind): test, training and best-step statistics, the later figure."""
    def write(f):
        w = csv.writer(f)
        w.writerow(["target", "kind", "test_min", "test_median", "test_mean", "train_min",
                    "train_median", "train_mean", "best_step_test_min", "best_step_test_mean",
                    "later_version_min_approx", "seeds"])
        for n, per_kind in results.items():
            for k, s in per_kind.items():
                later = sparse.LATER_VERSION.get(n, {}).get(k, "")
                w.writerow([n, k] + [f"{s[a][b]:.6e}" for a, b in (
                    ("test", "min"), ("test", "median"), ("test", "mean"), ("train", "min"),
                    ("train", "median"), ("train", "mean"), ("best_test", "min"),
                    ("best_test", "mean"))] + [later, len(s["test"]["per_seed"])])

    atomic_write(path, write)


def write_draws_csv(path, results, draws):
    """results.csv of a run with draws: per (target, kind) the medians over the draws with their
    90% intervals of the test, training and best-step test MSE, and the later figure."""
    parts = ("test", "train", "best_test")

    def write(f):
        w = csv.writer(f)
        w.writerow(["target", "kind"] + [c for a in parts for c in drawn.csv_columns(f"{a}_")]
                   + ["later_version_min_approx", "later_version_vs_ours", "seeds", "draws"])
        for n, per_kind in results.items():
            for k, s in per_kind.items():
                w.writerow([n, k] + [v for a in parts for v in drawn.csv_values(s[a])] + [
                    sparse.LATER_VERSION.get(n, {}).get(k, ""),
                    s["test"].get("reference_vs_ours", {}).get("min", ""),
                    len(s["test"]["per_seed"]) // draws, draws])

    atomic_write(path, write)


def best_fits(res, x):
    """{target: {kind: (fit of the seed with the lowest final test MSE at ``x``, its MSE)}}."""
    out = {}
    for n, per_kind in res.items():
        for k, r in per_kind.items():
            i = int(r.test.argmin())
            layers = [(W[i:i + 1], b[i:i + 1]) for W, b in r.layers]
            with torch.no_grad():
                out.setdefault(n, {})[k] = (mlp_forward(x.to(layers[0][0].dtype), layers)[0],
                                            float(r.test[i]))
    return out


def _rates(cfg):
    weights = {cfg.lr_weights[k] for k in cfg.kinds}
    if weights == {cfg.lr_peaks}:
        return f"{cfg.lr_peaks:g}"
    return (f"peaks {cfg.lr_peaks:g}, weights "
            + ", ".join(f"{k} {cfg.lr_weights[k]:g}" for k in cfg.kinds))


def run(targets, cfg, od, *, test_every=1, draw_plots=True, out=None):
    """Run the sparse-data test of ``targets`` (names) as configured by ``cfg`` (a Config with
    the sparse settings) into the claimed output folder ``od``; write the files; print."""
    out = out or sys.stdout
    t0 = time.perf_counter()
    x_train, x_test, res = sparse.run(select(targets), cfg, test_every=test_every)
    wall = time.perf_counter() - t0
    R = cfg.draws
    results = summaries(res)
    if R == 1:
        write_csv(od.file("results.csv"), results)
        claims = [(c, ok, None) for c, ok in checks(results)]
    else:
        per_draw = drawn.split(results, R)
        results = drawn.aggregate(per_draw, later_reference(results))
        write_draws_csv(od.file("results.csv"), results, R)
        claims = drawn.checks_over_draws(checks, per_draw, results)
    files, skipped = ["results.csv"], {}

    def paint():
        x = torch.linspace(0, 1, 501, dtype=torch.float64)
        fns = {n: get_target(n).fn for n in res}
        plots.plot_sparse_fits(od.file("best_fits.png"), x, fns, x_train, x_test, best_fits(res, x))
        plots.plot_sparse_curves(od.file("loss_curves.png"), res, cfg.epochs[0])
        if R == 1:
            return ["best_fits.png", "loss_curves.png"]
        plots.plot_intervals(od.file("intervals.png"),
                             {n: {k: s["test"] for k, s in per_kind.items()}
                              for n, per_kind in results.items()},
                             {n: {k: r["test"] for k, r in per_kind.items()}
                              for n, per_kind in later_reference(results).items()},
                             ("min", "mean"), R, what="test MSE")
        return ["best_fits.png", "loss_curves.png", "intervals.png"]

    files += report.draw(skipped, draw_plots, paint) + ["results.json"]
    config = report.config_record(cfg, depth=cfg.depth, targets=list(targets),
                                  kinds=list(cfg.kinds), test_every=test_every,
                                  x_train=[float(v) for v in x_train],
                                  x_test=[float(v) for v in x_test])
    config.pop("points")
    report.write_json(od.file("results.json"), {
        "config": config, "results": results, "command": "reproduce --sparse",
        "later_version": {"min_test_mse": {n: sparse.LATER_VERSION[n] for n in results
                                           if n in sparse.LATER_VERSION},
                          "note": NOTE},
        "wall_seconds": wall,
        "checks": drawn.check_records(claims),
        "skipped": skipped, "files": files})
    print(table(results, cfg.seeds, test_every, draws=R), file=out)
    drawn.print_checks(claims, out)
    print(f"\n{len(targets)} target(s) x {len(cfg.kinds)} kind(s) x {cfg.seeds} seeds"
          f"{'' if R == 1 else f' x {R} draws'}, "
          f"{sparse.TRAIN_POINTS} training points (i/9), {sparse.TEST_POINTS} test points "
          f"((2j+1)/20), epochs {cfg.epochs[0]}+{cfg.epochs[1]}, Adam lr {_rates(cfg)}, "
          f"device {config['device']}: {wall:.1f} s. Wrote {', '.join(files)} to {od.path}",
          file=out)
    return 0
