"""Bad or empty inputs of compnet_ext.nonconvex: clear errors naming the argument, S = 0 and
N = 0 like the core ops (issue 18)."""
import pytest
import torch

from compnet_ext import nonconvex as nc

D64 = torch.float64


def _pair(S, D=3, value=0.5):
    return torch.full((S, 2, D + 1), value, dtype=D64), torch.ones(S, 4, dtype=D64)


@pytest.mark.parametrize("S, N", [(0, 5), (0, 0), (2, 0)])
def test_empty_batches_work(S, N):
    peaks, coef = _pair(S)
    peaks.requires_grad_()
    x = torch.linspace(0, 1, N, dtype=D64)
    y = nc.forward(x, peaks, coef)
    assert y.shape == (S, N)
    assert torch.equal(y, nc.reference_forward(x, peaks, coef))
    y.sum().backward()
    assert peaks.grad.shape == peaks.shape
    assert nc.fit_coef(x, torch.zeros(N, dtype=D64), peaks.detach()).shape == (S, 4)


@pytest.mark.parametrize("x, match", [
    (torch.tensor(0.5, dtype=D64), r"`x` has shape \[\]"),
    (torch.zeros(3, 5, dtype=D64), r"`x` has shape \[3, 5\]"),
])
def test_x_of_a_wrong_shape_is_named(x, match):
    peaks, coef = _pair(2)
    with pytest.raises(ValueError, match=match):
        nc.forward(x, peaks, coef)
    with pytest.raises(ValueError, match=match):
        nc.fit_coef(x, torch.zeros(5, dtype=D64), peaks)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_coef_or_scales_are_refused_when_validating(bad):
    peaks, coef = _pair(1)
    x = torch.linspace(0, 1, 5, dtype=D64)
    coef[0, 2] = bad
    with pytest.raises(ValueError, match="`coef` contains NaN or Inf"):
        nc.forward(x, peaks, coef)
    with pytest.raises(ValueError, match="`coef` contains NaN or Inf"):
        nc.encode(peaks, coef)
    scales = nc.smooth_pair_scales(peaks)
    scales[0, 1, 0] = bad
    with pytest.raises(ValueError, match="`scales`"):
        nc.forward(x, peaks, torch.ones(1, 4, dtype=D64), scales)
    # validate=False checks no values (no device sync): the non-finite coefficient shows
    assert not nc.forward(x, peaks, coef, validate=False).isfinite().all()


@pytest.mark.parametrize("what", ["target", "x", "peaks", "scales"])
def test_fit_coef_checks_its_inputs_before_lapack(what, capfd):
    peaks, _ = _pair(2)
    x = torch.linspace(0, 1, 5, dtype=D64)
    target = torch.sin(x)
    scales = nc.smooth_pair_scales(peaks)
    {"target": target, "x": x, "peaks": peaks, "scales": scales}[what].view(-1)[1] = float("nan")
    with pytest.raises(ValueError, match=f"`{what}`"):
        nc.fit_coef(x, target, peaks, scales)
    with pytest.raises(ValueError, match="`target` has shape"):
        nc.fit_coef(torch.linspace(0, 1, 5, dtype=D64), torch.zeros(4, dtype=D64), _pair(2)[0])
    assert "MKL" not in capfd.readouterr().err
