"""``compnet reproduce``: the paper's section 4.1 experiment (MATH.md section 6) into an output
folder: results.csv, the exact piece counts after stage 1, plots, and results.json last; its
Tables 1-2 with the paper's figures beside ours on stdout. Trained as work cells (target x kind
x seed block), split over the ranks under torchrun (:mod:`~compnet_ext.experiments.distributed`).
``compnet reproduce --nonconvex`` (:func:`run_nonconvex`): the same experiment and files on the
non-convex targets (sign 0, each on its own domain, MATH.md section 7), in one process."""
import sys
import time

import torch

from ..breakpoints import MAX_PIECES, CountLimitError, count_pieces
from ..network import encode
from ..nonconvex import PAIR_WIDTH
from ..targets import get_target, select
from . import draws, engine, plots, report
from .cells import BLOCK_SEEDS, Cell, blocks, plan, settings_hash
from .distributed import Session, run_cells


def stage1_pieces(res, depth):
    """Exact linear pieces of every network right after stage 1 (the paper: 2^D, always).

    Counted twice with the exact counters, in float64: the closed form on (peaks, scales) and
    the activation walk of the encoded ReLU network. Returns
    ``{target: {kind: {"closed_form": [...], "encoded_walk": [...]}}}`` and check lines.
    """
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


def train_cells(targets, cfg, session, *, block_seeds=BLOCK_SEEDS):
    """Train every cell (target x kind x seed block at ``cfg.depth``) over the session's ranks;
    rank 0 gets ``(x, {target: {kind: KindResult}})`` exactly as :func:`engine.run` gives it in
    one process (stage-2 layers not kept), the other ranks None."""
    seed_blocks = blocks(cfg.total_seeds, block_seeds)
    rank_cfg = cfg.replace(device=session.world.device(cfg.device))

    def compute(depth, block, kind, group):
        _, res = engine.run(select([c.target for c in group]), rank_cfg, kinds=(kind,),
                            seed_block=block, keep_curves=True, progress=False)
        return [{"final": r.final, "curve": r.curve, "best": int(torch.argmin(r.final)),
                 "best_fit": r.best_fit, "peaks": r.peaks, "scales": r.scales}
                for r in (res[c.target][kind] for c in group)]

    with engine.reuse_draws():
        payloads = run_cells(session, plan(targets, cfg.kinds, [cfg.depth], cfg.total_seeds,
                                           block_seeds),
                             compute, settings=settings_hash("reproduce", cfg), epochs=cfg.epochs,
                             desc="compnet reproduce", progress=cfg.progress)
    if payloads is None:
        return None
    res = {}
    for t in targets:
        for k in cfg.kinds:
            got = [payloads[Cell(cfg.depth, a, b, k, t).key] for a, b in seed_blocks]
            final = torch.cat([g["final"] for g in got])
            # The best seed's fit: from the block holding the first minimum (argmin's choice).
            best = int(torch.argmin(final))
            i = max(i for i, (a, _) in enumerate(seed_blocks) if a <= best)
            if got[i]["best"] != best - seed_blocks[i][0]:
                raise RuntimeError(f"cell {t}/{k}: the block's best seed disagrees with the whole")
            cat = lambda name: (None if got[0][name] is None
                                else torch.cat([g[name] for g in got]))
            res.setdefault(t, {})[k] = engine.KindResult(
                final=final, curve=torch.cat([g["curve"] for g in got], dim=1),
                best_fit=got[i]["best_fit"], peaks=cat("peaks"), scales=cat("scales"))
    return torch.linspace(0, 1, cfg.points, dtype=cfg.dtype), res


def run(targets, cfg, od, *, draw_plots=True, out=None, session=None, block_seeds=BLOCK_SEEDS,
        keep_cells=False):
    """Train ``targets`` (names) as configured by ``cfg`` (a Config) into the claimed
    :class:`~compnet_ext.experiments.outdir.OutDir` ``od``; write the files; print.

    The training results (results.csv) are written as soon as training ends, before the piece
    counting and plotting that can hit a limit, take long or be interrupted; results.json is
    written last and marks the run complete; then ``cells/`` (every cell's result, which
    ``--resume`` reuses) is deleted unless ``keep_cells``. ``session``: the ranks
    (:class:`~.distributed.Session`; default: this process alone on ``od``); only rank 0 writes
    the files.
    """
    t0 = time.perf_counter()
    trained = train_cells(targets, cfg, session or Session.local(od), block_seeds=block_seeds)
    if trained is None:  # not rank 0: its cells are written
        return 0
    x, res = trained
    wall = time.perf_counter() - t0
    return _report(targets, cfg, od, {n: x for n in res}, res, wall,
                   lambda skipped: _pieces(res, cfg.depth, skipped), {}, draw_plots, out,
                   keep_cells=keep_cells)


