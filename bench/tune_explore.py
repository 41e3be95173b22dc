"""The exploration behind issue 11 (docs/hyperparameters.md, "Where the gap comes from"): where
the enforced row's error comes from, and which learning-rate schedules are worth a tuning trial.

    PYTHONPATH=. python3 bench/tune_explore.py > bench/results/tune_explore.csv

Everything on generator seed 1 (``compnet reproduce`` reports seed 0), 30 seeds, all four
targets, 1000 + 1000 steps, float32 unless the part says otherwise. Parts:

- ``stage1``: the stage-1 loss of the enforced kind (min / median / mean over the seeds) for two
  stage-1 rates, 1000 and 3000 steps, and two clamps: how much of the final error stage 1 leaves;
- ``precision``: the enforced kind's final error in float32 and float64 (current defaults);
- ``schedule``: stage-2 schedules for the enforced kind (constant, cosine, linear, exponential,
  step decay; linear warm-up) and, on the weight-only kinds, constant / linear decay / warm-up.

The schedules run as the fused ops in segments of ``--segment`` steps that carry Adam's state,
the rate of each segment taken at its middle step: a staircase close to the continuous schedule
(warm-ups of tune_defaults.py are exact, one step per segment). This is a screen, not the
selection: the defaults come from tune_defaults.py, which gives every kind the same number of
trials.
"""
import argparse
import math
import time

import torch

from compnet_ext.ops import PEAK_BOUNDS
from compnet_ext.mlp_ops import pack
from tune_defaults import BETAS, EPS, OPS, Experiment


def schedule(kind, lr, T, floor=0.0, frac=0.5, warmup=0):
    """The rate of step t (1-based) of a T-step run."""
    return {
        "const": lambda t: lr,
        "cos": lambda t: lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (t - 1) / T))),
        "lin": lambda t: lr * (floor + (1 - floor) * (1 - (t - 1) / T)),
        "exp": lambda t: lr * floor ** ((t - 1) / T),
        "step": lambda t: lr * (1.0 if t <= frac * T else floor),
        "warmup": lambda t: lr * min(1.0, t / warmup),
    }[kind]


def train_mlp(x, y, layers, epochs, rate, segment):
    widths = (1,) + tuple(W.shape[1] for W, _ in layers)
    params, state, done, loss = pack(layers), None, 0, None
    while done < epochs:
        n = min(segment, epochs - done)
        params, loss, _, state = OPS.mlp_train(x, y, params, widths, n, rate(done + 1 + n // 2),
                                               *BETAS, EPS, 0, state, done)
        done += n
    return loss


def final(exp, kind, rate, segment, clamp=PEAK_BOUNDS):
    parts = [exp.layers(kind, n, clamp) for n in exp.targets]
    layers = [(torch.cat([p[i][0] for p in parts]), torch.cat([p[i][1] for p in parts]))
              for i in range(len(parts[0]))]
    y = torch.cat([exp.ys[n].expand(exp.S, -1) for n in exp.targets])
    loss = train_mlp(exp.x, y, layers, 1000 if kind in ("enforced", "not_enforced") else 2000,
                     rate, segment)
    return {n: loss[i * exp.S:(i + 1) * exp.S] for i, n in enumerate(exp.targets)}


def row(part, kind, setting, res, dt):
    for n, f in res.items():
        print(f"{part},{kind},{setting},{n},{f.min():.3e},{f.median():.3e},{f.mean():.3e},{dt:.1f}",
              flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--segment", type=int, default=10)
    args = ap.parse_args()
    print("part,kind,setting,target,min,median,mean,seconds")
    exp = Experiment(args.seed, args.seeds)

    # stage 1 alone (enforced): the loss it hands to stage 2
    for lr1, steps, clamp in ((1e-2, 1000, PEAK_BOUNDS), (1e-2, 3000, PEAK_BOUNDS),
                              (3e-3, 1000, PEAK_BOUNDS), (3e-3, 3000, PEAK_BOUNDS),
                              (1e-2, 1000, (1e-6, 1 - 1e-6)), (1e-2, 1000, (0.1, 0.9))):
        t0 = time.perf_counter()
        res = {}
        for n in exp.targets:
            _, _, res[n], _, _ = OPS.train_peaks(exp.x, exp.ys[n], exp.peaks0, None,
                                                 exp.signs[n], steps, lr1, *BETAS, EPS,
                                                 clamp[0], clamp[1], 0, True, None, 0)
        row("stage1", "enforced", f"lr_peaks={lr1:g} steps={steps} clamp={clamp[0]:g}:{clamp[1]:g}",
            res, time.perf_counter() - t0)

    # precision: the current defaults (stage 2 at 1e-4, constant) in float32 and float64
    for dtype in (torch.float32, torch.float64):
        e = exp if dtype == torch.float32 else Experiment(args.seed, args.seeds, dtype=dtype)
        t0 = time.perf_counter()
        row("precision", "enforced", str(dtype).replace("torch.", ""),
            final(e, "enforced", schedule("const", 1e-4, 1000), 1000), time.perf_counter() - t0)

    # schedules
    grid = [("enforced", ("const", lr), {}) for lr in (1e-4, 3e-4, 1e-3)]
    grid += [("enforced", (k, lr), {}) for k in ("cos", "lin") for lr in (3e-4, 1e-3, 3e-3, 1e-2)]
    grid += [("enforced", ("exp", lr), {"floor": 1e-2}) for lr in (1e-3, 3e-3, 1e-2)]
    grid += [("enforced", ("step", 1e-3), {"floor": 0.1}), ("enforced", ("step", 3e-3), {"floor": 0.03})]
    grid += [("enforced", ("warmup", lr), {"warmup": w}) for lr in (1e-4, 3e-4, 1e-3)
             for w in (30, 100, 300, 1000)]
    base = {"default": 3e-3, "raai": 1e-2, "no_pretraining": 3e-4}
    grid += [(k, (s, lr0 * m), {"warmup": w}) for k, lr0 in base.items() for m in (1 / 3, 1, 3)
             for s, w in (("const", 0), ("lin", 0), ("warmup", 100), ("warmup", 2000))]
    for kind, (name, lr), kw in grid:
        T = 1000 if kind == "enforced" else 2000
        t0 = time.perf_counter()
        res = final(exp, kind, schedule(name, lr, T, **kw), args.segment)
        setting = f"{name} lr={lr:.3g}" + "".join(f" {k}={v:g}" for k, v in kw.items())
        row("schedule", kind, setting, res, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
