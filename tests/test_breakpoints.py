"""Exact breakpoints and piece counts (activation-pattern walking and the closed form)."""
import sys
from fractions import Fraction

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
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="`max_pieces`"):
            compnet_ext.count_pieces(peaks=peaks, max_pieces=bad)


@pytest.mark.parametrize("fn", [compnet_ext.breakpoints, compnet_ext.count_pieces])
def test_nan_inf_and_subnormal_inputs_raise_naming_the_argument(fn):
    # Peaks below sqrt(tiny) overflow 1/a^2 (the project's rule for every op); 1e-310 used to
    # give 1 piece instead of 2^2.
    for dtype in (F64, torch.float32):
        floor = torch.finfo(dtype).tiny ** 0.5
        for v in (1e-310, floor / 2, 0.0, 1.0, float("nan"), float("inf")):
            p = torch.full((1, 3), 0.5, dtype=dtype)
            p[0, 1] = v
            with pytest.raises(ValueError, match="`peaks`"):
                fn(peaks=p)
        p = torch.full((1, 3), 0.5, dtype=dtype)
        p[0, 1] = floor  # the smallest allowed peak: the count is still 2^D
        assert compnet_ext.count_pieces(peaks=p).tolist() == [4]
    scales = torch.ones(1, 2, dtype=F64)
    scales[0, 1] = float("nan")
    with pytest.raises(ValueError, match="`scales`"):
        fn(peaks=torch.full((1, 3), 0.5, dtype=F64), scales=scales)
    m = BatchedMLP(2, (1, 4, 4, 1), generator=torch.Generator().manual_seed(0), dtype=F64)
    layers = [(W.detach().clone(), b.detach().clone()) for W, b in m.layers()]
    for l, j in ((0, 0), (1, 1), (2, 0)):
        for v in (float("nan"), float("inf"), -float("inf")):
            bad = [(W.clone(), b.clone()) for W, b in layers]
            bad[l][j].view(-1)[-1] = v
            with pytest.raises(ValueError, match=rf"`layers\[{l}\]\[{j}\]`"):
                fn(bad)
            mb = BatchedMLP.from_layers(bad)
            name = "weights" if j == 0 else "biases"
            with pytest.raises(ValueError, match=rf"`mlp\.{name}\[{l}\]`"):
                fn(mb)


def _exact_count(layers, i, lo, hi):
    """Pieces of seed i in exact rational arithmetic on the float weights (a reference walk)."""
    L = [([[Fraction(v) for v in row] for row in W[i].tolist()],
          [Fraction(v) for v in b[i].tolist()]) for W, b in layers]
    knots, forms = [Fraction(lo), Fraction(hi)], [([Fraction(1)], [Fraction(0)])]
    for l, (W, b) in enumerate(L):
        z = [([sum(w * a for w, a in zip(row, A)) for row in W],
              [sum(w * c for w, c in zip(row, B)) + bo for row, bo in zip(W, b)]) for A, B in forms]
        if l == len(L) - 1:
            s = [A[0] for A, _ in z]
            return 1 + sum(s[j] != s[j + 1] for j in range(len(s) - 1))
        new_knots, forms = [], []
        for (A, B), left, right in zip(z, knots[:-1], knots[1:]):
            roots = sorted({-c / a for a, c in zip(A, B) if a != 0 and left < -c / a < right})
            pts = [left] + roots + [right]
            for u, v in zip(pts[:-1], pts[1:]):
                m = (u + v) / 2
                on = [a * m + c > 0 for a, c in zip(A, B)]
                forms.append(([a if o else 0 for a, o in zip(A, on)],
                              [c if o else 0 for c, o in zip(B, on)]))
            new_knots += pts[:-1]
        knots = new_knots + [knots[-1]]


# A stage-1 network of kind not_enforced on x^11 (float32 training, seed 2 of reproduce): the
# activation walk used to find three of its kinks twice, 5e-14 to 8e-14 (800 ulps) apart.
FREE_PEAKS = [0.8709726929664612, 0.9990000128746033, 0.8628096580505371, 0.0010000000474974513,
              0.18285565078258514, 0.5459374189376831]
FREE_SCALES = [0.4785365164279938, 0.1941654235124588, 0.10860837996006012,
               0.009482490830123425, 0.04224648326635361]


