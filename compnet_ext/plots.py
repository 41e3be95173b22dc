"""Pictures of batched ReLU MLPs: output vs target, and every neuron layer by layer.

matplotlib is optional (``pip install matplotlib``) and imported only when a plot is made; the
Agg backend is used, so no display is needed. Every function returns a matplotlib Figure.
"""
import torch


def _plt():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("compnet_ext.plots needs matplotlib: `pip install matplotlib` "
                          "(or `pip install compnet_ext[plot]`)") from e
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _check_seed(mlp, seed):
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < mlp.S:
        raise ValueError(f"`seed` must be an int in [0, {mlp.S}), got {seed!r}")


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
