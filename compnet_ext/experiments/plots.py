"""Every picture compnet_ext draws (matplotlib, Agg backend, imported only when a plot is made).

Networks (``compnet plot``): :func:`plot_neurons`, every hidden neuron's output layer by layer
(the paper's Figures 3, 5, 6), and :func:`plot_fit`, one seed's output against a target; both
return a matplotlib Figure. Runs: :func:`plot_best_fits` and :func:`plot_loss_curves` of a
reproduction, :func:`plot_intervals` of one with draws and :func:`plot_sweep` of a depth sweep,
written as PNG files (:func:`save`).
matplotlib is optional (``pip install matplotlib``): :func:`matplotlib_missing` says whether it
is there.
"""
import torch

from ..checks import check_int
from ..targets import TARGETS, label
from .outdir import atomic_write
from .paper import KIND_LABELS


def matplotlib_missing():
    """None when matplotlib imports, else a one-line reason with the install hint."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        return f"matplotlib is missing ({e}); install it with `pip install matplotlib`"
    return None


def _plt():
    """matplotlib.pyplot on the Agg backend; ImportError with the install hint without it."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("compnet_ext's plots need matplotlib: `pip install matplotlib` "
                          "(or `pip install compnet_ext[plot]`)") from e
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save(fig, path, *, format="png", dpi=110):
    """Write ``fig`` to ``path`` atomically (:func:`~compnet_ext.experiments.outdir.atomic_write`)
    and close it."""
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format=format, dpi=dpi), binary=True)
    _plt().close(fig)


# ---------------------------------------------------------------------------------------------
# networks


def _check_seed(mlp, seed):
    check_int("seed", seed, 0, mlp.S - 1, wrong_type=ValueError)


@torch.no_grad()
def neuron_outputs(mlp, x, seed=0, *, post_relu=True):
    """Every hidden neuron's value at ``x [N]`` for one seed: list of ``[N, width]`` per layer."""
    h = x.to(mlp.weights[0].dtype)[:, None]
    out = []
    for l, (W, b) in enumerate(mlp.layers()[:-1]):
        z = h @ W[seed].T + b[seed]
        h = torch.relu(z)
        out.append(h if post_relu else z)
    return out


def plot_neurons(mlp, seed=0, *, post_relu=True, n=2001, title=None):
    """Figure with one panel per hidden layer: each neuron's output over [0, 1] (paper Figs 3, 5, 6)."""
    _check_seed(mlp, seed)
    plt = _plt()
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    layers = neuron_outputs(mlp, x, seed, post_relu=post_relu)
    L = len(layers)
    cols = min(L, 4)
    rows = (L + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for l, ax in enumerate(axes.flat):
        if l >= L:
            ax.axis("off")
            continue
        for j in range(layers[l].shape[1]):
            ax.plot(x.numpy(), layers[l][:, j].numpy(), lw=1, label=f"n{j}")
        ax.set_title(f"layer {l + 1}", fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=6, loc="best")
    stage = "after ReLU" if post_relu else "before ReLU"
    fig.suptitle(title or f"hidden neurons ({stage}), seed {seed}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_fit(mlp, target=None, seed=0, *, n=2001, title=None):
    """Figure of one seed's output over [0, 1] against ``target`` (a callable on a tensor, or None)."""
    _check_seed(mlp, seed)
    if target is not None and not callable(target):
        raise TypeError(f"`target` must be callable (x -> y) or None, got {type(target).__name__}")
    plt = _plt()
    x = torch.linspace(0, 1, n, dtype=mlp.weights[0].dtype)
    with torch.no_grad():
        y = mlp(x, fused=False)[seed]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    if target is not None:
        t = target(x)
        ax.plot(x.numpy(), t.numpy(), "k--", lw=1, label="target")
        ax.set_title(title or f"seed {seed}: max |y - target| = {(y - t).abs().max():.2e}",
                     fontsize=10)
    elif title:
        ax.set_title(title, fontsize=10)
    ax.plot(x.numpy(), y.numpy(), lw=1.2, label="network")
    ax.set_xlabel("x")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# runs


def _fits_and_errors(top, bot, x, y, fits):
    """The target ``y`` and every kind's fit on ``top``; each fit's absolute error on ``bot``
    (log scale), in the fit's colour. ``fits``: {kind: (values at x, legend note)}."""
    top.plot(x, y, color="black", lw=3, alpha=0.3, label="target")
    for k, (fit, note) in fits.items():
        line, = top.plot(x, fit, lw=1, label=KIND_LABELS.get(k, k))
        bot.semilogy(x, (fit - y).abs().clamp_min(1e-12), lw=0.8, color=line.get_color(),
                     label=f"{KIND_LABELS.get(k, k)} ({note})")


def plot_best_fits(path, x, ys, res):
    """Per target: the best seed's fit of every kind (top) and its absolute error (bottom, log).
    ``x``: the points of every target, or ``{target: points}`` (targets on their own domains)."""
    plt = _plt()
    names = list(res)
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 6.5), squeeze=False)
    xs = x if isinstance(x, dict) else {n: x for n in names}
    for j, n in enumerate(names):
        top, bot, x = axes[0][j], axes[1][j], xs[n]
        _fits_and_errors(top, bot, x, ys[n], {k: (r.best_fit, f"{float(r.final.min()):.1e}")
                                              for k, r in res[n].items()})
        top.set_title(f"{label(n)}: best seed per kind")
        bot.set_title("|fit - target| (legend: MSE)")
        bot.set_xlabel("x")
        bot.legend(fontsize=6)
    axes[0][0].legend(fontsize=7)
    save(fig, path)