def test_rounding_slivers_are_merged():
    # One kink written twice: relu(x - 0.1) and relu(3 x - 0.3). With the weights as floats the
    # two roots are 9e-18 apart (fl(0.3) / 3 != fl(0.1)), below the ulp; the walk computes
    # them one ulp apart. Within the roots' rounding: one kink.
    layers = [(_t(1.0, 3.0).reshape(1, 2, 1), _t(-0.1, -0.3)[None]),
              (_t(1.0, 2.0).reshape(1, 1, 2), _t(0.0)[None])]
    (p,) = compnet_ext.breakpoints(layers)
    assert p.count == 2
    torch.testing.assert_close(p.slopes, _t(0.0, 7.0))
    # The trained free-scale network: its float64 encoding has 37 exact pieces -- sub-ulp dips
    # the weights' rounding put at valleys -- but the network it encodes has 2^5; the walk
    # merges what lies within the rounding and agrees with the closed form.
    peaks, scales = _t(*FREE_PEAKS)[None], _t(*FREE_SCALES)[None]
    enc = compnet_ext.encode(peaks, scales, sign=-1)
    assert _exact_count(enc, 0, 0, 1) == 37
    assert compnet_ext.count_pieces(enc).tolist() == [32]
    assert compnet_ext.count_pieces(peaks=peaks, scales=scales, sign=-1).tolist() == [32]
    walked, (closed,) = compnet_ext.breakpoints(enc)[0], compnet_ext.breakpoints(
        peaks=peaks, scales=scales, sign=-1)
    # kinks agree within the walk's radii, which reach 5.5e-12 here (layers with 1/a = 1000
    # amplify the rounding; measured difference 2.1e-13); the closed form's is ~D ulps
    torch.testing.assert_close(walked.kinks, closed.kinks, rtol=0, atol=6e-12)


def test_real_narrow_pieces_are_counted():
    # Two kinks 1e-14 (90 ulps) apart with exact roots: a real piece, whatever the interval.
    layers = [(_t(1.0, 1.0).reshape(1, 2, 1), _t(-0.5, -(0.5 + 1e-14))[None]),
              (_t(1.0, 2.0).reshape(1, 1, 2), _t(0.0)[None])]
    for lo, hi in ((0.0, 1.0), (-1e12, 1e12)):
        (p,) = compnet_ext.breakpoints(layers, lo, hi)
        assert p.count == 3
        torch.testing.assert_close(p.slopes, _t(0.0, 1.0, 3.0))
    # Float32 weights of the encoded network: rounding to float32 leaves dips ~1e-7 wide at
    # valleys, real pieces of those weights, which float64 resolves: the walk counts exactly.
    g = torch.Generator().manual_seed(0)
    for D in (3, 5):
        peaks = 0.2 + 0.6 * torch.rand(4, D + 1, generator=g, dtype=F64)
        enc = [(W.float(), b.float()) for W, b in compnet_ext.encode(peaks)]
        exact = [_exact_count(enc, i, 0, 1) for i in range(4)]
        assert compnet_ext.count_pieces(enc).tolist() == exact
        assert max(exact) > 2**D  # the dips are there


