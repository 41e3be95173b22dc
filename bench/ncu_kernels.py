"""The headline kernels, once each, for Nsight Compute (the GPU session's `ncu` step,
bench/gpu_session.sh): where docs/gpu.md predicts a time from instruction counts, ncu says how
busy the issue slots were, which pipe limited and why warps stalled.

Run under ``ncu --profile-from-start off``: every case runs once untimed first (module load,
allocations), then all of them again between cudaProfilerStart and cudaProfilerStop, so that
only those calls' kernels are profiled (a few of torch's small ones among them).

    ncu --clock-control none --profile-from-start off --section SpeedOfLight \\
        --section SchedulerStats --section WarpStateStats python3 bench/ncu_kernels.py

Cases (float32 unless --dtype): forward and loss_and_grad at 4,096/16/512 (issue 19, goal 1),
loss_and_grad at the paper's 30/5/500, the fused stage 1 at 10,000 x 32 x 500 (goal 4's
kernel at 1/10 of its seeds, 2 epochs: the same per-seed work) and the fused stage 2 of the
paper's net at 10,000 x 500 (2 epochs).
"""
import argparse

import torch

import compnet_ext
from compnet_ext.nn import BatchedMLP, train_mlp

from _common import random_peaks  # noqa: E402 (bench/ is on sys.path when run as a script)


def cases(dtype):
    dev = "cuda"
    g = torch.Generator().manual_seed(0)

    def peaks(S, D):
        return random_peaks(S, D, g, dev, dtype)

    def line(N):
        return torch.linspace(0, 1, N, dtype=dtype, device=dev)

    p16, x512 = peaks(4096, 16), line(512)
    p5, x500 = peaks(30, 5), line(500)
    p32 = peaks(10_000, 32)
    t512, t500, t_mlp = x512**3, x500**3, torch.sin(3 * x500)
    mlp = BatchedMLP(10_000, generator=g, dtype=dtype).to(dev)
    return {
        "forward 4096/16/512": lambda: compnet_ext.forward(x512, p16, validate=False),
        "loss_and_grad 4096/16/512": lambda: compnet_ext.loss_and_grad(x512, t512, p16,
                                                                       validate=False),
        "loss_and_grad 30/5/500": lambda: compnet_ext.loss_and_grad(x500, t500, p5,
                                                                    validate=False),
        "train_peaks 10000/32/500, 2 epochs": lambda: compnet_ext.train_peaks(
            x500, t500, p32, sign=-1, epochs=2, lr=1e-3, validate=False),
        "train_mlp 10000 x 500, 2 epochs": lambda: train_mlp(mlp, x500, t_mlp, epochs=2,
                                                             lr=1e-3),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("ncu_kernels.py needs a CUDA device")
    runs = cases(getattr(torch, args.dtype))
    for fn in runs.values():  # untimed, unprofiled: module load, allocations
        fn()
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for name, fn in runs.items():
        print(f"ncu_kernels: {name} ({args.dtype})", flush=True)
        fn()
        torch.cuda.synchronize()
    torch.cuda.profiler.stop()


if __name__ == "__main__":
    main()
