"""Exact breakpoints and piece counts (activation-pattern walking and the closed form)."""
import pytest
import torch

import compnet_ext
from compnet_ext.nn import BatchedMLP

F64 = torch.float64


def _t(*v):
    return torch.tensor(v, dtype=F64)


def test_hand_checked_two_relu_mlp():
    # y = relu(x - 0.3) - relu(x - 0.6): kinks 0.3, 0.6; slopes 0, 1, 0
    layers = [(_t(1.0, 1.0).reshape(1, 2, 1), _t(-0.3, -0.6)[None]),
              (_t(1.0, -1.0).reshape(1, 1, 2), _t(0.0)[None])]
    (p,) = compnet_ext.breakpoints(layers)
    torch.testing.assert_close(p.kinks, _t(0.3, 0.6))
    torch.testing.assert_close(p.slopes, _t(0.0, 1.0, 0.0))
    torch.testing.assert_close(p.delta_slopes, _t(1.0, -1.0))
    (q,) = compnet_ext.breakpoints(layers, lo=0.4, hi=2.0)  # interval clips the first kink
    torch.testing.assert_close(q.kinks, _t(0.6))


def test_hand_checked_compositional_depth_1_and_2():
    # D = 1, a = 1/2: y = x - W_0 / 4, kink at 1/2, slopes 1/2 then 3/2
    for route in ("closed", "walk"):
        peaks = torch.full((1, 2), 0.5, dtype=F64)
        arg = {"peaks": peaks} if route == "closed" else {"mlp": compnet_ext.encode(peaks)}
        (p,) = compnet_ext.breakpoints(**arg)
        torch.testing.assert_close(p.kinks, _t(0.5))
        torch.testing.assert_close(p.slopes, _t(0.5, 1.5))
        # D = 2, all 1/2: the Yarotsky interpolant of x^2 on the quarter grid
        peaks = torch.full((1, 3), 0.5, dtype=F64)
        arg = {"peaks": peaks} if route == "closed" else {"mlp": compnet_ext.encode(peaks)}
        (p,) = compnet_ext.breakpoints(**arg)
        torch.testing.assert_close(p.kinks, _t(0.25, 0.5, 0.75))
        torch.testing.assert_close(p.slopes, _t(0.25, 0.75, 1.25, 1.75))


def test_closed_form_counts_are_2_to_the_D_up_to_20():
    g = torch.Generator().manual_seed(5)
    for D in range(1, 21):
        sign = -1 if D % 2 else 1
        peaks = 0.3 + 0.4 * torch.rand(1, D + 1, generator=g, dtype=F64)
        peaks = torch.cat([peaks, torch.full((1, D + 1), 0.5, dtype=F64)])
        assert compnet_ext.count_pieces(peaks=peaks, sign=sign).tolist() == [2**D] * 2, D


def test_walk_on_encoded_network_counts_2_to_the_D_and_matches_closed_form():
    g = torch.Generator().manual_seed(1)
    for D in list(range(1, 13)) + [16]:
        peaks = 0.3 + 0.4 * torch.rand(2, D + 1, generator=g, dtype=F64)
        walked = compnet_ext.breakpoints(compnet_ext.encode(peaks))
        closed = compnet_ext.breakpoints(peaks=peaks)
        for w, c in zip(walked, closed):
            assert w.count == 2**D
            torch.testing.assert_close(w.kinks, c.kinks, rtol=0, atol=1e-12)
            torch.testing.assert_close(w.slopes, c.slopes, rtol=1e-9, atol=1e-9)


def test_shared_peaks_free_scales_and_zero_scales():
    D = 6
    peaks = torch.full((1, D + 1), 0.4, dtype=F64).repeat(3, 1)  # shared by all seeds
    scales = torch.randn(3, D, generator=torch.Generator().manual_seed(0), dtype=F64)
    scales[1, -1] = 0.0    # last wave off: W_{D-1}'s new kinks vanish
    scales[2] = 0.0        # y = x: one piece
    counts = compnet_ext.count_pieces(peaks=peaks, scales=scales).tolist()
    assert counts == [2**D, 2 ** (D - 1), 1]
    walked = compnet_ext.count_pieces(compnet_ext.encode(peaks, scales)).tolist()
    assert walked == counts