def test_depth_20_counts_2_to_the_D_with_pieces_near_1e_10():
    # Peaks in [0.2, 0.8]: the narrowest piece of seed 2 is 1.9e-10 wide, and 18 of its kinks
    # (levels 18 and 19) change the slope by less than 1e-9 of it, down to 7.6e-10: a relative
    # slope tolerance of 1e-9 merged them (1048558 pieces before).
    peaks = 0.2 + 0.6 * torch.rand(3, 21, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert compnet_ext.count_pieces(peaks=peaks).tolist() == [2**20] * 3
    assert compnet_ext.count_pieces(compnet_ext.encode(peaks[2:])).tolist() == [2**20]


def test_counts_do_not_depend_on_the_interval():
    m = BatchedMLP(2, (1, 4, 4, 1), generator=torch.Generator().manual_seed(0), dtype=F64)
    small, big = compnet_ext.breakpoints(m, -10.0, 10.0), compnet_ext.breakpoints(m, -1e12, 1e12)
    assert [p.count for p in big] == [10, 8]  # was [4, 3]: pieces < 2 wide were dropped
    for s, b in zip(small, big):
        inside = b.kinks[(b.kinks > -10) & (b.kinks < 10)]
        # the same roots of the same affine forms; only the BLAS's rounding of them may differ
        torch.testing.assert_close(inside, s.kinks, rtol=1e-13, atol=0)
    # closed form: counts add up over a split of the interval at a point that is not a kink
    peaks = 0.1 + 0.8 * torch.rand(3, 9, generator=torch.Generator().manual_seed(2), dtype=F64)
    scales = torch.randn(3, 8, generator=torch.Generator().manual_seed(3), dtype=F64)
    scales[scales.abs() < 0.3] = 0.0  # whole levels without a kink
    for lo, mid, hi in ((0.0, 0.3, 1.0), (0.1234, 0.5, 0.9)):
        c = [compnet_ext.count_pieces(peaks=peaks, scales=scales, lo=u, hi=v)
             for u, v in ((lo, hi), (lo, mid), (mid, hi))]
        assert (c[0] == c[1] + c[2] - 1).all()
        bps = compnet_ext.breakpoints(peaks=peaks, scales=scales, lo=lo, hi=hi)
        walked = compnet_ext.count_pieces(compnet_ext.encode(peaks, scales), lo=lo, hi=hi)
        assert c[0].tolist() == [p.count for p in bps] == walked.tolist()


def test_closed_form_is_exact_when_a_level_cancels():
    # All peaks 1/2: C_0 = 2 (s_1 + 2 s_2) - s_0 = 0 for s = (6, 1, 1): the kink at 1/2 vanishes.
    peaks, scales = torch.full((1, 4), 0.5, dtype=F64), _t(6.0, 1.0, 1.0)[None]
    for sign in (-1, 1):
        (p,) = compnet_ext.breakpoints(peaks=peaks, scales=scales, sign=sign)
        torch.testing.assert_close(p.kinks, _t(0.125, 0.25, 0.375, 0.625, 0.75, 0.875))
        assert compnet_ext.count_pieces(peaks=peaks, scales=scales, sign=sign).tolist() == [7]
        walked = compnet_ext.count_pieces(compnet_ext.encode(peaks, scales, sign=sign))
        assert walked.tolist() == [7]


def test_limits():
    assert issubclass(compnet_ext.CountLimitError, RuntimeError)
    assert compnet_ext.breakpoints.CountLimitError is compnet_ext.CountLimitError  # the function
    g = torch.Generator().manual_seed(0)
    # closed-form counts need no memory: up to int64
    for D in (40, 62):
        peaks = 0.2 + 0.6 * torch.rand(2, D + 1, generator=g, dtype=F64)
        assert compnet_ext.count_pieces(peaks=peaks).tolist() == [2**D] * 2
    with pytest.raises(compnet_ext.CountLimitError, match="int64"):
        compnet_ext.count_pieces(peaks=torch.full((1, 64), 0.5, dtype=F64))
    with pytest.raises(compnet_ext.CountLimitError, match=f"max_pieces = {2**22}"):
        compnet_ext.breakpoints(peaks=peaks)
    # everything else: max_pieces over all seeds together
    peaks = 0.2 + 0.6 * torch.rand(2, 7, generator=g, dtype=F64)
    enc = compnet_ext.encode(peaks)
    assert compnet_ext.count_pieces(enc, max_pieces=128).tolist() == [64, 64]
    for fn in (compnet_ext.count_pieces, compnet_ext.breakpoints):
        with pytest.raises(compnet_ext.CountLimitError, match="max_pieces = 127"):
            fn(enc, max_pieces=127)
    assert [p.count for p in compnet_ext.breakpoints(peaks=peaks, max_pieces=128)] == [64, 64]
    with pytest.raises(compnet_ext.CountLimitError, match="`max_pieces=`"):
        compnet_ext.breakpoints(peaks=peaks, max_pieces=127)


def test_chunked_walk_equals_the_whole_walk(monkeypatch):
    # The walk covers [lo, hi] in chunks that fit WALK_BYTES; a tiny budget (chunks of 8 and 2
    # pieces) must give the same pieces. A kink may move within two radii (at a chunk boundary
    # another of its roots places it; radii here < 1.3e-13 max(|x|, 1), |x| <= 2), a slope
    # within twice its error bound (the BLAS rounds other row counts differently; bounds here
    # < 1.2e-11 of the slope).
    bp = sys.modules["compnet_ext.breakpoints"]
    g = torch.Generator().manual_seed(1)
    nets = [(compnet_ext.encode(0.2 + 0.6 * torch.rand(2, 11, generator=g, dtype=F64)), 0, 1),
            (BatchedMLP(2, (1, 8, 8, 8, 1), generator=torch.Generator().manual_seed(3),
                        dtype=F64), -2, 2)]
    whole = [compnet_ext.breakpoints(m, lo, hi) for m, lo, hi in nets]
    monkeypatch.setattr(bp, "WALK_BYTES", 2**15)
    for (m, lo, hi), ref in zip(nets, whole):
        for p, q in zip(compnet_ext.breakpoints(m, lo, hi), ref):
            assert p.count == q.count
            torch.testing.assert_close(p.kinks, q.kinks, rtol=0, atol=5.3e-13)
            torch.testing.assert_close(p.slopes, q.slopes, rtol=2.4e-11, atol=0)