def run_nonconvex(targets, cfg, od, *, draw_plots=True, out=None):
    """:func:`run` on non-convex targets (names of sign-0 targets): one run per target on its
    own domain (``cfg.domain`` is replaced by the target's), every kind the width-9 network of
    the pair (MATH.md section 7). The same files; the tables have no paper column (the later
    paper's figures are not available here); no piece counts."""
    bad = [t for t in targets if get_target(t).sign != 0]
    if bad:
        raise ValueError(f"`targets` {bad} are not non-convex (sign 0) targets")
    t0 = time.perf_counter()
    xs, res = {}, {}
    for t in targets:
        xs[t], r = engine.run(select([t]), cfg.replace(domain=get_target(t).domain))
        res.update(r)
    wall = time.perf_counter() - t0
    domains = {t: list(get_target(t).domain) for t in targets}
    return _report(targets, cfg, od, xs, res, wall, lambda skipped: (None, []),
                   {"width": PAIR_WIDTH, "sign": 0, "domains": domains}, draw_plots, out,
                   title="Non-convex targets (sign 0)", command="reproduce --nonconvex")


def _pieces(res, depth, skipped):
    try:
        return stage1_pieces(res, depth)
    except CountLimitError as e:
        report.skip(skipped, "stage1_pieces", "stage-1 piece counts", str(e))
        return None, []


def _report(targets, cfg, od, xs, res, wall, count, extra, draw_plots, out, *,
            title="Other targets", command="reproduce", keep_cells=False):
    """Write results.csv, (``count``'s) piece counts, plots and results.json; print the tables.
    ``xs``: the points of each target; ``extra``: more of results.json's ``config``; then
    discard ``cells/`` unless ``keep_cells``."""
    out = out or sys.stdout
    R = cfg.draws
    results = report.summaries(res)
    if R == 1:
        report.write_csv(od.file("results.csv"), results)
        checks = [(c, ok, None) for c, ok in report.qualitative_checks(results)]
    else:
        per_draw = draws.split(results, R)
        results = draws.aggregate(per_draw, report.paper_figures(results))
        draws.write_csv(od.file("results.csv"), results, report.paper_figures(results), R)
        checks = draws.checks_over_draws(report.qualitative_checks, per_draw, results)
    files, skipped = ["results.csv"], {}
    pieces, piece_checks = count(skipped)
    checks += [(c, ok, None) for c, ok in piece_checks]

    def paint():
        ys = {n: get_target(n).fn(xs[n]) for n in res}
        plots.plot_best_fits(od.file("best_fits.png"), xs, ys, res)
        plots.plot_loss_curves(od.file("loss_curves.png"), res, cfg.epochs[0])
        if R == 1:
            return ["best_fits.png", "loss_curves.png"]
        plots.plot_intervals(od.file("intervals.png"), results, report.paper_figures(results),
                             ("min", "mean"), R)
        return ["best_fits.png", "loss_curves.png", "intervals.png"]

    files += report.draw(skipped, draw_plots, paint) + ["results.json"]
    config = report.config_record(cfg, depth=cfg.depth, targets=list(targets),
                                  kinds=list(cfg.kinds), **extra)
    report.write_json(od.file("results.json"), {
        "config": config, "results": results, "paper": report.paper_figures(results),
        "command": command, "wall_seconds": wall, "stage1_pieces": pieces,
        "checks": draws.check_records(checks),
        "skipped": skipped, "files": files})
    if not keep_cells:
        od.discard_cells()
    if R == 1:
        print(report.markdown_tables(results, cfg.seeds, other_title=title), file=out)
    else:
        print(report.markdown_tables(results, cfg.seeds, other_title=title,
                                     cells=draws.table_cells, caption=draws.caption(R)), file=out)
    draws.print_checks(checks, out)
    print(f"\n{len(targets)} target(s) x {len(cfg.kinds)} kind(s) x {cfg.seeds} seeds"
          f"{'' if R == 1 else f' x {R} draws'}, "
          f"epochs {cfg.epochs[0]}+{cfg.epochs[1]}, device {config['device']}: {wall:.1f} s. "
          f"Wrote {', '.join(files)} to {od.path}", file=out)
    return 0
