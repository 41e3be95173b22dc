"""CompositionalActivation inside real models, on data no one here made (docs/multidim.md).

    PYTHONPATH=. python bench/multidim.py            # both experiments, 5 seeds (~10 min on 2 busy cores)
    PYTHONPATH=. python bench/multidim.py digits     # or: r3
    PYTHONPATH=. python bench/multidim.py --seeds 2 --epochs 10   # a quick look

* ``digits``: scikit-learn's bundled 8x8 digits (1797 images, offline; ``pip install
  compnet_ext[examples]``), fixed stratified 75/25 split. 64 -> H -> 10 MLPs: with
  CompositionalActivation(H) (stage 1, then ``to_relu()`` and stage 2) and with ReLU, the ReLU
  hidden width chosen for equal parameter count (counted two ways: stage 1 and stage 2).
* ``r3``: the later paper's 2-D regression z = r^3, r = sqrt(x^2 + y^2), on [-1, 1]^2 (1000
  training and 1000 test points drawn uniformly): CA(2) -> Linear(2, H) -> CA(H) -> Linear(H, 1)
  vs 2 -> h -> h -> 1 ReLU MLPs of equal parameter count.

Writes docs/results/multidim/<experiment>.{json,csv} and <experiment>.png (learning curves).
"""
import argparse
import csv
import json
import math
import os
import time

import torch

from compnet_ext.nn import CompositionalActivation, clamp_peaks_

OUT = os.path.join(os.path.dirname(__file__), "..", "docs", "results", "multidim")

# optimiser settings (Adam throughout): linear layers and the ReLU baselines at LR; the
# activation's stage-1 parameters at the peaks' rate of the 1-D method (docs/hyperparameters.md)
# and its stage-2 weights at the rate of pretrained networks there
LR, LR_PEAKS, LR_STAGE2 = 1e-3, 1e-2, 1e-4


def count(model):
    return sum(p.numel() for p in model.parameters())


def stage2_count(model):
    """Parameters the model will have after to_relu() (computed on a copy)."""
    n = 0
    for m in model:
        if isinstance(m, CompositionalActivation):
            w = m.width
            n += m.num_features * (2 * w + (m.depth - 1) * (w * w + w) + w + 1 + 2)
        else:
            n += count(m)
    return n


def relu_width_for(params, per_width):
    """Smallest width h with per_width(h) >= params (equal parameter count, rounded up)."""
    h = 1
    while per_width(h) < params:
        h += 1
    return h


def optimiser(model):
    act = [p for m in model.modules() if isinstance(m, CompositionalActivation)
           for p in m.parameters()]
    ids = {id(p) for p in act}
    rest = [p for p in model.parameters() if id(p) not in ids]
    stage = max([m._stage for m in model.modules() if isinstance(m, CompositionalActivation)],
                default=0)
    groups = [{"params": rest, "lr": LR}]
    if act:
        groups.append({"params": act, "lr": LR_PEAKS if stage == 1 else LR_STAGE2})
    return torch.optim.Adam(groups)


def to_relu(model):
    for m in model.modules():
        if isinstance(m, CompositionalActivation):
            m.to_relu()