def plot_loss_curves(path, res, stage1_epochs):
    """Per target: median and best-seed MSE vs Adam step for every kind (log scale)."""
    plt = _plt()
    names = list(res)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for j, n in enumerate(names):
        ax = axes[0][j]
        for k, r in res[n].items():
            if r.curve is None:
                continue
            med = r.curve.double().median(dim=1).values
            best = r.curve[:, int(r.final.argmin())]
            line, = ax.semilogy(med, lw=1.2, label=f"{KIND_LABELS.get(k, k)} (median)")
            ax.semilogy(best, lw=0.6, ls="--", color=line.get_color())
        if stage1_epochs:
            ax.axvline(stage1_epochs, color="gray", lw=0.6, ls=":")
        ax.set_title(f"{label(n)}: MSE vs step (dashed: best seed)")
        ax.set_xlabel("Adam step (dotted: end of stage 1)")
    axes[0][0].legend(fontsize=6)
    save(fig, path)


def plot_sweep(path, rows, kinds):
    """MSE (min, median) and linear pieces vs depth per kind, from sweep rows (dicts); rows of
    a run with draws also shade the median's 90% interval over the draws."""
    plt = _plt()
    targets = sorted({r["target"] for r in rows}, key=lambda t: list(TARGETS).index(t)
                     if t in TARGETS else 99)
    fig, axes = plt.subplots(2, len(targets), figsize=(5 * len(targets), 7), squeeze=False)
    for j, t in enumerate(targets):
        for k in kinds:
            rs = sorted((r for r in rows if r["target"] == t and r["kind"] == k),
                        key=lambda r: r["depth"])
            if not rs:
                continue
            d = [r["depth"] for r in rs]
            line, = axes[0][j].semilogy(d, [r["median"] for r in rs], marker="o", ms=3,
                                        label=f"{KIND_LABELS.get(k, k)} median")
            if "median_lo" in rs[0]:  # a run with draws: the median's 90% interval
                axes[0][j].fill_between(d, [r["median_lo"] for r in rs],
                                        [r["median_hi"] for r in rs], color=line.get_color(),
                                        alpha=0.2, lw=0)
            axes[0][j].semilogy(d, [r["min"] for r in rs], ls="--", color=line.get_color(), lw=0.8)
            if all(r.get("pieces_median") is not None for r in rs):
                axes[1][j].semilogy(d, [r["pieces_median"] for r in rs], marker="o", ms=3,
                                    color=line.get_color(), label=KIND_LABELS.get(k, k))
        d_all = sorted({r["depth"] for r in rows})
        axes[1][j].semilogy(d_all, [2.0**x for x in d_all], color="gray", ls=":", label="2^D")
        axes[0][j].set_title(f"{label(t)}: final MSE vs depth (dashed: min)")
        axes[1][j].set_title("linear pieces of the trained networks (median)")
        axes[1][j].set_xlabel("depth D (hidden layers)")
        axes[0][j].legend(fontsize=6)
        axes[1][j].legend(fontsize=6)
    save(fig, path)


