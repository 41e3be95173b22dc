"""PNG plots of a reproduction and of a depth sweep (matplotlib, Agg backend, imported lazily)."""
from .outdir import atomic_write
from .paper import KIND_LABELS
from .targets import TARGETS


def matplotlib_missing():
    """None when matplotlib imports, else a one-line reason with the install hint."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        return f"matplotlib is missing ({e}); install it with `pip install matplotlib`"
    return None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(t):
    return TARGETS[t].label if t in TARGETS else t


def plot_best_fits(path, x, ys, res):
    """Per target: the best seed's fit of every kind (top) and its absolute error (bottom, log)."""
    plt = _pyplot()
    names = list(res)
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 6.5), squeeze=False)
    for j, n in enumerate(names):
        top, bot = axes[0][j], axes[1][j]
        top.plot(x, ys[n], color="black", lw=3, alpha=0.3, label="target")
        for k, r in res[n].items():
            top.plot(x, r.best_fit, lw=1, label=KIND_LABELS.get(k, k))
            bot.semilogy(x, (r.best_fit - ys[n]).abs().clamp_min(1e-12), lw=0.8,
                         label=f"{KIND_LABELS.get(k, k)} ({float(r.final.min()):.1e})")
        top.set_title(f"{_label(n)}: best seed per kind")
        bot.set_title("|fit - target| (legend: MSE)")
        bot.set_xlabel("x")
        bot.legend(fontsize=6)
    axes[0][0].legend(fontsize=7)
    _save(plt, fig, path)


def _save(plt, fig, path):
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)
    plt.close(fig)


def plot_loss_curves(path, res, stage1_epochs):
    """Per target: median and best-seed MSE vs Adam step for every kind (log scale)."""
    plt = _pyplot()
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
        ax.set_title(f"{_label(n)}: MSE vs step (dashed: best seed)")
        ax.set_xlabel("Adam step (dotted: end of stage 1)")
    axes[0][0].legend(fontsize=6)
    _save(plt, fig, path)


def plot_sweep(path, rows, kinds):
    """MSE (min, median) and linear pieces vs depth per kind, from sweep rows (dicts)."""
    plt = _pyplot()
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
            axes[0][j].semilogy(d, [r["min"] for r in rs], ls="--", color=line.get_color(), lw=0.8)
            if all(r.get("pieces_median") is not None for r in rs):
                axes[1][j].semilogy(d, [r["pieces_median"] for r in rs], marker="o", ms=3,
                                    color=line.get_color(), label=KIND_LABELS.get(k, k))
        d_all = sorted({r["depth"] for r in rows})
        axes[1][j].semilogy(d_all, [2.0**x for x in d_all], color="gray", ls=":", label="2^D")
        axes[0][j].set_title(f"{_label(t)}: final MSE vs depth (dashed: min)")
        axes[1][j].set_title("linear pieces of the trained networks (median)")
        axes[1][j].set_xlabel("depth D (hidden layers)")
        axes[0][j].legend(fontsize=6)
        axes[1][j].legend(fontsize=6)
    _save(plt, fig, path)
