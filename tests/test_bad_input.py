"""Bad input gets a clear exception naming the argument; edge cases work."""
import math

import pytest
import torch

import compnet_ext
from conftest import make_problem

X, PEAKS, SCALES = make_problem(3, 4, 10, free=True, seed=21)


def call_all(x=X, peaks=PEAKS, scales=SCALES, sign=-1, target=None):
    """Run forward and loss_and_grad on the same arguments (both must reject them)."""
    compnet_ext.forward(x, peaks, scales, sign)
    compnet_ext.loss_and_grad(x, X**3 if target is None else target, peaks, scales, sign)


def with_value(t, index, value):
    t = t.clone()
    t[index] = value
    return t


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.5])
def test_peaks_outside_open_interval(value):
    with pytest.raises(RuntimeError, match=r"`peaks` must lie in the open interval \(0, 1\), and be at least"):
        call_all(peaks=with_value(PEAKS, (1, 2), value))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", ["x", "peaks", "scales", "target"])
def test_nan_or_inf(name, value):
    args = dict(x=X, peaks=PEAKS, scales=SCALES, target=X**3)
    idx = (1,) if args[name].dim() == 1 else (1, 1)
    args[name] = with_value(args[name], idx, value)
    with pytest.raises(RuntimeError, match=f"`{name}` contains NaN or Inf"):
        call_all(**args)


@pytest.mark.parametrize("value", [-1e-9, 1.0 + 1e-9])
def test_x_outside_unit_interval(value):
    with pytest.raises(RuntimeError, match=r"`x` must lie in \[0, 1\]"):
        call_all(x=with_value(X, 0, value))


def test_validate_false_skips_value_checks_only():
    bad = with_value(X, 0, 2.0)
    compnet_ext.forward(bad, PEAKS, SCALES, validate=False)  # caller's responsibility
    with pytest.raises(ValueError, match="`peaks`"):
        compnet_ext.forward(X, PEAKS[:, :1], validate=False)  # shapes are always checked


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(peaks=PEAKS[:, :1]), r"`peaks` must be \[S, D\+1\] with D >= 1"),
        (dict(peaks=PEAKS[0]), r"`peaks` must be \[S, D\+1\]"),
        (dict(scales=SCALES[:, :3]), r"`scales` must be \[S, D\]"),
        (dict(scales=SCALES[:2]), r"`scales` must be \[S, D\]"),
        (dict(x=X.expand(2, -1)), r"`x` has shape \[2, 10\], expected \[N\] or \[S, N\] with S = 3"),
        (dict(x=X.view(1, 1, -1)), r"`x` has shape"),
        (dict(target=X[:5]), r"`target` has shape \[5\], expected .* N = 10"),
        (dict(target=X.expand(4, -1)), r"`target` has shape \[4, 10\]"),
    ],
)
def test_wrong_shapes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        call_all(**kwargs)


@pytest.mark.parametrize("sign", [0, 2, -2, True, 0.5, "-1"])
def test_bad_sign(sign):
    with pytest.raises(ValueError, match="`sign` must be -1 or \\+1"):
        call_all(sign=sign)
    with pytest.raises(ValueError, match="`sign`"):
        compnet_ext.smooth_scales(PEAKS, sign)


@pytest.mark.parametrize("name", ["x", "peaks", "scales", "target"])
def test_integer_and_mixed_dtypes(name):
    args = dict(x=X, peaks=PEAKS, scales=SCALES, target=X**3)
    args[name] = args[name].to(torch.int64)
    with pytest.raises(TypeError, match=f"`{name}` must be float32 or float64"):
        call_all(**args)
    args[name] = args[name].float()  # float32 among float64 tensors
    ref = "x" if name == "peaks" else name  # peaks is the reference dtype
    with pytest.raises(TypeError, match=f"`{ref}` has dtype"):
        call_all(**args)


def test_not_a_tensor():
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor"):
        compnet_ext.forward([0.5], PEAKS)


def test_different_devices():
    with pytest.raises(ValueError, match="`x` is on meta but `peaks` is on cpu"):
        compnet_ext.forward(X.to("meta"), PEAKS)