def test_dead_network_has_one_piece_and_default_init_far_fewer():
    m = BatchedMLP(2, (1, 4, 4, 1), init="zeros", dtype=F64)
    assert compnet_ext.count_pieces(m).tolist() == [1, 1]
    m = BatchedMLP(300, (1, 4, 4, 4, 4, 4, 1), generator=torch.Generator().manual_seed(0),
                   dtype=F64)
    c = compnet_ext.count_pieces(m)
    assert c.min() >= 1 and c.max() < 2**5 and c.float().mean() < 6


def test_walk_agrees_with_dense_sampling_on_random_nets():
    m = BatchedMLP(8, (1, 8, 8, 8, 1), generator=torch.Generator().manual_seed(3), dtype=F64)
    x = torch.linspace(-2, 2, 200001, dtype=F64)
    y = m(x, fused=False).detach()
    for i, p in enumerate(compnet_ext.breakpoints(m, lo=-2.0, hi=2.0)):
        # slope of every piece, checked at points well inside it
        knots = torch.cat([_t(-2.0), p.kinks, _t(2.0)])
        a, b = knots[:-1], knots[1:]
        wide = (b - a) > 1e-3
        u0, u1 = a + 0.25 * (b - a), a + 0.75 * (b - a)
        v0, v1 = (m.to_sequential(i)(u[:, None])[:, 0].detach() for u in (u0, u1))
        torch.testing.assert_close(((v1 - v0) / (u1 - u0))[wide], p.slopes[wide])
        # sampled slope changes only near reported kinks
        d2 = (y[i, 2:] - 2 * y[i, 1:-1] + y[i, :-2]).abs()
        hot = x[1:-1][d2 > 1e-9]
        if p.kinks.numel():
            assert (hot[:, None] - p.kinks[None]).abs().min(dim=1).values.max() < 4e-5
        else:
            assert hot.numel() == 0


def test_bad_arguments():
    peaks = torch.full((1, 3), 0.5, dtype=F64)
    with pytest.raises(TypeError, match="either"):
        compnet_ext.breakpoints()
    with pytest.raises(ValueError, match="`lo`"):
        compnet_ext.breakpoints(peaks=peaks, lo=-0.1)
    with pytest.raises(ValueError, match="`lo`"):
        compnet_ext.breakpoints(compnet_ext.encode(peaks), lo=1.0, hi=0.0)
    with pytest.raises(TypeError, match="`hi`"):
        compnet_ext.breakpoints(compnet_ext.encode(peaks), hi="1")
    with pytest.raises(ValueError, match="`peaks`"):
        compnet_ext.breakpoints(peaks=peaks * 2)
    with pytest.raises(TypeError, match="`layers"):
        compnet_ext.breakpoints([(1, 2)])
    with pytest.raises(ValueError, match="`rtol`"):
        compnet_ext.breakpoints(peaks=peaks, rtol=-1)


def test_rounding_slivers_are_merged_but_real_pieces_are_not():
    # Two ReLUs whose kinks lie 1e-14 apart: a sliver the width of the roots' rounding, merged
    # by default (wtol = 1e-12 of the interval), kept with wtol = 0.
    W0 = torch.tensor([[[1.0], [1.0]]], dtype=torch.float64)
    b0 = torch.tensor([[-0.5, -(0.5 + 1e-14)]], dtype=torch.float64)
    W1 = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    b1 = torch.zeros(1, 1, dtype=torch.float64)
    layers = [(W0, b0), (W1, b1)]
    assert compnet_ext.count_pieces(layers).tolist() == [2]
    assert compnet_ext.count_pieces(layers, wtol=0.0).tolist() == [3]
    pieces = compnet_ext.breakpoints(layers)[0]
    assert torch.allclose(pieces.slopes, torch.tensor([0.0, 3.0], dtype=torch.float64))
    b0[0, 1] = -0.5001  # 1e-4 apart: a real piece, kept
    assert compnet_ext.count_pieces(layers).tolist() == [3]
    with pytest.raises(ValueError, match="`wtol`"):
        compnet_ext.count_pieces(layers, wtol=-1.0)
