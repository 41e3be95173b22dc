"""A small case of every CUDA kernel, for compute-sanitizer on a real GPU (docs/gpu.md, first GPU
session): the compositional network's forward, backward, loss_and_grad and fused stage 1 with one
warp per seed (four seeds per block) and with a seed on several warps, one and several register
chunks, one and two points per lane, float and double; the MLP's forward, backward,
loss_and_grad and fused stage 2 with per-lane sums (the paper's 4x5 net, one and several warps
per seed) and a large net. Prints one line per case; exits non-zero on a launch error.

    compute-sanitizer --tool racecheck python3 tests/cuda_harness/device_smoke.py
"""
import torch

import compnet_ext
from compnet_ext.nn import BatchedMLP, train_mlp


def compnet_case(S, D, N, dtype):
    g = torch.Generator().manual_seed(S * 1000 + D)
    peaks = (torch.rand(S, D + 1, generator=g, dtype=torch.float64) * 0.6 + 0.2).to("cuda", dtype)
    x = torch.linspace(0, 1, N, dtype=dtype, device="cuda")
    target = x**3
    xs = x.expand(S, N).clone().requires_grad_()
    ps = peaks.clone().requires_grad_()
    compnet_ext.forward(xs, ps).sum().backward()
    compnet_ext.loss_and_grad(x, target, peaks)
    compnet_ext.train_peaks(x, target, peaks, sign=-1, epochs=3, lr=1e-3)
    scales = compnet_ext.smooth_scales(peaks, -1).clone()
    compnet_ext.train_peaks(x, target, peaks, scales, sign=-1, epochs=2, lr=1e-3)
    torch.cuda.synchronize()
    print(f"compnet S={S} D={D} N={N} {dtype}: ok", flush=True)


def mlp_case(S, widths, N, dtype):
    g = torch.Generator().manual_seed(S)
    m = BatchedMLP(S, widths, generator=g, dtype=dtype).to("cuda")
    x = torch.linspace(0, 1, N, dtype=dtype, device="cuda")
    t = torch.sin(3 * x).expand(S, N).contiguous()
    m.loss_and_grad(x, t, fused=True)
    train_mlp(m, x, t, epochs=3, lr=1e-3)
    torch.cuda.synchronize()
    print(f"mlp S={S} widths={widths} N={N} {dtype}: ok", flush=True)


if __name__ == "__main__":
    for dtype in (torch.float32, torch.float64):
        compnet_case(5, 5, 20, dtype)     # one warp per seed, four seeds per block, S % 4 != 0
        compnet_case(3, 5, 500, dtype)    # 16 warps per seed (the 8-layer chunk)
        compnet_case(4, 16, 64, dtype)    # the 16-layer chunk
        compnet_case(1, 16, 1000, dtype)  # 16 warps looping over tiles: float's 2 points per lane
        compnet_case(2113, 5, 100, dtype)  # one warp per seed, float's 2 points per lane
        compnet_case(2, 40, 100, dtype)   # several warps, several register chunks (carry)
        mlp_case(5, (1, 4, 4, 4, 4, 4, 1), 20, dtype)    # per-lane sums, one warp per seed
        mlp_case(3, (1, 4, 4, 4, 4, 4, 1), 500, dtype)   # the paper's shape, 8 warps per seed
        mlp_case(3, (1, 16, 16, 1), 70, dtype)           # a large net: sums every 32 points