@pytest.mark.skipif(compnet_ext.WITH_CUDA or not torch.cuda.is_available(),
                    reason="needs a GPU with a compnet_ext build without CUDA")
def test_cuda_tensor_without_cuda_build():
    with pytest.raises(RuntimeError, match="built without CUDA"):
        compnet_ext.forward(X.cuda(), PEAKS.cuda())


@pytest.mark.parametrize("S,N", [(0, 10), (3, 0), (0, 0)])
def test_empty(S, N):
    x, peaks, scales = X[:N], PEAKS[:S], SCALES[:S]
    y = compnet_ext.forward(x, peaks, scales)
    assert y.shape == (S, N)
    loss, gp, gs = compnet_ext.loss_and_grad(x, x, peaks, scales)
    assert loss.shape == (S,) and torch.all(loss == 0)
    assert gp.shape == (S, 5) and torch.all(gp == 0) and gs.shape == (S, 4)
    p = peaks.clone().requires_grad_()
    compnet_ext.forward(x, p, scales).sum().backward()
    assert p.grad.shape == p.shape and torch.all(p.grad == 0)


def test_non_contiguous_inputs():
    x, peaks, scales = make_problem(6, 5, 40, free=True, shared_x=False, seed=22)
    xt = x.t().contiguous().t()  # same values, transposed strides
    pt = peaks.t().contiguous().t()
    st = torch.cat([scales, scales], 1)[:, ::2]
    st.copy_(scales)
    assert not (xt.is_contiguous() or pt.is_contiguous() or st.is_contiguous())
    assert torch.equal(compnet_ext.forward(xt, pt, st), compnet_ext.forward(x, peaks, scales))
    target = x.flip(1)
    for a, b in zip(compnet_ext.loss_and_grad(xt, target, pt, st),
                    compnet_ext.loss_and_grad(x, target.contiguous(), peaks, scales)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype,value", [(torch.float64, 1e-310), (torch.float64, 1e-200),
                                         (torch.float32, 1e-39), (torch.float32, 1e-20)])
def test_peaks_too_small_for_the_dtype_are_rejected(dtype, value):
    # Subnormal peaks made 1/a overflow (forward gave NaN); below sqrt(tiny) 1/a^2 overflows.
    p = torch.full((1, 3), 0.5, dtype=dtype)
    p[0, 1] = value
    x = torch.tensor([0.0, 1.0], dtype=dtype)
    for call in (lambda: compnet_ext.forward(x, p), lambda: compnet_ext.loss_and_grad(x, x, p),
                 lambda: compnet_ext.train_peaks(x, x, p, epochs=1)):
        with pytest.raises(RuntimeError, match="`peaks` must lie in .* at least"):
            call()
    for call in (lambda: compnet_ext.smooth_scales(p), lambda: compnet_ext.encode(p),
                 lambda: compnet_ext.count_pieces(peaks=p)):
        with pytest.raises(ValueError, match="`peaks` must lie in .* at least"):
            call()
    with pytest.raises(ValueError, match="`peak_bounds`"):
        compnet_ext.train_peaks(x, x, torch.full((1, 3), 0.5, dtype=dtype), epochs=1,
                                peak_bounds=(value, 0.5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_smallest_valid_peak_gives_no_nan(dtype):
    p = torch.full((2, 4), 0.5, dtype=dtype)
    p[0, 1] = compnet_ext.ops.min_peak(dtype)
    x = torch.linspace(0, 1, 9, dtype=dtype)
    y = compnet_ext.forward(x, p)
    assert torch.isfinite(y).all()
    # D = 3 terms of size <= 1 summed with one rounding each (the waves equal the reference's).
    assert (y - compnet_ext.reference.forward(x, p, None, -1)).abs().max() <= 8 * torch.finfo(dtype).eps
    loss, gp, _ = compnet_ext.loss_and_grad(x, x**3, p)
    assert not torch.isnan(loss).any() and not torch.isnan(gp).any()
