"""``compnet sweep``: every kind trained at every depth, into an output folder: sweep.csv (MSE and
the exact number of linear pieces of the trained networks per depth), a plot, and results.json
last; the table on stdout."""
import sys
import time

from ..breakpoints import CountLimitError, count_pieces
from ..targets import select
from . import engine, plots, report


def run(targets, cfg, depths, od, *, pieces=True, draw_plots=True, out=None):
    """Train ``targets`` (names) as configured by ``cfg`` at each of ``depths`` into the claimed
    :class:`~compnet_ext.experiments.outdir.OutDir` ``od``; CSV + PNG of MSE and linear pieces
    vs depth.

    Pieces are counted exactly (:func:`compnet_ext.count_pieces`, the activation walk) on the
    trained float32 weights as they are; rounding of the weights can add a tiny real piece to a
    compositional network (5 instead of 4 at depth 2 before any training). Beyond ``max_pieces``
    (2^22 summed over the seeds) the walk raises CountLimitError. sweep.csv is rewritten after
    every depth's training and again after its counting, so an interrupted or failing sweep
    keeps every depth trained so far; results.json is written last.
    """
    out = out or sys.stdout
    rows, not_counted, t0 = [], [], time.perf_counter()
    for i, d in enumerate(depths):
        print(f"depth {d} ({i + 1}/{len(depths)})", file=sys.stderr)
        _, res = engine.run(select(targets), cfg, depth=d, keep_curves=False, keep_layers=pieces)
        trained = []
        for t, per_kind in res.items():
            for k, r in per_kind.items():
                s = report.summarize(r.final)
                row = {"depth": d, "target": t, "kind": k, "min": s["min"],
                       "median": s["median"], "mean": s["mean"], "pieces_min": None,
                       "pieces_median": None, "pieces_max": None}
                rows.append(row)
                trained.append((row, r))
        report.write_sweep_csv(od.file("sweep.csv"), rows)
        if not pieces:
            continue
        for row, r in trained:
            try:
                pc = count_pieces(r.mlp_layers).double()
            except CountLimitError as e:
                not_counted.append({"depth": d, "target": row["target"], "kind": row["kind"],
                                    "reason": str(e)})
                continue
            row.update(pieces_min=int(pc.min()), pieces_median=float(pc.median()),
                       pieces_max=int(pc.max()))
        report.write_sweep_csv(od.file("sweep.csv"), rows)
    wall = time.perf_counter() - t0
    files, skipped = ["sweep.csv"], {}
    if not_counted:
        uncounted = sorted({n["depth"] for n in not_counted})
        report.skip(skipped, "pieces", "counting linear pieces",
             f"{len(not_counted)} of {len(rows)} rows not counted (depths "
             f"{', '.join(map(str, uncounted))}): {not_counted[0]['reason']}")

    def paint():
        plots.plot_sweep(od.file("sweep.png"), rows, cfg.kinds)
        return ["sweep.png"]

    files += report.draw(skipped, draw_plots, paint) + ["results.json"]
    config = report.config_record(cfg, depths=list(depths), targets=list(targets),
                                  kinds=list(cfg.kinds), pieces=pieces)
    report.write_json(od.file("results.json"),
                      {"command": "sweep", "config": config, "rows": rows, "wall_seconds": wall,
                       "skipped": skipped, "not_counted": not_counted, "files": files})
    print(report.sweep_table(rows), file=out)
    print(f"\n{len(depths)} depth(s), {cfg.seeds} seeds, epochs {cfg.epochs[0]}+"
          f"{cfg.epochs[1]}: {wall:.1f} s. Wrote {', '.join(files)} to {od.path}", file=out)
    return 0
