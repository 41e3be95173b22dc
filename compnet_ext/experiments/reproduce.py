"""``compnet reproduce``: the paper's section 4.1 experiment (MATH.md section 6) into an output
folder: results.csv, the exact piece counts after stage 1, plots, and results.json last; its
Tables 1-2 with the paper's figures beside ours on stdout. ``compnet reproduce --nonconvex``
(:func:`run_nonconvex`): the same experiment and files on the non-convex targets (sign 0, each
on its own domain, MATH.md section 7)."""
import sys
import time

from ..breakpoints import MAX_PIECES, CountLimitError, count_pieces
from ..network import encode
from ..nonconvex import PAIR_WIDTH
from ..targets import get_target, select
from . import engine, plots, report


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


def run(targets, cfg, od, *, draw_plots=True, out=None):
    """Train ``targets`` (names) as configured by ``cfg`` (a Config) into the claimed
    :class:`~compnet_ext.experiments.outdir.OutDir` ``od``; write the files; print.

    The training results (results.csv) are written as soon as training ends, before the piece
    counting and plotting that can hit a limit, take long or be interrupted; results.json is
    written last and marks the run complete.
    """
    t0 = time.perf_counter()
    x, res = engine.run(select(targets), cfg)
    wall = time.perf_counter() - t0
    return _report(targets, cfg, od, {n: x for n in res}, res, wall,
                   lambda skipped: _pieces(res, cfg.depth, skipped), {}, draw_plots, out)


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
            title="Other targets", command="reproduce"):
    """Write results.csv, (``count``'s) piece counts, plots and results.json; print the tables.
    ``xs``: the points of each target; ``extra``: more of results.json's ``config``."""
    out = out or sys.stdout
    results = report.summaries(res)
    report.write_csv(od.file("results.csv"), results)
    files, skipped = ["results.csv"], {}
    checks = report.qualitative_checks(results)
    pieces, piece_checks = count(skipped)
    checks += piece_checks

    def paint():
        ys = {n: get_target(n).fn(xs[n]) for n in res}
        plots.plot_best_fits(od.file("best_fits.png"), xs, ys, res)
        plots.plot_loss_curves(od.file("loss_curves.png"), res, cfg.epochs[0])
        return ["best_fits.png", "loss_curves.png"]

    files += report.draw(skipped, draw_plots, paint) + ["results.json"]
    config = report.config_record(cfg, depth=cfg.depth, targets=list(targets),
                                  kinds=list(cfg.kinds), **extra)
    report.write_json(od.file("results.json"), {
        "config": config, "results": results, "paper": report.paper_figures(results),
        "command": command, "wall_seconds": wall, "stage1_pieces": pieces,
        "checks": [{"claim": c, "holds": ok} for c, ok in checks],
        "skipped": skipped, "files": files})
    print(report.markdown_tables(results, cfg.seeds, other_title=title), file=out)
    for claim, ok in checks:
        print(f"- [{'x' if ok else ' '}] {claim}", file=out)
    print(f"\n{len(targets)} target(s) x {len(cfg.kinds)} kind(s) x {cfg.seeds} seeds, "
          f"epochs {cfg.epochs[0]}+{cfg.epochs[1]}, device {config['device']}: {wall:.1f} s. "
          f"Wrote {', '.join(files)} to {od.path}", file=out)
    return 0