def plot_sparse_fits(path, x, fns, x_train, x_test, fits):
    """Sparse-data test, per target: the target, the best seed's fit of every kind (``fits``:
    {target: {kind: (values at ``x``, test MSE)}}), training points (dots) and test points
    (circles); below, each fit's absolute error (log scale)."""
    plt = _plt()
    names = list(fits)
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 6.5), squeeze=False)
    for j, n in enumerate(names):
        top, bot = axes[0][j], axes[1][j]
        _fits_and_errors(top, bot, x, fns[n](x), {k: (fit, f"test {mse:.1e}")
                                                  for k, (fit, mse) in fits[n].items()})
        # on the target above; along the bottom edge of the error panel below
        for ax, at in ((top, lambda p: fns[n](p.double())),
                       (bot, lambda p: torch.full_like(p, 1e-12))):
            ax.plot(x_train, at(x_train), "o", color="black", ms=4, label="training points")
            ax.plot(x_test, at(x_test), "o", mfc="none", color="red", ms=5, label="test points")
        top.set_title(f"{label(n)}: lowest-test-MSE seed")
        bot.set_title("|fit - target| (markers: the points)")
        bot.set_xlabel("x")
        bot.legend(fontsize=6)
    axes[0][0].legend(fontsize=7)
    save(fig, path)


def plot_sparse_curves(path, res, stage1_epochs):
    """Sparse-data test, per target: median test MSE (solid) and training MSE (dotted) over the
    seeds vs Adam step, for every kind (stage-2 kinds start after stage 1)."""
    plt = _plt()
    names = list(res)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for j, n in enumerate(names):
        ax = axes[0][j]
        for k, r in res[n].items():
            steps = r.steps.numpy()
            line, = ax.semilogy(steps, r.test_curve.double().median(dim=0).values, lw=1.2,
                                label=f"{KIND_LABELS.get(k, k)} test")
            ax.semilogy(steps, r.train_curve.double().median(dim=0).values, lw=0.8, ls=":",
                        color=line.get_color())
        if stage1_epochs:
            ax.axvline(stage1_epochs, color="gray", lw=0.6, ls="--")
        ax.set_title(f"{label(n)}: median MSE (dotted: training)")
        ax.set_xlabel("Adam step (dashed: end of stage 1)")
    axes[0][0].legend(fontsize=6)
    save(fig, path)


def plot_intervals(path, results, reference, stats, draws, *, what="MSE"):
    """Runs with draws, per target: each kind's ``stats`` (e.g. min and mean ``what``) as the
    median over the draws with its 90% interval as error bars (log scale), and the reference
    figures (``{target: {kind: {stat: figure}}}``, e.g. the paper's) as crosses."""
    plt = _plt()
    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for j, n in enumerate(names):
        ax, kinds = axes[0][j], list(results[n])
        for i, s in enumerate(stats):
            x = [c + (i - (len(stats) - 1) / 2) * 0.2 for c in range(len(kinds))]
            mid = [results[n][k][s] for k in kinds]
            lo, hi = zip(*(results[n][k]["interval90"][s] for k in kinds))
            bars = ax.errorbar(x, mid, yerr=[[m - a for m, a in zip(mid, lo)],
                                             [b - m for m, b in zip(mid, hi)]],
                               fmt="o", ms=4, capsize=3, label=f"{s} (median, 90% interval)")
            ref = [(xi, reference.get(n, {}).get(k, {}).get(s)) for xi, k in zip(x, kinds)]
            ref = [(xi, v) for xi, v in ref if v is not None]
            if ref:
                ax.plot(*zip(*ref), "x", ms=6, color=bars[0].get_color(),
                        label=f"{s}, reference")
        ax.set_yscale("log")
        ax.set_xticks(range(len(kinds)))
        ax.set_xticklabels([KIND_LABELS.get(k, k) for k in kinds], rotation=30, ha="right",
                           fontsize=7)
        ax.set_title(f"{label(n)}: {what} over {draws} draws")
    axes[0][0].legend(fontsize=6)
    save(fig, path)
