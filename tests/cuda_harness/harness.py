"""ctypes front of the harness library: the CUDA launchers run on CPU tensors (float32/float64,
contiguous), with the same arguments as the CUDA glue (csrc/compnet/cuda.cpp, csrc/mlp/cuda.cpp)
passes. Load only in a process that has the AddressSanitizer runtime preloaded
(tests/test_cuda_emulated.py runs emulated_cases.py that way)."""
import ctypes
import os

import torch

from harness_build import build

_lib = None
_P = ctypes.c_void_p
_I64 = ctypes.c_int64


def lib():
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL(os.environ.get("COMPNET_HARNESS_LIB") or str(build()))
        for name in ("cn_forward", "cn_backward", "cn_train", "mlp_forward_c", "mlp_backward_c",
                     "mlp_train_c"):
            getattr(_lib, name).restype = ctypes.c_char_p
        _lib.harness_set_seed.argtypes = [ctypes.c_uint64]
        _lib.harness_set_optin_smem.argtypes = [ctypes.c_int]
        _lib.harness_warps_per_seed.restype = ctypes.c_int64
        _lib.harness_sweep_warps.restype = ctypes.c_int64
        _lib.harness_sweep_lane_points.restype = ctypes.c_int64
        _lib.harness_sweep_max_warps.restype = ctypes.c_int64
    return _lib


class KernelError(RuntimeError):
    pass


def _check(err):
    if err is not None:
        raise KernelError(err.decode())


def _ptr(t):
    if t is None or t.numel() == 0:
        return None
    assert t.is_contiguous() and t.device.type == "cpu"
    return _P(t.data_ptr())


_DTYPES = {torch.float32: 0, torch.float64: 1}  # the C API's dtype codes


def _dtype(t):
    return _DTYPES[t.dtype]


def set_seed(seed):
    lib().harness_set_seed(seed)


def warps_per_seed(S, N):
    """The warps that share a seed's points in the kernels (csrc/common/launch_config.h)."""
    return lib().harness_warps_per_seed(_I64(S), _I64(N))


def sweep_warps(S, N, D, dtype):
    """``(warps per seed, points per lane)`` of the compositional sweeps at depth D
    (compnet/kernels.h: sweep_warps_per_seed, sweep_lane_points)."""
    args = (_DTYPES[dtype], _I64(S), _I64(N), D)
    return lib().harness_sweep_warps(*args), lib().harness_sweep_lane_points(*args)


def sweep_max_warps(dtype):
    """The most warps per seed of the compositional sweeps (compnet/kernels.h: in double a build
    option, CN_FP64_MAX_WARPS)."""
    return lib().harness_sweep_max_warps(_DTYPES[dtype])


def set_optin_smem(nbytes):
    """The opt-in shared memory per block that the emulated device reports (H100: 227 KiB)."""
    lib().harness_set_optin_smem(nbytes)


def forward(x, peaks, scales, sign):
    S, D = peaks.shape[0], peaks.shape[1] - 1
    N = x.shape[-1]
    y = torch.empty(S, N, dtype=peaks.dtype)
    _check(lib().cn_forward(_dtype(peaks), _I64(S), _I64(N), D, sign, int(x.dim() == 1), _ptr(x),
                            _ptr(peaks), _ptr(scales), _ptr(y)))
    return y


def backward(x, peaks, scales, sign, head, loss_mode):
    """(loss or None, gx [S, N], g_peaks, g_scales or None), as run_backward in cuda.cpp."""
    S, D = peaks.shape[0], peaks.shape[1] - 1
    N = x.shape[-1]
    new = lambda *shape: torch.full(shape, float("nan"), dtype=peaks.dtype)
    loss = new(S) if loss_mode else None
    gx = None if loss_mode else new(S, N)
    gp = new(S, D + 1)
    gs = None if scales is None else new(S, D)
    _check(lib().cn_backward(_dtype(peaks), _I64(S), _I64(N), D, sign, int(x.dim() == 1),
                             int(head.dim() == 1), _ptr(x), _ptr(peaks), _ptr(scales), _ptr(head),
                             _ptr(loss), _ptr(gx), _ptr(gp), _ptr(gs)))
    return loss, gx, gp, gs