def train(model, X, Y, Xt, Yt, *, epochs, stage1, batch, loss_fn, metric, seed):
    """Adam on mini-batches; the compositional layers switch to stage 2 after ``stage1`` epochs
    (a fresh optimiser then). Returns the per-epoch curve and the time per epoch (training only)."""
    g = torch.Generator().manual_seed(seed)
    opt = optimiser(model)
    curve, times = [], []
    for epoch in range(epochs):
        if epoch == stage1:
            to_relu(model)
            opt = optimiser(model)
        t0 = time.perf_counter()
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), batch):
            idx = perm[i:i + batch]
            loss = loss_fn(model(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            clamp_peaks_(model)
        times.append(time.perf_counter() - t0)
        with torch.no_grad():
            curve.append(metric(model(Xt), Yt))
    return curve, times


def run_models(models, seeds, data, *, epochs, batch, loss_fn, metric, key, best, fmt,
               name_width):
    """Train every ``{name: (make, stage1_epochs)}`` model for ``seeds`` seeds; one row each
    with ``final_<key>``/``best_<key>`` of the test ``metric`` curve (``best``: max or min)."""
    X, Y, Xt, Yt = data
    rows = []
    for name, (make, stage1) in models.items():
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = make()
            params0 = count(model)
            curve, times = train(model, X, Y, Xt, Yt, epochs=epochs, stage1=stage1, batch=batch,
                                 loss_fn=loss_fn, metric=metric, seed=seed)
            rows.append({"model": name, "seed": seed, "params": params0,
                         "params_final": count(model), f"final_{key}": curve[-1],
                         f"best_{key}": best(curve), "curve": curve,
                         "epoch_s": sum(times) / len(times)})
            print(f"{name:{name_width}s} seed {seed}: params {params0}->{count(model)}, test "
                  f"{key if key == 'acc' else key.upper()} {curve[-1]:{fmt}}, "
                  f"{rows[-1]['epoch_s'] * 1e3:.1f} ms/epoch", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------


def digits_data():
    from sklearn.datasets import load_digits  # optional extra: compnet_ext[examples]
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X, dtype=torch.float32) / 16.0
    y = torch.tensor(y)
    idx = torch.arange(len(y))
    tr, te = train_test_split(idx.numpy(), test_size=0.25, stratify=y.numpy(), random_state=0)
    mean, std = X[tr].mean(0), X[tr].std(0).clamp(min=1e-3)
    X = (X - mean) / std
    return X[tr], y[tr], X[te], y[te]


def digits(seeds, epochs, H=32, depth=4):
    X, Y, Xt, Yt = digits_data()
    mlp = lambda h, act: torch.nn.Sequential(torch.nn.Linear(64, h), act,
                                             torch.nn.Linear(h, 10))
    ca = mlp(H, CompositionalActivation(H, depth))
    n1, n2 = count(ca), stage2_count(ca)
    per = lambda h: 64 * h + h + 10 * h + 10
    models = {
        f"CA (H={H}, depth {depth}), stage 1 only": (lambda: mlp(H, CompositionalActivation(
            H, depth)), epochs),
        f"CA (H={H}, depth {depth}), stage 1 + 2": (lambda: mlp(H, CompositionalActivation(
            H, depth)), (2 * epochs) // 3),
        f"ReLU, same width (h={H})": (lambda: mlp(H, torch.nn.ReLU()), epochs),
    }
    for n, what in ((n1, "stage-1"), (n2, "stage-2")):
        h = relu_width_for(n, per)
        models[f"ReLU, = CA {what} params (h={h})"] = (lambda h=h: mlp(h, torch.nn.ReLU()),
                                                       epochs)
    acc = lambda out, y: (out.argmax(1) == y).float().mean().item()
    rows = run_models(models, seeds, (X, Y, Xt, Yt), epochs=epochs, batch=128,
                      loss_fn=torch.nn.functional.cross_entropy, metric=acc, key="acc",
                      best=max, fmt=".4f", name_width=42)
    meta = dict(experiment="digits", H=H, depth=depth, epochs=epochs, batch=128, lr=LR,
                lr_peaks=LR_PEAKS, lr_stage2=LR_STAGE2, ca_params_stage1=n1, ca_params_stage2=n2,
                train=len(X), test=len(Xt), threads=torch.get_num_threads())
    return meta, rows


def r3_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    X = 2 * torch.rand(n, 2, generator=g) - 1
    return X, X.norm(dim=1, keepdim=True) ** 3


def r3(seeds, epochs, H=4, depth=4):
    X, Y = r3_data(1000, 1000)
    Xt, Yt = r3_data(1000, 2000)

    def ca_model():
        return torch.nn.Sequential(CompositionalActivation(2, depth), torch.nn.Linear(2, H),
                                   CompositionalActivation(H, depth), torch.nn.Linear(H, 1))

    relu = lambda h: torch.nn.Sequential(torch.nn.Linear(2, h), torch.nn.ReLU(),
                                         torch.nn.Linear(h, h), torch.nn.ReLU(),
                                         torch.nn.Linear(h, 1))
    n1, n2 = count(ca_model()), stage2_count(ca_model())
    per = lambda h: h * h + 5 * h + 1
    models = {
        f"CA(2) > Lin(2,{H}) > CA({H}) > Lin({H},1), stage 1 only": (ca_model, epochs),
        f"CA(2) > Lin(2,{H}) > CA({H}) > Lin({H},1), stage 1 + 2": (ca_model,
                                                                   (2 * epochs) // 3),
    }
    for n, what in ((n1, "stage-1"), (n2, "stage-2")):
        h = relu_width_for(n, per)
        models[f"ReLU 2>{h}>{h}>1, = CA {what} params"] = (lambda h=h: relu(h), epochs)
    mse = lambda out, y: (out - y).square().mean().item()
    rows = run_models(models, seeds, (X, Y, Xt, Yt), epochs=epochs, batch=250,
                      loss_fn=torch.nn.functional.mse_loss, metric=mse, key="mse", best=min,
                      fmt=".3e", name_width=50)
    meta = dict(experiment="r3", H=H, depth=depth, epochs=epochs, batch=250, lr=LR,
                lr_peaks=LR_PEAKS, lr_stage2=LR_STAGE2, ca_params_stage1=n1, ca_params_stage2=n2,
                train=len(X), test=len(Xt), threads=torch.get_num_threads())
    return meta, rows


# ---------------------------------------------------------------------------------------------


def summary(meta, rows):
    key = "final_acc" if meta["experiment"] == "digits" else "final_mse"
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]
        v = torch.tensor([r[key] for r in rs], dtype=torch.float64)
        out.append(dict(model=name, params=rs[0]["params"], params_final=rs[0]["params_final"],
                        seeds=len(rs), mean=v.mean().item(),
                        std=v.std().item() if len(rs) > 1 else 0.0, min=v.min().item(),
                        max=v.max().item(),
                        epoch_ms=1e3 * sum(r["epoch_s"] for r in rs) / len(rs)))
    return out


def write(meta, rows):
    os.makedirs(OUT, exist_ok=True)
    name = meta["experiment"]
    summ = summary(meta, rows)
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump({"meta": meta, "summary": summ, "rows": rows}, f, indent=1)
    with open(os.path.join(OUT, f"{name}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summ[0]))
        w.writeheader()
        w.writerows(summ)
    metric = "test accuracy" if name == "digits" else "test MSE"
    print(f"\n| model | params (stage 1 -> final) | {metric}: mean +- std (min, max) | ms/epoch |")
    print("|---|---|---|---|")
    for s in summ:
        fmt = (lambda v: f"{v:.4f}") if name == "digits" else (lambda v: f"{v:.2e}")
        print(f"| {s['model']} | {s['params']} -> {s['params_final']} | {fmt(s['mean'])} +- "
              f"{fmt(s['std'])} ({fmt(s['min'])}, {fmt(s['max'])}) | {s['epoch_ms']:.1f} |")
    plot(meta, rows, os.path.join(OUT, f"{name}.png"))


def plot(meta, rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, name in enumerate(dict.fromkeys(r["model"] for r in rows)):
        curves = torch.tensor([r["curve"] for r in rows if r["model"] == name])
        e = torch.arange(1, curves.shape[1] + 1)
        mid = curves.median(0).values
        ax.plot(e, mid, label=name, color=f"C{i}")
        ax.fill_between(e, curves.min(0).values, curves.max(0).values, color=f"C{i}", alpha=0.15)
    ax.axvline((2 * meta["epochs"]) // 3 + 0.5, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("epoch (dotted: to_relu() of the stage 1 + 2 model)")
    if meta["experiment"] == "digits":
        ax.set_ylabel("test accuracy (median, band: min-max over seeds)")
        ax.set_ylim(0.85, 1.0)
    else:
        ax.set_ylabel("test MSE (median, band: min-max over seeds)")
        ax.set_yscale("log")
    ax.set_title(f"{meta['experiment']}: CompositionalActivation vs ReLU, {meta['epochs']} epochs")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("experiment", nargs="?", choices=["digits", "r3", "all"], default="all")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None,
                    help="digits: 30, r3: 150 (stage 2 of the CA models: the last third)")
    a = ap.parse_args()
    if a.seeds < 1 or (a.epochs is not None and a.epochs < 3):
        ap.error("--seeds must be >= 1 and --epochs >= 3")
    if a.experiment in ("digits", "all"):
        write(*digits(a.seeds, a.epochs or 30))
    if a.experiment in ("r3", "all"):
        write(*r3(a.seeds, a.epochs or 150))


if __name__ == "__main__":
    main()
