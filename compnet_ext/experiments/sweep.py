"""``compnet sweep``: every kind trained at every depth, into an output folder: sweep.csv (MSE and
the exact number of linear pieces of the trained networks per depth), a plot, and results.json
last; the table on stdout. Trained as work cells (target x kind x depth x seed block), split
over the ranks under torchrun (:mod:`~compnet_ext.experiments.distributed`)."""
import sys
import time

import torch

from ..breakpoints import MAX_PIECES, CountLimitError, count_pieces
from ..targets import select
from . import draws, engine, plots, report
from .cells import BLOCK_SEEDS, Cell, blocks, plan, settings_hash
from .distributed import Session, run_cells


def run(targets, cfg, depths, od, *, pieces=True, draw_plots=True, out=None, session=None,
        block_seeds=BLOCK_SEEDS, keep_cells=False):
    """Train ``targets`` (names) as configured by ``cfg`` at each of ``depths`` into the claimed
    :class:`~compnet_ext.experiments.outdir.OutDir` ``od``; CSV + PNG of MSE and linear pieces
    vs depth.

    Pieces are counted exactly (:func:`compnet_ext.count_pieces`, the activation walk) on the
    trained float32 weights as they are; rounding of the weights can add a tiny real piece to a
    compositional network (5 instead of 4 at depth 2 before any training). Beyond ``max_pieces``
    (2^22 summed over the seeds of a depth, target and kind) a row is not counted. Every cell's
    result is kept in ``cells/`` as it is done and sweep.csv is rewritten whenever a depth is
    complete, so an interrupted or failing sweep keeps every depth finished so far (and
    ``--resume`` its cells); results.json is written last, then ``cells/`` is deleted unless
    ``keep_cells``. ``session``: the ranks (:class:`~.distributed.Session`; default: this
    process alone on ``od``); only rank 0 writes the files and returns after printing.
    """
    out = out or sys.stdout
    session = session or Session.local(od)
    t0 = time.perf_counter()
    seed_blocks = blocks(cfg.total_seeds, block_seeds)
    cells = plan(targets, cfg.kinds, depths, cfg.total_seeds, block_seeds)
    rank_cfg = cfg.replace(device=session.world.device(cfg.device))

    def compute(depth, block, kind, group):
        _, res = engine.run(select([c.target for c in group]), rank_cfg, depth=depth,
                            kinds=(kind,), seed_block=block, keep_curves=False,
                            keep_layers=pieces, progress=False)
        payloads = []
        for c in group:
            r = res[c.target][kind]
            p = {"final": r.final, "pieces": None, "limit": None}
            if pieces:
                try:
                    p["pieces"] = count_pieces(r.mlp_layers)
                except CountLimitError as e:
                    p["limit"] = str(e)
            payloads.append(p)
        return payloads

    def assemble(depth, load, rows, not_counted):
        """The rows of one depth (targets x kinds order) from its cells."""
        for t in targets:
            for k in cfg.kinds:
                got = [load(Cell(depth, a, b, k, t)) for a, b in seed_blocks]
                s = report.summarize(torch.cat([g["final"] for g in got]))
                row = {"depth": depth, "target": t, "kind": k, "min": s["min"],
                       "median": s["median"], "mean": s["mean"], "pieces_min": None,
                       "pieces_median": None, "pieces_max": None}
                if cfg.draws > 1:
                    row.update(draws.sweep_columns(draws.aggregate(draws.split(s, cfg.draws))),
                               draws=cfg.draws)
                rows.append(row)
                if not pieces:
                    continue
                limits = [g["limit"] for g in got if g["limit"]]
                pc = None if limits else torch.cat([g["pieces"] for g in got]).double()
                if pc is not None and pc.sum() > MAX_PIECES:  # each block within, not the sum
                    limits = [f"The activation walk found {int(pc.sum())} pieces, more than "
                              f"max_pieces = {MAX_PIECES} (summed over the seeds)"]
                if limits:
                    not_counted.append({"depth": depth, "target": t, "kind": k,
                                        "reason": limits[0]})
                    continue
                row.update(pieces_min=int(pc.min()), pieces_median=float(pc.median()),
                           pieces_max=int(pc.max()))

    written = []

    def on_done(finished, load):
        complete = [d for d in depths
                    if all(c.key in finished for c in cells if c.depth == d)]
        if complete != written:
            written[:] = complete
            rows = []
            for d in complete:
                assemble(d, load, rows, [])
            report.write_sweep_csv(od.file("sweep.csv"), rows)

    settings = settings_hash("sweep", cfg, pieces=pieces)
    with engine.reuse_draws():
        payloads = run_cells(session, cells, compute, settings=settings, epochs=cfg.epochs,
                             desc="compnet sweep", progress=cfg.progress, on_done=on_done)
    if payloads is None:  # not rank 0: its cells are written
        return 0
    rows, not_counted = [], []
    for d in depths:
        assemble(d, lambda c: payloads[c.key], rows, not_counted)
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
    if not keep_cells:
        od.discard_cells()
    print(report.sweep_table(rows, None if cfg.draws == 1 else draws.sweep_cell), file=out)
    print(f"\n{len(depths)} depth(s), {cfg.seeds} seeds"
          f"{'' if cfg.draws == 1 else f' x {cfg.draws} draws'}, epochs {cfg.epochs[0]}+"
          f"{cfg.epochs[1]}: {wall:.1f} s. Wrote {', '.join(files)} to {od.path}", file=out)
    return 0