def _hyper(lr, betas, eps, lo=0.0, hi=1.0):
    return (ctypes.c_double * 6)(lr, betas[0], betas[1], eps, lo, hi)


def train_peaks(x, target, peaks, scales, sign, *, epochs, lr, betas, eps, peak_bounds,
                record_every, state=None, step=0):
    """(peaks, scales, loss, curve, state, plan) with plan = (seeds per block, smem_bytes, spill,
    warps per seed)."""
    S, D = peaks.shape[0], peaks.shape[1] - 1
    N = x.shape[-1]
    peaks, scales = peaks.clone(), None if scales is None else scales.clone()
    P = D + 1 + (0 if scales is None else D)
    state = torch.zeros(S, 2, P, dtype=peaks.dtype) if state is None else state.clone()
    records = (epochs + record_every - 1) // record_every if record_every else 0
    loss = torch.zeros(S, dtype=peaks.dtype)
    curve = torch.zeros(S, records, dtype=peaks.dtype)
    plan = (_I64 * 4)()
    _check(lib().cn_train(_dtype(peaks), _I64(S), _I64(N), D, sign, int(x.dim() == 1),
                          int(target.dim() == 1), _hyper(lr, betas, eps, *peak_bounds),
                          (_I64 * 3)(epochs, record_every, step), _ptr(x), _ptr(target),
                          _ptr(peaks), _ptr(scales), _ptr(loss), _ptr(curve), _I64(records),
                          _ptr(state), plan))
    return peaks, scales, loss, curve, state, tuple(plan)


def _widths(widths):
    return (_I64 * len(widths))(*widths), len(widths)


def mlp_forward(x, params, widths):
    S, N = params.shape[0], x.shape[-1]
    y = torch.empty(S, N, dtype=params.dtype)
    _check(lib().mlp_forward_c(_dtype(params), *_widths(widths), _I64(S), _I64(N),
                               int(x.dim() == 1), _ptr(x), _ptr(params), _ptr(y)))
    return y


def mlp_backward(x, params, widths, head, loss_mode):
    """(loss or None, gx [S, N] or None, gparams)."""
    S, N = params.shape[0], x.shape[-1]
    new = lambda *shape: torch.full(shape, float("nan"), dtype=params.dtype)
    loss = new(S) if loss_mode else None
    gx = None if loss_mode else new(S, N)
    gp = new(*params.shape)
    _check(lib().mlp_backward_c(_dtype(params), *_widths(widths), _I64(S), _I64(N),
                                int(x.dim() == 1), int(head.dim() == 1), _ptr(x), _ptr(params),
                                _ptr(head), _ptr(loss), _ptr(gx), _ptr(gp)))
    return loss, gx, gp


def mlp_train(x, target, params, widths, *, epochs, lr, betas, eps, record_every, state=None,
              step=0):
    """(params, loss, curve, state, plan) with plan = (seeds per block, smem_bytes, spill, warps
    per seed)."""
    S, N = params.shape[0], x.shape[-1]
    params = params.clone()
    state = torch.zeros(S, 2, params.shape[1], dtype=params.dtype) if state is None else state.clone()
    records = (epochs + record_every - 1) // record_every if record_every else 0
    loss = torch.zeros(S, dtype=params.dtype)
    curve = torch.zeros(S, records, dtype=params.dtype)
    plan = (_I64 * 4)()
    _check(lib().mlp_train_c(_dtype(params), *_widths(widths), _I64(S), _I64(N),
                             int(x.dim() == 1), int(target.dim() == 1), _hyper(lr, betas, eps),
                             (_I64 * 3)(epochs, record_every, step), _ptr(x), _ptr(target),
                             _ptr(params), _ptr(loss), _ptr(curve), _I64(records), _ptr(state),
                             plan))
    return params, loss, curve, state, tuple(plan)

