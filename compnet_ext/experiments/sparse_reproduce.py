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
from . import plots, report, sparse
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


def table(results, seeds, test_every):
    head = ["Target", "Network", "Min test", "later version", "Mean test", "Median test",
            "Min train", "Mean train", "Min test, best step", "Mean test, best step"]
    out = [f"**Sparse-data test.** Test MSE on {sparse.TEST_POINTS} held-out points after training "
           f"on {sparse.TRAIN_POINTS}; minimum, mean and median over n = {seeds} seeds of the "
           f"final networks; 'best step': each seed's lowest test MSE during weight training "
           f"(checked every {test_every} step(s)), an oracle early stop that peeks at the test "
           f"set. {NOTE}", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, per_kind in results.items():
        for k, s in per_kind.items():
            row = [label(n), KIND_LABELS.get(k, k), _e(s["test"]["min"]),
                   _e(sparse.LATER_VERSION.get(n, {}).get(k)), _e(s["test"]["mean"]),
                   _e(s["test"]["median"]), _e(s["train"]["min"]), _e(s["train"]["mean"]),
                   _e(s["best_test"]["min"]), _e(s["best_test"]["mean"])]
            out.append("| " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


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
    results = summaries(res)
    write_csv(od.file("results.csv"), results)
    files, skipped = ["results.csv"], {}
    claims = checks(results)

    def paint():
        x = torch.linspace(0, 1, 501, dtype=torch.float64)
        fns = {n: get_target(n).fn for n in res}
        plots.plot_sparse_fits(od.file("best_fits.png"), x, fns, x_train, x_test, best_fits(res, x))
        plots.plot_sparse_curves(od.file("loss_curves.png"), res, cfg.epochs[0])
        return ["best_fits.png", "loss_curves.png"]

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
        "wall_seconds": wall, "checks": [{"claim": c, "holds": ok} for c, ok in claims],
        "skipped": skipped, "files": files})
    print(table(results, cfg.seeds, test_every), file=out)
    for claim, ok in claims:
        print(f"- [{'x' if ok else ' '}] {claim}", file=out)
    print(f"\n{len(targets)} target(s) x {len(cfg.kinds)} kind(s) x {cfg.seeds} seeds, "
          f"{sparse.TRAIN_POINTS} training points (i/9), {sparse.TEST_POINTS} test points "
          f"((2j+1)/20), epochs {cfg.epochs[0]}+{cfg.epochs[1]}, Adam lr {_rates(cfg)}, "
          f"device {config['device']}: {wall:.1f} s. Wrote {', '.join(files)} to {od.path}",
          file=out)
    return 0
