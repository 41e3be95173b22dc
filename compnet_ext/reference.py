"""Pure-PyTorch references of both kernel families, without input validation.

The compositional network (MATH.md sections 1-4: :func:`smooth_scales`, :func:`forward`,
:func:`loss_and_grad`, the signatures of the fused ops in :mod:`compnet_ext`) and the batched
ReLU MLP (:func:`matmul_forward`, the ``fused=False`` path of
:class:`compnet_ext.nn.BatchedMLP`). Plain autograd, written to be read: the ground truth for the
tests, the baseline for the benchmarks, and the backward of the fused ops under
``create_graph=True``.
"""
import torch


def smooth_scales(peaks, sign=-1):
    """Scales [S, D] derived from peaks [S, D+1] so that the output is smooth (MATH.md section 3)."""
    a = peaks
    s = (a[:, 0] if sign < 0 else 1 - a[:, 0]) * a[:, 1]
    ratios = (1 - a[:, 1:-1]) * a[:, 2:]  # s_{i+1} / s_i for i = 0 .. D-2
    # The kernels' recurrence s_{i+1} = s_i * ratio_i, not torch.cumprod: cumprod's backward
    # reads a value on the host (.item(), to look for zeros), which a CUDA graph cannot capture.
    scales = [s]
    for ratio in ratios.unbind(1):
        s = s * ratio
        scales.append(s)
    return torch.stack(scales, dim=1)


def triangle(u, a):
    """T_a(u): rises from 0 at u=0 to 1 at u=a, falls back to 0 at u=1."""
    return torch.where(u <= a, u / a, (1 - u) / (1 - a))


def forward(x, peaks, scales=None, sign=-1):
    """y [S, N] = x + sign * sum_i s_i W_i(x), x [N] or [S, N], peaks [S, D+1], scales [S, D]."""
    if scales is None:
        scales = smooth_scales(peaks, sign)
    S, D = scales.shape
    u = x.expand(S, x.shape[-1])
    y = u
    for i in range(D):
        u = triangle(u, peaks[:, i : i + 1])  # the wave W_i
        y = y + sign * scales[:, i : i + 1] * u
    return y


def loss_and_grad(x, target, peaks, scales=None, sign=-1):
    """Per-seed MSE [S] and gradients of its sum w.r.t. peaks (and scales; None when smooth)."""
    peaks = peaks.detach().requires_grad_(True)
    params = [peaks]
    if scales is not None:
        scales = scales.detach().requires_grad_(True)
        params.append(scales)
    with torch.enable_grad():
        loss = ((forward(x, peaks, scales, sign) - target) ** 2).mean(dim=1)
        grads = torch.autograd.grad(loss.sum(), params)
    return loss.detach(), grads[0], grads[1] if scales is not None else None


def matmul_forward(x, layers):
    """S batched ReLU MLPs by batched matmuls: ``layers`` ``[(W [S, out, in], b [S, out]), ...]``
    at ``x [N] or [S, N]`` -> ``[S, N]`` (ReLU after every layer but the last)."""
    S = layers[0][0].shape[0]
    h = x.expand(S, -1).unsqueeze(-1)  # [S, N, 1] (-1, not x.shape[-1]: jit.trace keeps any rank)
    last = len(layers) - 1
    for l, (W, b) in enumerate(layers):
        h = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))  # [S, N, out]
        if l < last:
            h = torch.relu(h)
    return h.squeeze(-1)
